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
#: (label, how to read it from score.py's JSON, target, comparison)
FIGURES = [
    ("F1", lambda s: s["grouping"]["pairwise_f1"], 0.9, ">="),
    ("ARI", lambda s: s["grouping"]["adjusted_rand_index"], 0.85, ">="),
    ("noise pages", lambda s: s["noise_pages"], 0, "<="),
    ("missed", lambda s: s["missed_incidents"], 0, "<="),
    ("routing", lambda s: s["routing_accuracy"], 0.95, ">="),
    ("priority exact", lambda s: s["priority_accuracy_exact"], 0.9, ">="),
    ("paged before outage", lambda s: s["paged_before_outage"]["rate"], 0.6, ">="),
    ("TTP median s", lambda s: s["time_to_page_s"]["median"] or float("inf"), 120, "<="),
    ("replay s", lambda s: s["replay_seconds"], 10, "<="),
]


def meets(value: float, target: float, op: str) -> bool:
    return value >= target if op == ">=" else value <= target


def table(results: dict[str, dict]) -> str:
    """A Markdown table: one row per data set, the target in the header, a mark where it is missed."""
    head = "| data set | " + " | ".join(f"{label} ({op} {target:g})" for label, _, target, op in FIGURES) + " |"
    rows = [head, "|" + " --- |" * (len(FIGURES) + 1)]
    for name, scores in results.items():
        cells = []
        for _, read, target, op in FIGURES:
            value = read(scores)
            text = f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
            cells.append(text if meets(value, target, op) else f"**{text}** ✗")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


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
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":  # `make storm` runs this file
    sys.exit(main())
