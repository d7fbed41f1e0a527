#!/usr/bin/env python
"""Images per second of the data side, beside the GAIN training step on the same machine.

    python benchmarks/data_throughput.py                 # synthetic set, 64 px
    python benchmarks/data_throughput.py --voc-root data/voc/VOCdevkit/VOC2012 --voc-size 321

Rows: rendering the synthetic scenes (with and without the saliency prior), reading rendered
samples through a DataLoader, and reading a VOC-layout tree from disk (a synthetic set written
to a temporary folder, or real VOC with ``--voc-root``) with 0 and 2 workers. The target of
issue 3 is a data side at least 3x faster than training, so that it is never the bottleneck.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from gainlib.data import SyntheticOrientation, SyntheticScenes, VOCDataset, collate_samples, voc_transforms
from gainlib.data.saliency import spectral_residual_saliency


def gain_step_images_per_second(image_size: int, batch_size: int, num_classes: int) -> float | None:
    """Images/s of one GAIN training step (S_cl + S_am, one class per image) of the small CNN,
    measured by ``step_cost.py`` (median of 3 steps after 2 warm-up steps, this process).

    ``num_classes`` is not used: the step benchmark's head has 20 classes (VOC), and the
    head's size does not change the step's cost noticeably.
    """
    spec = importlib.util.spec_from_file_location("step_cost", Path(__file__).with_name("step_cost.py"))
    step_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_cost)
    result = step_cost.run_case(dict(device="cpu", amp=False, repeats=3, model="small_cnn",
                                     size=image_size, batch=batch_size, kind="gain", positives=1))
    return result["images_per_s"]


def _rate(count: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def _loader_rate(dataset: Dataset, batch_size: int, workers: int, epochs: int = 1) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate_samples, persistent_workers=workers > 0)
    next(iter(loader))                                     # start the workers outside the timing

    def consume() -> None:
        for _ in range(epochs):
            for _batch in loader:
                pass

    return _rate(len(dataset) * epochs, consume)


def _write_voc_copy(dataset: SyntheticScenes, root: Path) -> None:
    path = Path(__file__).resolve().parents[1] / "data_scripts" / "make_synthetic.py"
    spec = importlib.util.spec_from_file_location("make_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_voc_layout(dataset, root, "bench", progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="synthetic images per measurement")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--voc-root", type=Path, default=None, help="also time a real VOC tree")
    parser.add_argument("--voc-split", default="val")
    parser.add_argument("--voc-size", type=int, default=321)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the main process (default: torch's); on a busy 2-core machine "
                             "1 thread makes num_workers=0 loading far faster (collate runs many tiny ops)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size, n, batch = args.image_size, args.n, args.batch_size
    rows: list[tuple[str, float | None]] = []

    rows.append((f"render SyntheticScenes {size}px + saliency prior",
                 _rate(n, lambda: SyntheticScenes("train", n, image_size=size))))
    rows.append((f"render SyntheticScenes {size}px, no saliency",
                 _rate(n, lambda: SyntheticScenes("train", n, image_size=size, saliency=None))))
    rows.append((f"render SyntheticOrientation (workpiece) {size}px + saliency",
                 _rate(n, lambda: SyntheticOrientation("train", n, variant="workpiece", image_size=size))))
    scenes = SyntheticScenes("train", n, image_size=size)
    for workers in (0, 2):
        rows.append((f"DataLoader over rendered scenes, {workers} workers",
                     _loader_rate(scenes, batch, workers)))
    # Without a transform a synthetic sample is built on first access and then reused (the
    # main process's memo is now full: the 0-worker pass above built every sample).
    rows.append(("DataLoader over rendered scenes, 0 workers, samples already built",
                 _loader_rate(scenes, batch, 0)))
    with tempfile.TemporaryDirectory() as tmp:
        _write_voc_copy(scenes, Path(tmp))
        for workers in (0, 2):
            disk = VOCDataset(tmp, "bench", mask_dir="SegmentationClass", allow_empty=True,
                              transforms=voc_transforms(train=True, size=size))
            rows.append((f"VOC-layout from disk ({size}px JPEG), {workers} workers", _loader_rate(disk, batch, workers)))
            with_prior = VOCDataset(tmp, "bench", mask_dir="SegmentationClass", allow_empty=True,
                                    transforms=voc_transforms(train=True, size=size),
                                    saliency=spectral_residual_saliency)
            rows.append((f"VOC-layout from disk + saliency prior, {workers} workers",
                         _loader_rate(with_prior, batch, workers)))
    if args.voc_root is not None:
        for workers in (0, 2):
            voc = VOCDataset(args.voc_root, args.voc_split, transforms=voc_transforms(train=True, size=args.voc_size),
                             saliency=spectral_residual_saliency)
            subset = torch.utils.data.Subset(voc, range(min(len(voc), 4 * batch)))
            rows.append((f"VOC {args.voc_split} at {args.voc_size}px + saliency, {workers} workers",
                         _loader_rate(subset, min(batch, 16), workers)))

    train = gain_step_images_per_second(size, batch, len(SyntheticScenes.classes))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}\n")
    print("| data path | images/s | x GAIN step |")
    print("|---|---:|---:|")
    for name, rate in rows:
        ratio = f"{rate / train:.1f}" if train else "n/a"
        print(f"| {name} | {rate:,.0f} | {ratio} |")
    print(f"| GAIN training step ({size}px, batch {batch}) | {train:,.0f} | 1.0 |" if train
          else f"| GAIN training step ({size}px, batch {batch}) | n/a (not wired yet) | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
