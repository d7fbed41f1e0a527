#!/usr/bin/env python
"""Draw book/images/synthetic_examples.png: examples of every synthetic split.

    python data_scripts/make_dataset_figure.py

Each column is one image: the image, its annotations (class mask in the VOC palette,
discriminative parts in yellow, boxes in white; for the orientation sets the critical area)
and its saliency prior. Deterministic (seed 0), so rerunning reproduces the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gainlib.data import SyntheticOrientation, SyntheticScenes
from gainlib.data.voc_layout import voc_palette

SCALE = 2
CAPTION = 26


def _annotations(dataset, i: int) -> np.ndarray:
    palette = np.asarray(voc_palette(), np.uint8).reshape(256, 3)
    image = dataset.images[i].astype(np.float32) * 0.35
    mask = dataset.masks[i]
    image[mask > 0] = palette[mask[mask > 0]] * 0.9 + 25
    parts = getattr(dataset, "part_masks", None)
    if parts is not None:
        image[parts[i]] = (255, 230, 0)
    return image.clip(0, 255).astype(np.uint8)


def _column(dataset, i: int, caption: str) -> Image.Image:
    size = dataset.image_size * SCALE
    tiles = [dataset.images[i], _annotations(dataset, i),
             np.repeat(dataset.saliency[i][..., None], 3, axis=2)]
    column = Image.new("RGB", (size, CAPTION + 3 * size + 4), "white")
    draw = ImageDraw.Draw(column)
    for line, text in enumerate(caption.split("\n")):
        draw.text((3, 1 + 12 * line), text, fill="black")
    for row, tile in enumerate(tiles):
        column.paste(Image.fromarray(tile).resize((size, size), Image.NEAREST), (0, CAPTION + row * (size + 2)))
    for x1, y1, x2, y2 in dataset.boxes[i]:
        top = CAPTION + size + 2
        draw.rectangle([x1 * SCALE, top + y1 * SCALE, x2 * SCALE - 1, top + y2 * SCALE - 1], outline="white")
    return column


def make_figure(out: Path, seed: int = 0, scene_design: str = "v3") -> Path:
    """The figure of the designs the book's default profile uses (v3 scenes, v2 orientation)."""
    scenes = {name: SyntheticScenes(name, 8, seed=seed, design=scene_design)
              for name in ("train", "no_context", "context_only", "biased_boat")}
    camera = {name: SyntheticOrientation(name, 4, variant="camera", seed=seed, design="v2-camera")
              for name in ("train", "test_shifted")}
    workpiece = {name: SyntheticOrientation(name, 4, variant="workpiece", seed=seed,
                                            design="v2-workpiece")
                 for name in ("train", "test_shifted")}

    def names(dataset, i):
        return ",".join(dataset.classes[c] for c in np.flatnonzero(dataset.labels[i])) or "(none)"

    picks = [(scenes["train"], 0), (scenes["train"], 1), (scenes["train"], 4), (scenes["no_context"], 0),
             (scenes["context_only"], 0), (scenes["biased_boat"], 0), (scenes["biased_boat"], 1),
             (camera["train"], 1), (camera["test_shifted"], 1), (workpiece["train"], 3), (workpiece["test_shifted"], 3)]
    columns = []
    for dataset, i in picks:
        title = dataset.split if isinstance(dataset, SyntheticScenes) else f"{dataset.variant} {dataset.split}"
        columns.append(_column(dataset, i, f"{title}\n{names(dataset, i)}"))
    gap = 6
    figure = Image.new("RGB", (sum(c.width for c in columns) + gap * (len(columns) - 1), columns[0].height), "white")
    x = 0
    for column in columns:
        figure.paste(column, (x, 0))
        x += column.width + gap
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)  # keep it small
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "book" / "images" / "synthetic_examples.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = make_figure(args.out, args.seed)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
