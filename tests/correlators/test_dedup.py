"""The dedup stage: a re-send that changes nothing is dropped with a counted reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.model import Severity
from bridge.plugins import STAGES, Stage, StageContext, VerdictKind
from correlators.dedup import DedupReason, DedupStage
from tests.bridge.conftest import alert, resolved

PREV = alert("CPU", annotations={"runbook": "r1"}, description="d", ends_at=100.0)

CASES = [
    ("first-sight-passes", None, PREV, VerdictKind.PASS, ""),
    ("same-content-is-a-repeat", PREV, PREV, VerdictKind.DROP, "repeat"),
    ("later-ends-at-is-still-a-repeat", PREV, replace(PREV, ends_at=500.0), VerdictKind.DROP, "repeat"),
    ("other-starts-at-same-key-is-a-repeat", PREV, replace(PREV, starts_at=5.0), VerdictKind.DROP, "repeat"),
    (
        "equal-labels-in-another-order-is-a-repeat",
        PREV,
        replace(PREV, labels=dict(reversed(list(PREV.labels.items())))),
        VerdictKind.DROP,
        "repeat",
    ),
    ("changed-annotation-passes", PREV, replace(PREV, annotations={"runbook": "r2"}), VerdictKind.PASS, ""),
    (
        "added-annotation-passes",
        PREV,
        replace(PREV, annotations={"runbook": "r1", "x": "y"}),
        VerdictKind.PASS,
        "",
    ),
    ("changed-severity-passes", PREV, replace(PREV, severity=Severity.WARNING), VerdictKind.PASS, ""),
    ("changed-summary-passes", PREV, replace(PREV, summary="CPU very high"), VerdictKind.PASS, ""),
    ("changed-description-passes", PREV, replace(PREV, description="d2"), VerdictKind.PASS, ""),
    ("changed-labels-pass", PREV, replace(PREV, labels={**PREV.labels, "zone": "a"}), VerdictKind.PASS, ""),
    ("new-episode-key-passes", PREV, replace(PREV, key="other"), VerdictKind.PASS, ""),
    ("resolve-passes", PREV, resolved(PREV), VerdictKind.PASS, ""),
    ("re-fire-after-resolve-passes", resolved(PREV), PREV, VerdictKind.PASS, ""),
    (
        "second-resolve-is-a-resolved-repeat",
        resolved(PREV),
        resolved(PREV),
        VerdictKind.DROP,
        "resolved_repeat",
    ),
    (
        "any-resolve-after-resolve-is-a-resolved-repeat",
        resolved(PREV),
        resolved(PREV, summary="other", key="k2"),
        VerdictKind.DROP,
        "resolved_repeat",
    ),
]


@pytest.mark.parametrize(
    ("prev", "subject", "kind", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_dedup(prev: object, subject: object, kind: VerdictKind, reason: str) -> None:
    """A notification repeating the known series' status and content is dropped; any change passes."""
    verdict = DedupStage().process(subject, StageContext(now=1000.0, previous=prev))  # type: ignore[arg-type]
    assert (verdict.kind, verdict.reason, verdict.alert) == (kind, reason, None)
    if reason:
        assert reason in {r.value for r in DedupReason}


def test_dedup_is_a_registered_stage() -> None:
    """The stage satisfies the Stage protocol and is registered as `dedup` with its closed reason set."""
    stage = DedupStage()
    assert isinstance(stage, Stage)
    assert STAGES["dedup"] is DedupStage
    assert {r.value for r in DedupStage.reasons} == {"repeat", "resolved_repeat"}
