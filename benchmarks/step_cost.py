"""Cost of a training step: plain classifier vs GAIN vs GAIN_ext, and attention vs #classes.

    python benchmarks/step_cost.py               # small CNN at 96 px (b=32) and VGG16 at 224 px (b=8)
    python benchmarks/step_cost.py --quick       # small CNN only (--models vgg16: VGG16 only)
    python benchmarks/step_cost.py --device cuda --amp

Each case runs in its own process so that peak memory is that case's alone: on CUDA the
peak allocated by PyTorch, on the CPU the growth of the process's peak resident set size
over its size before the first step. Times are the median of ``--repeats`` steps after
two warm-up steps. Targets (issue 2): GAIN step <= 2.3x the plain step; attention for 4
classes <= 1.5x one class. Run it on an otherwise idle machine: other processes on the
same cores distort every ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch

NUM_CLASSES = 20  # as PASCAL VOC


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batch(batch_size: int, size: int, positives: int, with_masks: bool, device):
    from gainlib.data.protocol import IGNORE_INDEX
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(batch_size, NUM_CLASSES)
    for b in range(batch_size):
        labels[b, torch.randperm(NUM_CLASSES, generator=g)[:positives]] = 1
    batch = {
        "image": torch.randn(batch_size, 3, size, size, generator=g),
        "labels": labels,
        "mask": torch.randint(0, NUM_CLASSES + 1, (batch_size, size, size), generator=g),
        "use_mask": torch.full((batch_size,), with_masks),
        "use_boxes": torch.zeros(batch_size, dtype=torch.bool),
    }
    batch["mask"][:, :2] = IGNORE_INDEX
    return {k: v.to(device) for k, v in batch.items()}


def run_case(case: dict) -> dict:
    from gainlib.gain import GAIN

    device = torch.device(case["device"])
    torch.manual_seed(0)
    model = GAIN.from_name(case["model"], NUM_CLASSES).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    batch = _batch(case["batch"], case["size"], case["positives"], False, device)
    ext = _batch(max(1, case["batch"] // 4), case["size"], case["positives"], True, device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if case["amp"] and device.type == "cuda" else nullcontext())

    def step():
        with autocast:
            if case["kind"] == "attention":
                model._trainable_attention(batch["image"], batch["labels"])[1].sum()
                return
            losses = model.stream_losses(batch, ext_batch=ext if case["kind"] == "gain_ext" else None,
                                         attention_mining=case["kind"] != "plain")
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    def timed():
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    rss_before = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        timed()
    seconds = statistics.median(timed() for _ in range(case["repeats"]))
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda"
            else _peak_rss_mib() - rss_before)
    return {**case, "seconds": seconds, "images_per_s": case["batch"] / seconds, "peak_mib": peak}


def _in_subprocess(case: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--quick", action="store_true", help="small CNN only")
    parser.add_argument("--models", default="small_cnn,vgg16", help="comma-separated: small_cnn, vgg16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    presets = {"small_cnn": (96, 32), "vgg16": (224, 8)}
    names = ["small_cnn"] if args.quick else args.models.split(",")
    setups = [(name, *presets[name]) for name in names]
    common = dict(device=args.device, amp=args.amp, repeats=args.repeats)
    print(f"device: {args.device}  threads: {torch.get_num_threads()}  amp: {args.amp}  "
          f"torch {torch.__version__}\n")
    # S_am classifies one masked copy of each image per positive class, so the GAIN step's
    # cost grows with the classes per image (PASCAL VOC averages about 1.5).
    print("| model | input | batch | classes/image | step | s/step | images/s | x plain | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, size, batch in setups:
        for positives in (1, 2):
            plain = None
            for kind in ("plain", "gain", "gain_ext"):
                r = _in_subprocess(dict(common, model=model, size=size, batch=batch, kind=kind,
                                        positives=positives))
                plain = plain or r["seconds"]
                print(f"| {model} | {size} | {batch} | {positives} | {kind} | {r['seconds']:.3f} "
                      f"| {r['images_per_s']:.1f} | {r['seconds'] / plain:.2f} | {r['peak_mib']:.0f} |",
                      flush=True)
    print("\nAttention (forward + trainable Grad-CAM of every positive class, no backward):\n")
    print("| model | input | batch | classes/image | s | x 1 class |")
    print("|---|---|---|---|---|---|")
    for model, size, batch in setups:
        one = None
        for positives in (1, 2, 4, 8):
            r = _in_subprocess(dict(common, model=model, size=size, batch=batch, kind="attention",
                                    positives=positives))
            one = one or r["seconds"]
            print(f"| {model} | {size} | {batch} | {positives} | {r['seconds']:.3f} "
                  f"| {r['seconds'] / one:.2f} |", flush=True)


if __name__ == "__main__":
    main()
