#!/usr/bin/env python
"""Write a synthetic GAIN dataset to disk in the PASCAL VOC layout.

    python data_scripts/make_synthetic.py --out data/synthetic/scenes --dataset scenes
    python data_scripts/make_synthetic.py --out data/synthetic/camera --dataset camera

Writes, under ``--out``: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (VOC palette
PNG), ``Annotations/<id>.xml`` (one object per box), ``Saliency/<id>.png`` (the prior, for
inspection), ``ImageSets/Segmentation/<split>.txt`` and ``ImageSets/Main/<split>.txt``,
``classes.txt`` and ``statistics.json`` (the measured bias statistics of every split). The
VOC loader reads it back::

    VOCDataset("data/synthetic/scenes", "train", mask_dir="SegmentationClass")

(``allow_empty=True`` for splits with images without objects: ``context_only``,
``biased_boat`` and some images of the others). JPEG changes pixel values slightly; masks,
boxes and labels are exact.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from PIL import Image
from tqdm import tqdm

from gainlib.data.synthetic import ORIENTATION_SPLITS, SCENE_SPLITS, SyntheticOrientation, SyntheticScenes, synthetic_splits
from gainlib.data.voc_layout import write_annotation_xml, write_id_list, write_mask_png


def write_voc_layout(dataset: SyntheticScenes | SyntheticOrientation, root: Path, split: str,
                     jpeg_quality: int = 95, progress: bool = True) -> None:
    """Write one split of a synthetic dataset under ``root`` in VOC layout."""
    root = Path(root)
    for folder in ("JPEGImages", "SegmentationClass", "Annotations", "Saliency"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    size = dataset.image_size
    for i in tqdm(range(len(dataset)), desc=f"writing {split}", disable=not progress):
        sample_id = dataset.ids[i]
        Image.fromarray(dataset.images[i]).save(root / "JPEGImages" / f"{sample_id}.jpg", quality=jpeg_quality)
        write_mask_png(root / "SegmentationClass" / f"{sample_id}.png", dataset.masks[i])
        objects = [(dataset.classes[int(c)], box.tolist()) for box, c in zip(dataset.boxes[i], dataset.box_labels[i])]
        write_annotation_xml(root / "Annotations" / f"{sample_id}.xml", f"{sample_id}.jpg", size, size, objects)
        if dataset.saliency is not None:
            Image.fromarray(dataset.saliency[i]).save(root / "Saliency" / f"{sample_id}.png")
    write_id_list(root / "ImageSets" / "Segmentation" / f"{split}.txt", dataset.ids)
    write_id_list(root / "ImageSets" / "Main" / f"{split}.txt", dataset.ids)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in dataset.classes))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output root (VOC layout)")
    parser.add_argument("--dataset", choices=("scenes", "camera", "workpiece"), default="scenes")
    parser.add_argument("--splits", nargs="+", default=None,
                        help=f"scenes: {list(SCENE_SPLITS)}; camera/workpiece: {list(ORIENTATION_SPLITS)} (default all)")
    parser.add_argument("--n", type=int, default=None, help="images per split (default: each split's size)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context-bias", type=float, default=0.98, help="scenes only")
    parser.add_argument("--shortcut-strength", type=float, default=0.95, help="camera/workpiece only")
    args = parser.parse_args(argv)

    options = {"image_size": args.image_size, "seed": args.seed}
    if args.dataset == "scenes":
        options["context_bias"] = args.context_bias
    else:
        options["shortcut_strength"] = args.shortcut_strength
    names = args.splits or list(SCENE_SPLITS if args.dataset == "scenes" else ORIENTATION_SPLITS)
    splits = synthetic_splits(args.dataset, names, sizes={name: args.n for name in names} if args.n else None,
                              **options)
    statistics = {}
    for name, dataset in splits.items():
        write_voc_layout(dataset, args.out, name)
        statistics[name] = dataset.statistics()
    (args.out / "statistics.json").write_text(json.dumps(statistics, indent=2))
    print(f"wrote {sum(len(d) for d in splits.values())} images of {args.dataset} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
