#!/usr/bin/env python
"""Print the measured statistics of every synthetic split as Markdown tables (for the book).

    python data_scripts/dataset_statistics.py [--seed 0] [--image-size 64]

The numbers come from the rendered pixels (``SyntheticScenes.statistics`` and
``SyntheticOrientation.statistics``), at the default split sizes and parameters and the
designs the book's default profile uses (``--scene-design``, ``--camera-design``,
``--workpiece-design``).
"""

from __future__ import annotations

import argparse
import sys

from gainlib.data import ORIENTATION_SPLITS, SCENE_SPLITS, SyntheticOrientation, SyntheticScenes


def scenes_table(seed: int, image_size: int, context_bias: float, design: str = "v3") -> str:
    lines = ["| split | images | objects / image | class | images with class | P(context \\| class) "
             "| P(context \\| no class) | on its context | part / object pixels |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for split in SCENE_SPLITS:
        stats = SyntheticScenes(split, seed=seed, image_size=image_size, context_bias=context_bias,
                                saliency=None, design=design).statistics()
        for k, (name, c) in enumerate(stats["classes"].items()):
            head = (f"{split} | {stats['images']} | {stats['objects_per_image']:.2f}" if k == 0 else " | | ")
            lines.append(f"| {head} | {name} | {c['images']} | {c['p_context_given_object']:.2f} | "
                         f"{c['p_context_given_no_object']:.2f} | {c['p_on_context']:.2f} | {c['part_fraction']:.2f} |")
    return "\n".join(lines).replace("| nan |", "| -- |").replace(" nan |", " -- |")


def orientation_table(seed: int, image_size: int, shortcut_strength: float,
                      designs: dict[str, str] | None = None) -> str:
    designs = designs or {"camera": "v2-camera", "workpiece": "v2-workpiece"}
    lines = ["| variant | split | domain | images | per class | light follows class (chance) "
             "| object / image | critical area / object |", "|---|---|---|---:|---|---:|---:|---:|"]
    for variant in ("camera", "workpiece"):
        for split in ORIENTATION_SPLITS:
            s = SyntheticOrientation(split, variant=variant, seed=seed, image_size=image_size,
                                     shortcut_strength=shortcut_strength, saliency=None,
                                     design=designs[variant]).statistics()
            lines.append(f"| {variant} | {split} | {s['domain']} | {s['images']} | {s['class_counts']} | "
                         f"{s['p_light_follows_class']:.2f} ({s['chance_light_follows_class']:.2f}) | "
                         f"{s['object_fraction']:.2f} | {s['critical_fraction_of_object']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--context-bias", type=float, default=0.98)
    parser.add_argument("--shortcut-strength", type=float, default=0.95)
    parser.add_argument("--scene-design", default="v3")
    parser.add_argument("--camera-design", default="v2-camera")
    parser.add_argument("--workpiece-design", default="v2-workpiece")
    args = parser.parse_args(argv)
    print(scenes_table(args.seed, args.image_size, args.context_bias, args.scene_design))
    print()
    print(orientation_table(args.seed, args.image_size, args.shortcut_strength,
                            {"camera": args.camera_design, "workpiece": args.workpiece_design}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
