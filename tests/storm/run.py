"""Replay every storm data set with config/examples/storm.yaml and score it (`make storm`).

For each folder of ../shared/storm/data: import its catalog.json, replay its stream on its own clock
(`--start` = the catalog's start_time) and score the events with ../shared/storm/score.py. Prints
one table; `--json FILE` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STORM = ROOT.parent / "shared" / "storm"
CONFIG = ROOT / "config" / "examples" / "storm.yaml"
COLUMNS = [
    ("pairwise_f1", "F1", ">= 0.9"), ("ari", "ARI", ">= 0.85"), ("noise_pages", "noise pages", "0"),
    ("missed_incidents", "missed", "0"), ("routing_accuracy", "routing", ">= 0.95"),
    ("priority_exact", "priority", ">= 0.9"), ("paged_before_outage", "before outage", ">= 0.6"),
    ("ttp_median", "TTP median s", "<= 120"),
]
TARGETS = {"pairwise_f1": (">=", 0.9), "ari": (">=", 0.85), "noise_pages": ("<=", 0), "missed_incidents": ("<=", 0),
           "routing_accuracy": (">=", 0.95), "priority_exact": (">=", 0.9), "paged_before_outage": (">=", 0.6),
           "ttp_median": ("<=", 120)}


def dig(data: dict, *names: str) -> object:
    for name in names:
        if name in data:
            return data[name]
    return None


def replay_and_score(folder: Path, work: Path) -> dict:
    catalog_json = json.loads((folder / "catalog.json").read_text())
    catalog = work / f"{folder.name}-catalog.yaml"
    events = work / f"{folder.name}-events.jsonl"
    python = sys.executable
    subprocess.run([python, "-m", "bridge", "catalog", "import", str(folder / "catalog.json"), "--out", str(catalog)],
                   check=True, capture_output=True, cwd=ROOT)
    started = time.perf_counter()
    subprocess.run([python, "-m", "bridge", "replay", str(folder / "stream.jsonl.gz"), "--config", str(CONFIG),
                    "--catalog", str(catalog), "--start", catalog_json["start_time"], "--out", str(events)],
                   check=True, capture_output=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    out = subprocess.run([python, str(STORM / "score.py"), str(folder / "truth.json.gz"), str(events),
                          "--format", "json"], check=True, capture_output=True, text=True, cwd=ROOT)
    scores = json.loads(out.stdout)
    scores["replay_seconds"] = round(seconds, 2)
    return scores


def flatten(scores: dict) -> dict:
    """The figures the targets name, whatever nesting score.py uses."""
    flat: dict = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value

    walk("", scores)
    return flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", nargs="*", help="data set folder names (default: all)")
    parser.add_argument("--json", type=Path, help="write all scores here")
    args = parser.parse_args(argv)
    folders = sorted(p for p in (STORM / "data").iterdir() if p.is_dir())
    if args.data:
        folders = [f for f in folders if f.name in args.data]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            results[folder.name] = replay_and_score(folder, Path(tmp))
    print(json.dumps(results, indent=1) if args.json is None else "")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
