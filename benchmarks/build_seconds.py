#!/usr/bin/env python
"""Where a build's training time went: seconds per kind of run, read from the run cache.

    python benchmarks/build_seconds.py                      # the book's cache, _build/cache
    python benchmarks/build_seconds.py --cache /tmp/b/_build/cache --log /tmp/b/build.log

Every cached run keeps its spec (``spec.json``) and its per-epoch history (``history.json``,
with ``train_seconds``). This script groups the runs by what they are -- study, mode, how they
start, their extra labels, their epochs -- and prints a markdown table of the runs of each
kind and their training seconds (summed over runs, one core each: two workers train side by
side, so the wall time of a kind is about half its sum). With ``--log``, the chapters' times
from ``book/build.py``'s output follow. The next cut of the build's work is chosen on these
numbers; the measured tables are in benchmarks/build_seconds.md.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_kind(spec: dict[str, Any]) -> str:
    """A short name of what a run is, e.g. ``"synthetic 64px: gain_ext p1000, scratch, 17 ep"``."""
    data = spec["data"]
    where = f"{data['dataset']} {data['image_size']}px"
    train = spec["train"]
    if "network" in spec:            # a segmentation network (SegmentationSpec)
        return f"{where}: segmentation {train['loss']}, {train['epochs']} ep"
    labels = "".join(f"{k}{spec[f'{name}_labels']}" for k, name in (("p", "pixel"), ("b", "box"))
                     if spec.get(f"{name}_labels"))
    start = "fine-tuned" if spec.get("init") else "scratch"
    mode = train["mode"] + (f" {labels}" if labels else "")
    if data["dataset"] == "synthetic":
        bias = f", bias {data['context_bias']}"
    elif isinstance(data.get("design"), dict):   # a scenario of the bias family
        bias = f", {data['design']['name']}, fill {train.get('fill', 'default')}"
    else:
        bias = f", lamp {data['shortcut_strength']}"
    return f"{where}{bias}: {mode}, {start}, {train['epochs']} ep"


def collect(cache: Path) -> dict[str, list[float]]:
    """``{kind: [training seconds of each run]}`` of every finished run in ``cache``."""
    kinds: dict[str, list[float]] = defaultdict(list)
    for folder in sorted(p for p in cache.iterdir() if p.is_dir() and not p.is_symlink()):
        spec_file, history_file = folder / "spec.json", folder / "history.json"
        if not (spec_file.exists() and history_file.exists()):
            continue
        spec = json.loads(spec_file.read_text())
        history = json.loads(history_file.read_text())
        seconds = sum(float(epoch.get("train_seconds", 0.0)) for epoch in history)
        kinds[run_kind(spec.get("spec", spec))].append(seconds)
    return kinds


def chapter_times(log: Path) -> list[tuple[str, float]]:
    """``(chapter, seconds)`` from ``book/build.py``'s output."""
    found = re.findall(r"^\s+(\d\d_\S+\.ipynb): ok in ([\d.]+) s", log.read_text(), re.M)
    return [(name, float(seconds)) for name, seconds in found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / "cache")
    parser.add_argument("--log", type=Path, default=None, help="book/build.py's output")
    args = parser.parse_args(argv)
    kinds = collect(args.cache)
    total = sum(sum(v) for v in kinds.values())
    print("| run kind | runs | seconds (sum) | seconds per run | share |")
    print("|---|---:|---:|---:|---:|")
    for kind, seconds in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {kind} | {len(seconds)} | {sum(seconds):,.0f} | {sum(seconds) / len(seconds):.1f} "
              f"| {100 * sum(seconds) / total:.1f} % |")
    print(f"| all | {sum(len(v) for v in kinds.values())} | {total:,.0f} | | 100 % |")
    if args.log is not None:
        times = chapter_times(args.log)
        print("\n| chapter | seconds |\n|---|---:|")
        for name, seconds in times:
            print(f"| {name} | {seconds:.1f} |")
        print(f"| all | {sum(s for _, s in times):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
