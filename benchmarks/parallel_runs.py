#!/usr/bin/env python
"""Training runs side by side in worker processes against one after the other (gainbook.pool).

    python benchmarks/parallel_runs.py              # GAIN_ext epochs, small CNN and densenet_small
    python benchmarks/parallel_runs.py --epochs 3

For each network, the seconds of one GAIN_ext epoch (the default profile's data, samples built
beforehand, training time only) trained three ways: in one process with every torch thread;
in one process with one thread; and as two runs in two single-threaded processes started
together, whose slower run over 2 gives the time per run. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace

import torch

CASES = {
    "small CNN, 48 px (chapters 1-5)": "small_cnn",
    "densenet_small, 64 px (chapter 6)": "densenet_small",
}


def epoch_seconds(case: str, threads: int, epochs: int) -> float:
    """Mean training seconds per epoch of one GAIN_ext run, in this process."""
    torch.set_num_threads(threads)
    from gainbook.runs import training_set, build_model
    from gainbook.profiles import book_profile, orientation_profile
    from gainlib.trainer import GainTrainer

    if case == "small_cnn":
        spec = book_profile("default").finetuned(0, "gain_ext", pixel_labels=85)
    else:
        spec = orientation_profile("workpiece", "default").finetuned(0, "gain_ext", box_labels=10)
    model, data = build_model(spec), _training_set(spec)
    for i in range(len(data)):          # build every sample first: training time only
        data[i]
    config = replace(spec.train, epochs=epochs, device="cpu", progress=False, checkpoint_dir=None)
    history = GainTrainer(model, config).fit(data)
    return sum(h["train_seconds"] for h in history) / epochs


def _start(case: str, threads: int, epochs: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", case, str(threads), str(epochs)],
                            stdout=subprocess.PIPE, text=True)


def _seconds(process: subprocess.Popen) -> float:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"worker failed with exit code {process.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        case, threads, epochs = args.worker
        print(json.dumps(epoch_seconds(case, int(threads), int(epochs))))
        return 0
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; seconds per GAIN_ext epoch\n")
    print(f"| network | 1 run, {threads} threads | 1 run, 1 thread | 2 runs in 2 processes, "
          f"per run | speed-up |")
    print("|---|---|---|---|---|")
    for name, case in CASES.items():
        serial = _seconds(_start(case, threads, args.epochs))
        single = _seconds(_start(case, 1, args.epochs))
        pair = [_start(case, 1, args.epochs) for _ in range(2)]
        side_by_side = max(_seconds(p) for p in pair) / 2
        print(f"| {name} | {serial:.2f} | {single:.2f} | {side_by_side:.2f} | "
              f"{serial / side_by_side:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
