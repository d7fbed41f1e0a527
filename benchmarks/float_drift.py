#!/usr/bin/env python
"""How far the default profile's numbers move when only floating-point summation order changes.

    python benchmarks/float_drift.py [--seeds 0 1] [--threads 1 2]

Another machine (another CPU's vector width, another BLAS) runs the same code with its sums in
another order; so does this machine with another number of intra-op threads. This script trains
the default profile's chapter-1 classifier and chapter-2 GAIN run for each seed once per thread
count (into a throw-away cache), checks that the weights differ (otherwise the measurement says
nothing), and prints, per seed, how far val mAP and chapter 1's part and body coverage move
between thread counts. That spread is the tolerance to read the default profile's numbers with
across machines; the worker count does not matter (each run trains on one thread in its worker,
tests/test_pool.py checks the weights are identical).
"""

from __future__ import annotations

import argparse
import tempfile

import torch


def measure(seed: int, threads: int, cache: str) -> dict[str, float]:
    from gainbook.chapters import CLASSIFIER, GAIN
    from gainbook.profiles import book_profile
    from gainbook.runs import load_split, train_run
    from gainbook.studies import attention_by_region
    from gainlib.trainer import evaluate

    torch.set_num_threads(threads)
    settings = book_profile("default")
    val = load_split(settings.data, "val")
    row: dict[str, float] = {}
    for method in (CLASSIFIER, GAIN):
        run = train_run(method.spec(settings, seed), cache, device="cpu")
        regions = attention_by_region(run.model, val)[["part", "body", "iou"]].mean()
        row.update({f"{method.short} mAP": evaluate(run.model, val, attention=False)["map"],
                    **{f"{method.short} {k}": float(v) for k, v in regions.items()},
                    f"{method.short} first weight": float(
                        next(run.model.parameters()).detach().flatten()[0])})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    for seed in args.seeds:
        rows = {}
        for threads in args.threads:
            with tempfile.TemporaryDirectory() as cache:
                rows[threads] = measure(seed, threads, cache)
        first, *rest = args.threads
        for key in rows[first]:
            values = [rows[t][key] for t in args.threads]
            spread = max(values) - min(values)
            print(f"seed {seed} {key:24s} " + "  ".join(f"{v:.6f}" for v in values)
                  + f"  spread {spread:.2e}")


if __name__ == "__main__":
    main()
