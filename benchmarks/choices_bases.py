"""Chapter 7's one-factor-at-a-time design on other bases, measured outside the book.

The default book measures the fill of the erased region on GAIN only. This script runs any
factors (:data:`gainbook.choices.FACTORS`) on any bases (:data:`gainbook.choices.BASES`) with the
chapter's own functions, and prints each level against its base's default: the paired
difference over seeds with its 95 % bootstrap interval, on val (never a test split)::

    GAIN_BOOK_CACHE=/tmp/cache python benchmarks/choices_bases.py --seeds 0 1 2 3 4 \\
        --bases "GAIN" "GAIN, FC head" --factors "Grad-CAM weights"
    GAIN_BOOK_CACHE=/tmp/cache python benchmarks/choices_bases.py --seeds 0 1 2 \\
        --bases "GAIN_ext^p" --factors "extra-supervision weight"

Runs train in the book's worker pool (2 processes of one thread on 2 cores) and land in the
run cache (``$GAIN_BOOK_CACHE``), so the chapter finds them with the same parameters.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math

import torch

from gainbook.chapters import method_runs
from gainbook.choices import (BASES, FACTORS, base_method, choice_design, choice_records,
                              choice_verdicts)
from gainbook.profiles import book_profile
from gainbook.runs import load_split


def interval(row: dict) -> str:
    """``+1.2 [-0.3, +2.5]`` in points, or the verdict when there is no interval."""
    if "difference" not in row:
        return row["verdict"]
    points = [100 * row[k] for k in ("difference", "low", "high")]
    if math.isnan(points[1]):
        return f"{points[0]:+.1f}"
    return f"{points[0]:+.1f} [{points[1]:+.1f}, {points[2]:+.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bases", nargs="+", default=["GAIN"], choices=BASES)
    parser.add_argument("--factors", nargs="+", default=["Grad-CAM weights"],
                        choices=list(FACTORS))
    parser.add_argument("--json", default=None, help="also write the records and verdicts here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    settings = book_profile(args.profile, seeds=args.seeds)
    bases = [base_method(name, settings.data.n_train) for name in args.bases]
    design = choice_design(bases, args.factors)
    methods = list(dict.fromkeys(row.method for row in design))
    runs = method_runs(settings, methods, diverged="record")
    models = {m: {seed: None if run is None else run.model for seed, run in by_seed.items()}
              for m, by_seed in runs.items()}
    splits = {name: load_split(settings.data, name) for name in ("val", "no_context")}
    records = choice_records(design, models, splits)
    verdicts = choice_verdicts(design, records, models)

    print(f"\n{datetime.date.today()}, profile {args.profile}, seeds {args.seeds}, on val")
    print("| base | factor | level | Δ attention on object (points) | Δ val mAP (points) | seeds |")
    print("|---|---|---|---|---|---|")
    by_level: dict[tuple, dict] = {}
    for row in verdicts:
        by_level.setdefault((row["base"], row["factor"], row["level"]), {})[row["metric"]] = row
    for (base, factor, level), rows in by_level.items():
        pairs = rows["mAP val"].get("pairs", len(args.seeds))
        print(f"| {base} | {factor} | {level} | {interval(rows['attention on object'])} | "
              f"{interval(rows['mAP val'])} | {pairs} |")
    print("\nmeans over seeds (attention on object, val mAP, collapsed runs):")
    for row in design:
        got = [r for r in records if r["method"] == row.method]
        mean = {k: sum(r.get(k, math.nan) for r in got) / len(got)
                for k in ("attention on object", "mAP val", "collapsed")}
        print(f"  {row.base.label} / {row.factor}: {row.level}: "
              f"{mean['attention on object']:.3f}, {mean['mAP val']:.3f}, {mean['collapsed']:.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"date": str(datetime.date.today()), "args": vars(args),
                       "records": [{**r, "method": r["method"].label} for r in records],
                       "verdicts": verdicts}, out, indent=1, default=str)


if __name__ == "__main__":
    main()
