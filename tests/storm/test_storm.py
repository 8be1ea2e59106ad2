"""Correlation quality on the labelled storm data sets (../shared/storm), scored by its score.py.

Two kinds of test: a ratchet that fails when a change makes any figure worse than the recorded
baseline (so a regression is caught in CI), and the issue's targets, marked xfail(strict) until
they are met (an unexpected pass fails too, so the marker is removed when they are reached).
"""

from __future__ import annotations

import pytest

from tests.storm.run import FIGURES, STORM, meets, replay_and_score

pytestmark = pytest.mark.skipif(not (STORM / "data").exists(), reason="../shared/storm is not beside the repo")

#: figures measured with config/examples/storm.yaml (see README "Correlation quality"); a change
#: may improve them (then raise these), never make them worse
BASELINE = {
    # 2026-11-24: topology links need evidence (a critical on one side; a shared dependency only when it
    # fails critically) and slow burns stay one incident. Against the previous baseline: F1 0.60/0.55/0.61
    # -> 0.72/0.77/0.82 and ARI 0.61/0.48/0.57 -> 0.72/0.73/0.80 (medium/small-11/small-12); priority
    # small-11 0.89 -> 1.0, small-12 0.7 -> 0.9; small-12 missed 2 -> 1, routing 0.8 -> 0.9, paged
    # before outage 0.75 -> 1.0. Worse: medium noise pages 216 -> 226 (warnings no longer absorbed into
    # connected incidents page on their own), small-12 median time to page 295 -> 310 s. Accepted as a
    # net step towards the targets; see the issue 3 note. Then flap_clear_after 20m -> 30m: medium noise
    # pages 226 -> 176 and small-12 8 -> 7, for medium F1/ARI 0.724/0.724 -> 0.701/0.698.
    "small-11": {"F1": 0.76, "ARI": 0.72, "noise pages": 2, "missed": 0, "routing": 0.77, "priority exact": 1.0,
                 "paged before outage": 0.75, "TTP median s": 240},
    "small-12": {"F1": 0.82, "ARI": 0.79, "noise pages": 7, "missed": 1, "routing": 0.9, "priority exact": 0.9,
                 "paged before outage": 1.0, "TTP median s": 310},
    "medium-11": {"F1": 0.7, "ARI": 0.69, "noise pages": 176, "missed": 0, "routing": 0.94, "priority exact": 0.8,
                  "paged before outage": 0.72, "TTP median s": 310, "replay s": 10},
}
SMALL = ["small-11", "small-12"]


def _scores(name: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return replay_and_score(STORM / "data" / name, tmp_path_factory.mktemp(name))


def _check(name: str, scores: dict, limits: dict[str, float]) -> list[str]:
    misses = []
    for label, read, _, op in FIGURES:
        if label in limits and not meets(read(scores), limits[label], op):
            misses.append(f"{name} {label}: {read(scores)} (limit {op} {limits[label]})")
    return misses


@pytest.mark.parametrize("name", SMALL)
def test_no_regression_on_small_data_sets(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No storm figure of a small data set gets worse than the recorded baseline."""
    assert not _check(name, _scores(name, tmp_path_factory), BASELINE[name])


@pytest.mark.slow
def test_no_regression_on_medium(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No figure of the medium data set gets worse, and it replays in under 10 s."""
    assert not _check("medium-11", _scores("medium-11", tmp_path_factory), BASELINE["medium-11"])


@pytest.mark.xfail(strict=True, reason="issue 3 storm targets not reached yet (see README, Correlation quality)")
@pytest.mark.parametrize("name", SMALL)
def test_targets_on_small_data_sets(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every figure meets the issue's target on the small data sets."""
    targets = {label: target for label, _, target, _ in FIGURES}
    assert not _check(name, _scores(name, tmp_path_factory), targets)
