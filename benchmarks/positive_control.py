"""Positive control: does the measurement machinery find an effect where one is known to exist?

    PYTHONPATH=. python benchmarks/positive_control.py                       # 3 seeds, on test
    PYTHONPATH=. python benchmarks/positive_control.py --seeds 0 --split val # pilot: val only

Data: :class:`gainlib.data.DecoyShapes` (a DecoyMNIST-style shortcut, Ross et al. 2017):
one object per 48 px image and a 6 px corner patch whose colour is the class in ``train`` and
``val`` and random in ``test``. Models (small_cnn, widths (16, 32), Adam, cosine schedule,
``torch.set_num_threads(1)``), per seed:

* ``oracle``: a classifier trained on ``no_shortcut`` (patch random) for 12 + 6 epochs;
* ``classifier``: trained on ``train`` for 12 epochs, then continued for 6 (``classifier+``);
* ``gain``: fine-tuned from that 12-epoch classifier for 6 epochs with L_cl + L_am (Eq. 6);
* ``gain_ext``: fine-tuned from it for 6 epochs with L_cl + L_am + 10 L_p (Eq. 8) on the masks
  of 50 training images (5 %, chosen per seed by ``mark_extra_labels``);
* ``gain_ext_w30``: the same with 30 L_p (chosen on val, see below);

so every final model trained 18 epochs. Measured on ``test`` (500 images): accuracy (argmax),
macro one-vs-rest AUC (:func:`gainlib.metrics.binary_auroc`), the Grad-CAM mass of the true
class inside the object and inside the patch (:func:`gainlib.metrics.attention_mass`), and the
deletion AUC of the true class's probability when the most attended pixels are erased
(attention order) vs a region of the same shape elsewhere (``shifted``;
:func:`gainlib.metrics.deletion_insertion`, 10 steps, fill 0 = the dataset mean). Intervals:
:func:`gainbook.stats.paired_bootstrap` of gain_ext minus classifier+ (the classifier trained
as long), over seeds and over test images grouped by seed (seeds, then images within seeds),
with :func:`gainbook.stats.verdict`.

Measured 2026-12-01 on 2 shared CPU cores, seeds 0, 1, 2 (model seeds; data seed 0),
mean over seeds (per-seed values), test split (500 images, patch random):

| model        | test accuracy          | test AUC (macro)       | mass in object         | deletion AUC att. / shifted |
|---|---|---|---|---|
| oracle | 0.880 (.852 .908 .880) | 0.970 (.969 .976 .965) | 0.360 (.364 .339 .377) | 0.283 / 0.467 |
| classifier+ | 0.634 (.596 .618 .688) | 0.878 (.869 .873 .893) | 0.372 (.377 .366 .374) | 0.218 / 0.472 |
| gain | 0.598 (.574 .560 .660) | 0.862 (.851 .853 .881) | 0.403 (.395 .414 .399) | 0.219 / 0.425 |
| gain_ext | 0.729 (.662 .712 .812) | 0.897 (.888 .886 .918) | 0.469 (.463 .473 .470) | 0.237 / 0.447 |
| gain_ext_w30 | 0.783 (.776 .742 .830) | 0.895 (.892 .881 .912) | 0.515 (.529 .491 .524) | 0.241 / 0.433 |

(chance: accuracy 0.25, AUC 0.5, mass in object ~0.08 = the object's share of the image.)
gain_ext - classifier+, paired bootstrap (10,000 resamples, 95 %), verdict "greater":
accuracy over seeds +0.095 [+0.066, +0.124] holds; over seeds then test images +0.095
[+0.062, +0.129] holds; AUC +0.019 [+0.013, +0.025] holds; mass in object +0.096
[+0.086, +0.108] holds. gain_ext_w30: accuracy +0.149 [+0.124, +0.180] (seeds then images
[+0.112, +0.187]) holds; AUC +0.017 [+0.008, +0.023] holds; mass +0.142 [+0.125, +0.152]
holds. Training took 371 s for the three seeds, the whole script about 15 minutes.

Reading: the control works as a control. The shortcut classifier is right on 0.988 of ``val``
(seed 0) but on 0.634 of ``test``, against the oracle's 0.880; self-guided GAIN does not help
(0.598); GAIN_ext^p with masks on 5 % of the images recovers part of the gap (0.729, and
0.783 at omega 30), and its intervals exclude 0. The recovery is partial: both stay well
below the oracle. Three seeds on one data draw: the percentile intervals over 3 values are
optimistic (``gainbook.stats``), the seeds-then-images interval is the safer one.
Two measurements do not separate the models the way one might expect: the true class's
Grad-CAM mass inside the object is no higher for the oracle (0.360) than for the shortcut
classifier (0.372) -- on test the patch usually shows another class, so the true class's map
does not point at it (mass in patch 0.067) -- and every model's attended region matters more
to its decision than a region of the same shape elsewhere (deletion AUC 0.22-0.28 vs 0.43-0.47).

How the settings were chosen (on ``val`` only, seed 0; ``test`` was measured once, above):
SGD at lr 0.02 (the book's default) had learned neither the patch nor the objects in 12-24
epochs (val accuracy 0.56-0.78), so the script uses Adam (lr 0.003, fine-tuning 0.001).
GAIN_ext is fine-tuned from the 12-epoch classifier; trained from scratch for 18 epochs
(omega 10, no warm-up) it put 0.75 of its attention on the object but its val accuracy fell
to 0.17, below chance: L_am rewarded scoring the patch's class low once the object was
erased. omega = 10 (the paper's) was fixed beforehand; on val, omega 10/30/100 moved the
attention mass in the object from 0.34 to 0.51/0.59 and val accuracy from 0.996 to
0.83/0.51 (val still has the shortcut, so losing it costs val accuracy); omega 30 is
reported beside the paper's value as the largest that kept val accuracy near the oracle's
(0.876 on val).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass

import numpy as np
import torch

from gainbook.stats import paired_bootstrap, verdict
from gainlib.data import DecoyShapes, collate_samples, mark_extra_labels
from gainlib.gain import GAIN, GainConfig
from gainlib.metrics import attention_mass, binary_auroc, deletion_insertion
from gainlib.models import build_classifier
from gainlib.trainer import GainTrainer, TrainConfig


@dataclass(frozen=True)
class Settings:
    image_size: int = 48
    n_train: int = 1000
    n_val: int = 250
    n_test: int = 500
    widths: tuple[int, ...] = (16, 32)
    optimizer: str = "adam"      # SGD at lr 0.02 had not learned even the patch in 12 epochs
    classifier_epochs: int = 12
    classifier_lr: float = 0.003
    finetune_epochs: int = 6
    finetune_lr: float = 0.001
    pixel_labels: int = 50
    ext_weight: float = 10.0        # the paper's omega (Eq. 8): the primary run, fixed beforehand
    ext_weight_tuned: float = 30.0  # a second run, chosen on val's attention mass (see the notes)
    data_seed: int = 0


def _model(settings: Settings, seed: int, gain: GainConfig | None = None) -> GAIN:
    torch.manual_seed(seed)
    classifier, layer = build_classifier("small_cnn", 4, widths=settings.widths)
    return GAIN(classifier, layer, gain)


def _fit(model: GAIN, mode: str, data, epochs: int, lr: float, seed: int, optimizer: str) -> float:
    config = TrainConfig(mode=mode, epochs=epochs, lr=lr, optimizer=optimizer, lr_schedule="cosine",
                         seed=seed, device="cpu", progress=False, eval_attention=False)
    started = time.perf_counter()
    GainTrainer(model, config).fit(data)
    return time.perf_counter() - started


def _continued(base: GAIN, settings: Settings, seed: int, gain: GainConfig | None = None) -> GAIN:
    model = _model(settings, seed, gain)
    model.load_state_dict(base.state_dict())
    return model


def measure(model: GAIN, data: DecoyShapes, batch_size: int = 250) -> dict[str, np.ndarray | float]:
    """Per-image results on ``data`` and their summaries."""
    model.eval()
    logits, maps, images = [], [], []
    for start in range(0, len(data), batch_size):
        batch = collate_samples([data[i] for i in range(start, min(start + batch_size, len(data)))])
        out = model.attention(batch["image"], labels=batch["labels"])   # the true class's map
        logits.append(out.logits)
        maps.append(out.maps[:, 0])
        images.append(batch["image"])
    logits, maps, images = torch.cat(logits), torch.cat(maps), torch.cat(images)
    labels = torch.from_numpy(data.labels)
    truth = labels.argmax(1)
    objects = torch.from_numpy(data.masks > 0)
    patches = torch.from_numpy(data.patch_masks())
    probability = lambda x: model(x).softmax(1)    # noqa: E731
    with torch.no_grad():
        curves = {order: deletion_insertion(probability, images, maps, truth, steps=10, order=order,
                                            seed=0)["deletion_auc"].numpy()
                  for order in ("attention", "shifted")}
    correct = (logits.argmax(1) == truth).numpy().astype(np.float64)
    mass_object = attention_mass(maps, objects).numpy()
    mass_patch = attention_mass(maps, patches).numpy()
    return {
        "correct": correct,
        "accuracy": float(correct.mean()),
        "auc": float(binary_auroc(logits, labels).mean()),
        "mass_object": float(np.nanmean(mass_object)),
        "mass_patch": float(np.nanmean(mass_patch)),
        "deletion_attention": float(curves["attention"].mean()),
        "deletion_shifted": float(curves["shifted"].mean()),
    }


def run_seed(seed: int, settings: Settings, splits: dict[str, DecoyShapes], split: str) -> dict:
    s = settings
    results, seconds = {}, {}
    oracle = _model(s, seed)
    seconds["oracle"] = _fit(oracle, "classifier", splits["no_shortcut"], s.classifier_epochs,
                             s.classifier_lr, seed, s.optimizer)
    seconds["oracle"] += _fit(oracle, "classifier", splits["no_shortcut"], s.finetune_epochs,
                              s.finetune_lr, seed, s.optimizer)
    results["oracle"] = measure(oracle, splits[split])
    base = _model(s, seed)
    seconds["classifier"] = _fit(base, "classifier", splits["train"], s.classifier_epochs,
                                 s.classifier_lr, seed, s.optimizer)
    continued = _continued(base, s, seed)
    seconds["classifier+"] = _fit(continued, "classifier", splits["train"], s.finetune_epochs,
                                  s.finetune_lr, seed, s.optimizer)
    results["classifier+"] = measure(continued, splits[split])
    gain = _continued(base, s, seed)
    seconds["gain"] = _fit(gain, "gain", splits["train"], s.finetune_epochs, s.finetune_lr, seed, s.optimizer)
    results["gain"] = measure(gain, splits[split])
    flagged = mark_extra_labels(copy.copy(splits["train"]), pixel=s.pixel_labels, seed=seed)
    for name, weight in (("gain_ext", s.ext_weight), ("gain_ext_w30", s.ext_weight_tuned)):
        ext = _continued(base, s, seed, GainConfig(ext_weight=weight))
        seconds[name] = _fit(ext, "gain_ext", flagged, s.finetune_epochs, s.finetune_lr, seed,
                             s.optimizer)
        results[name] = measure(ext, splits[split])
    return {"results": results, "seconds": seconds}


COLUMNS = ("accuracy", "auc", "mass_object", "mass_patch", "deletion_attention", "deletion_shifted")


def report(runs: dict[int, dict], split: str) -> str:
    seeds = sorted(runs)
    models = list(runs[seeds[0]]["results"])
    lines = [f"{split} split, seeds {seeds}; mean over seeds (per-seed values)",
             "| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in models:
        cells = []
        for column in COLUMNS:
            values = [runs[seed]["results"][name][column] for seed in seeds]
            cells.append(f"{np.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if len(seeds) >= 2:
        for name in ("gain_ext", "gain_ext_w30"):
            for column in ("accuracy", "auc", "mass_object"):
                a = [runs[seed]["results"][name][column] for seed in seeds]
                b = [runs[seed]["results"]["classifier+"][column] for seed in seeds]
                interval = paired_bootstrap(a, b, seed=0)
                lines.append(f"{name} - classifier+ {column}, over seeds: {interval} -> "
                             f"{verdict(interval, 'greater')}")
            a = np.concatenate([runs[seed]["results"][name]["correct"] for seed in seeds])
            b = np.concatenate([runs[seed]["results"]["classifier+"]["correct"] for seed in seeds])
            groups = np.repeat(seeds, len(a) // len(seeds))
            interval = paired_bootstrap(a, b, groups=groups, seed=0)
            lines.append(f"{name} - classifier+ accuracy, seeds then images: {interval} -> "
                         f"{verdict(interval, 'greater')}")
    total = sum(sum(runs[seed]["seconds"].values()) for seed in seeds)
    lines.append(f"training seconds: {total:.0f} in all; per seed "
                 + json.dumps({k: round(v) for k, v in runs[seeds[0]]["seconds"].items()}))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split", choices=["val", "test"], default="test",
                        help="where to measure: tune on val, report test once")
    parser.add_argument("--finetune-epochs", type=int, default=Settings.finetune_epochs)
    parser.add_argument("--finetune-lr", type=float, default=Settings.finetune_lr)
    parser.add_argument("--ext-weight", type=float, default=Settings.ext_weight)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default=Settings.optimizer)
    parser.add_argument("--classifier-lr", type=float, default=Settings.classifier_lr)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = Settings(finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                        ext_weight=args.ext_weight, optimizer=args.optimizer,
                        classifier_lr=args.classifier_lr)
    sizes = {"train": settings.n_train, "no_shortcut": settings.n_train, "val": settings.n_val,
             "test": settings.n_test}
    names = ["train", "no_shortcut", args.split]
    splits = {name: DecoyShapes(name, sizes[name], image_size=settings.image_size,
                                seed=settings.data_seed) for name in names}
    runs = {}
    for seed in args.seeds:
        runs[seed] = run_seed(seed, settings, splits, args.split)
        print(f"seed {seed}: " + json.dumps({m: {k: round(v, 3) for k, v in r.items() if k != "correct"}
                                             for m, r in runs[seed]["results"].items()}), flush=True)
    print(f"settings: {settings}")
    print(report(runs, args.split))


if __name__ == "__main__":
    main()
