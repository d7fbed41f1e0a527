"""The paper-scale reproduction: GAIN on PASCAL VOC 2012 + SBD, as Li et al. ran it (Sec. 4-5.1).

Chapter 8's plan, as data, and a command line that trains it. Training and caching are
:func:`gainbook.runs.train_run`'s and :func:`gainbook.segmentation_runs.train_segmentation`'s; this
module only says *which* runs, and puts their numbers beside the paper's.

* :func:`attention_runs` — the attention models (Sec. 4.1: VGG16 from ImageNet, 321 px, GAIN
  fine-tuned with SGD at lr 1e-5 for 35 epochs): the plain classifier, whose Grad-CAM is the
  baseline ("VGG (Grad-CAM)" of Table 7, the cues of "SEC (baseline)" in Table 1), trained as
  long as the others; self-guided GAIN (Sec. 3.1); GAIN_ext with boxes (``^b``, Sec. 3.3) and with
  pixel masks (``^p``, Sec. 3.2) on the paper's 1,464 images with extra labels (Tables 1, 3, 4,
  7), a count scaled with :func:`gainbook.paper.extra_label_count` on a training set other than
  VOC's 10,582. All are fine-tuned from the same classifier.
* :func:`segmentation_runs` — Table 1's segmentation networks: every attention model's cues in
  SEC (the "-SEC" rows; DeepLab-LargeFOV with SEC's settings, Sec. 4.1) and, but for Grad-CAM,
  in the paper's own framework (Fig. 4, Eq. 11-12; DeepLab on ResNet-101 with the settings of
  Sec. 4.1's implementation details, :data:`OWN_FRAMEWORK_PAPER`).
* :func:`train_attention`, :func:`train_segmentations` — train (or load) them, a log line a run.
* :func:`evaluate_reproduction` — evaluate the trained networks on VOC val (mIoU with and
  without the dense CRF, Table 7's classification scores) into the results of a run: plain,
  JSON-able records, with the device and the wall time.
* :func:`classification_scores`, :func:`results_status`, :func:`table_1`, :func:`table_7`,
  :func:`save_results`, :func:`load_results` — the measured tables beside the paper's, and the
  JSON a run leaves (:data:`RESULTS_PATH` is where the book looks for one).

Command line: train, then evaluate and write the results (``--stage all``, the default; chapter 8
shows them)::

    python -m gainbook.reproduce --profile paper --voc-root data/voc --device cuda [--seeds 0 1 2]
    torchrun --nproc_per_node=N -m gainbook.reproduce --profile paper --voc-root data/voc \\
        --device cuda --stage attention

The results go to ``--results-file``: by default :data:`RESULTS_PATH` for the ``paper`` profile
(the file chapter 8 shows) and ``ci-results.json`` in the model cache for the ``ci`` smoke test,
whose numbers are no results. ``--stage attention`` and ``--stage segmentation`` train only.

Under ``torchrun`` every rank runs the same plan, in the same order, and calls ``train_run``; the
trainer joins the process group and shards the batches (``batch_size`` is per process, so the
effective batch is N times the profile's, which the cache key does not record); only rank 0
prints. This relies on :func:`~gainbook.runs.train_run` writing ``spec.json`` and the
finished ``model.pt`` from rank 0 alone and then waiting at a barrier, so that no rank replaces
or reads a model another is still writing (a fine-tuned run loads its classifier from the
cache). The segmentation stage and the evaluation are single-process
(``train_segmentation`` has no distributed mode): run them without ``torchrun`` (``--stage
all``), or let chapter 8 run them; they load the attention models from the cache.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from gainbook.cache import cache_root, write_text_atomic
from gainbook.formatting import dashed
from gainbook.paper import (TABLE_1_EXTRA, TABLE_1_IMAGE_LEVEL, TABLE_3, TABLE_4, TABLE_7,
                            TABLE_7_BOAT_MASKS, VOC_TRAIN_IMAGES, count_name, extra_label_count)
from gainbook.profiles import BookProfile, book_profile
from gainbook.runs import RunSpec, TrainedRun, load_split, train_run
from gainbook.segmentation_runs import (SegmentationRun, SegmentationSpec, segmentation_spec,
                                        train_segmentation)
from gainlib.data.voc_layout import DataFileError, parse_annotation_xml

__all__ = [
    "AttentionRun", "SegmentationJob", "OWN_FRAMEWORK_PAPER", "RESULTS_PATH", "TABLE_7_BOAT_MASKS",
    "resolve_voc_root", "check_voc_root", "attention_runs", "segmentation_runs", "plan_table",
    "train_attention", "train_segmentations", "boat_masks", "classification_scores", "environment",
    "evaluate_reproduction", "results_status", "table_1", "table_7", "save_results", "load_results",
    "main",
]

_REPOSITORY = Path(__file__).resolve().parents[1]

#: Where the book looks for the tables of a real paper-scale run (chapter 8 with ``-p profile
#: paper`` and ``python -m gainbook.reproduce --profile paper`` write them there; nothing else
#: creates the file).
RESULTS_PATH = _REPOSITORY / "book" / "reproduction" / "results.json"

#: The paper's own segmentation framework at its scale (Sec. 4.1, implementation details):
#: DeepLab initialised from ImageNet ResNet-101 (torchvision's DeepLabv3 stands in), 321 px,
#: batch 10, lr 5e-4 times 0.1 every 2,000 iterations, momentum 0.3, weight decay 5e-4, 20,000
#: iterations: 20,000 x 10 / 10,582 = 18.9 epochs, a step every 1.89 epochs. SEC's networks
#: keep ``segmentation_settings("paper")`` (DeepLab-LargeFOV, 8,000 iterations of 15).
OWN_FRAMEWORK_PAPER: dict[str, Any] = {"network": "deeplabv3", "weights": "IMAGENET1K_V1",
                                       "epochs": 19, "batch_size": 10, "lr": 5e-4, "momentum": 0.3,
                                       "weight_decay": 5e-4, "lr_step": 1.89}


@dataclass(frozen=True)
class AttentionRun:
    """One attention model of the plan.

    Attributes:
        method: ``"Grad-CAM"`` (the plain classifier), ``"GAIN"``, ``"GAIN_ext^b"`` or
            ``"GAIN_ext^p"``.
        spec: what :func:`~gainbook.runs.train_run` trains.
        paper_labels: the paper's number of images with extra labels this run stands for (of
            10,582; 0 for image labels only).
    """

    method: str
    spec: RunSpec
    paper_labels: int = 0

    @property
    def seed(self) -> int:
        return self.spec.train.seed

    @property
    def labels(self) -> int:
        """Images of this training set whose boxes or masks feed S_e."""
        return self.spec.pixel_labels + self.spec.box_labels

    @property
    def name(self) -> str:
        return f"{self.method} ({self.labels})" if self.paper_labels else self.method

    @property
    def table_7_method(self) -> str | None:
        """The row of Table 7 this run stands for, or None (boxes; counts Table 7 lacks)."""
        return _table_7_method(self.method, self.paper_labels)


def _table_7_method(method: str, paper_labels: int) -> str | None:
    if method == "GAIN_ext^p" and paper_labels in TABLE_7_BOAT_MASKS:
        return f"GAIN_ext^p, {TABLE_7_BOAT_MASKS[paper_labels]} boat masks"
    return {"Grad-CAM": "VGG (Grad-CAM)", "GAIN": "GAIN"}.get(method)


@dataclass(frozen=True)
class SegmentationJob:
    """One segmentation network of Table 1: an attention model's cues in a framework."""

    attention: AttentionRun
    spec: SegmentationSpec

    @property
    def method(self) -> str:
        """Table 1's name of the row: ``"SEC (baseline)"``, ``"GAIN-SEC"``, ``"GAIN"``, ..."""
        return _table_1_method(self.attention.method, self.spec.framework)

    @property
    def training_set(self) -> str:
        """Table 1's "training set": ``"10K weak"``, ``"10K W + 1.4K B"``, ``"10K W + 200 P"``."""
        return _training_set(self.attention.method, self.attention.paper_labels)


def _table_1_method(attention: str, framework: str) -> str:
    if framework == "sec":
        return "SEC (baseline)" if attention == "Grad-CAM" else f"{attention}-SEC"
    return attention


def _training_set(attention: str, paper_labels: int) -> str:
    if not paper_labels:
        return "10K weak"
    return f"10K W + {count_name(paper_labels)} {'B' if attention.endswith('b') else 'P'}"


def _table_1_rows(label_counts: Sequence[int]) -> list[tuple[str, str, int]]:
    """``(attention method, framework, paper labels)`` of the plan's segmentation networks, in
    Table 1's order (image labels only first; then boxes, then masks; SEC before Fig. 4)."""
    rows = [("Grad-CAM", "sec", 0), ("GAIN", "sec", 0), ("GAIN", "gain", 0)]
    return rows + [(f"GAIN_ext^{kind}", framework, n) for kind in "bp" for framework in ("sec", "gain")
                   for n in label_counts]


# --- the data -----------------------------------------------------------------------------------

def resolve_voc_root(voc_root: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """``voc_root`` as an absolute path, a relative one taken from ``base`` (default: the working
    folder). The path is part of every run's cache key, so the command line and chapter 8 must
    spell it the same way: the chapter takes a relative path from the repository root."""
    path = Path(voc_root).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else Path.cwd()) / path
    return str(path.resolve())


def check_voc_root(voc_root: str | os.PathLike) -> Path:
    """The ``VOC2012`` folder of a tree that ``data_scripts/get_voc.py`` prepared.

    Raises:
        DataFileError: the folder does not exist, or lacks a file or folder that the
            preparation writes (``train_aug.txt``, ``val.txt``, ``SegmentationClassAug/``);
            the message says how to prepare it.
    """
    root = Path(voc_root)
    how = f"prepare it with: python data_scripts/get_voc.py --root {root}"
    if not root.is_dir():
        raise DataFileError(root, f"the VOC folder does not exist; {how}")
    voc = root if (root / "JPEGImages").is_dir() else root / "VOCdevkit" / "VOC2012"
    seg = voc / "ImageSets" / "Segmentation"
    needed = [voc / "JPEGImages", seg / "train_aug.txt", seg / "val.txt", voc / "SegmentationClassAug"]
    missing = [str(p.relative_to(root)) for p in needed if not p.exists()]
    if missing:
        raise DataFileError(root, f"not a prepared VOC 2012 + SBD tree (missing {', '.join(missing)}); {how}")
    return voc


# --- the plan -----------------------------------------------------------------------------------

def attention_runs(settings: BookProfile, seed: int, label_counts: Sequence[int] = (1464,), *,
                   n_train: int | None = None) -> list[AttentionRun]:
    """The attention models of one seed (module notes), each fine-tuned from
    ``settings.classifier(seed)``, in the order Grad-CAM, GAIN, then GAIN_ext^b and GAIN_ext^p
    for each of the paper's ``label_counts``.

    Args:
        settings: the book profile, e.g. ``book_profile("paper", voc_root=...)``.
        label_counts: the paper's numbers of images with extra labels (of 10,582).
        n_train: the size of the training split (default: read from the data); the paper's
            counts are scaled to it with :func:`gainbook.paper.extra_label_count`.

    Raises:
        ValueError: a count scales to no image at all (too small a training set).
    """
    if n_train is None:
        n_train = len(load_split(settings.data, "train"))
    runs = [AttentionRun("Grad-CAM", settings.finetuned(seed, "classifier")),
            AttentionRun("GAIN", settings.finetuned(seed, "gain"))]
    for paper_count in label_counts:
        n = extra_label_count(paper_count, n_train)
        if n < 1:
            raise ValueError(f"{paper_count} of {VOC_TRAIN_IMAGES:,} images with extra labels scale to "
                             f"none of {n_train} training images: too small a training set for GAIN_ext")
        runs.append(AttentionRun("GAIN_ext^b", settings.finetuned(seed, "gain_ext", box_labels=n), paper_count))
        runs.append(AttentionRun("GAIN_ext^p", settings.finetuned(seed, "gain_ext", pixel_labels=n), paper_count))
    return runs


def segmentation_runs(settings: BookProfile, runs: Sequence[AttentionRun]) -> list[SegmentationJob]:
    """Table 1's networks for the attention models ``runs``: each one's cues in SEC and, but for
    Grad-CAM's (Table 1 has no such row), in the paper's framework (Fig. 4). Settings from
    :func:`gainbook.profiles.segmentation_settings` of ``settings.name``; at paper scale the paper's
    framework takes :data:`OWN_FRAMEWORK_PAPER`."""
    jobs = []
    for run in runs:
        for framework in ("sec", "gain"):
            if framework == "gain" and run.method == "Grad-CAM":
                continue
            overrides = OWN_FRAMEWORK_PAPER if framework == "gain" and settings.name == "paper" else {}
            spec = segmentation_spec(settings.name, run.spec.data, framework, run.spec, seed=run.seed,
                                     **overrides)
            jobs.append(SegmentationJob(run, spec))
    return jobs


def plan_table(settings: BookProfile, label_counts: Sequence[int] = (1464,), *,
               n_train: int | None = None) -> "Any":
    """The runs of one seed and their settings, read from their specs: a pandas DataFrame with
    one row per network to train (the classifier the others start from first); ``steps`` is
    epochs x batches per epoch on ``n_train`` images (default: read from the data)."""
    import pandas as pd

    runs = attention_runs(settings, settings.seeds[0], label_counts, n_train=n_train)
    n_train = n_train if n_train is not None else len(load_split(settings.data, "train"))

    def row(name: str, stage: str, mode: str, network: str, weights: str | None, epochs: int,
            batch: int, lr: float, labels: str) -> dict[str, Any]:
        return {"run": name, "stage": stage, "mode": mode, "network": network,
                "ImageNet init": weights is not None, "input (px)": settings.data.image_size,
                "epochs": epochs, "batch": batch, "lr": f"{lr:g}",
                "steps": epochs * math.ceil(n_train / batch), "extra labels": labels}

    rows = [row(name, "attention", s.train.mode, s.backbone, s.weights, s.train.epochs, s.train.batch_size,
                s.train.lr, f"{s.pixel_labels + s.box_labels:,} of {n_train:,}")
            for name, s in [("classifier (start of all)", runs[0].spec.init)] + [(r.name, r.spec) for r in runs]]
    rows += [row(f"{job.method}, {job.training_set}", "segmentation", job.spec.framework, job.spec.network,
                 job.spec.weights, job.spec.train.epochs, job.spec.train.batch_size, job.spec.train.lr,
                 f"cues of {job.attention.name}")
             for job in segmentation_runs(settings, runs)]
    return pd.DataFrame(rows).set_index("run")


# --- training -----------------------------------------------------------------------------------

Log = Callable[[str], None]


def _line(stage: str, index: int, total: int, name: str, seed: int, cached: bool, seconds: float) -> str:
    how = "loaded from the cache" if cached else "trained"
    return f"[{stage} {index}/{total}] {name}, seed {seed}: {how} in {seconds:,.1f} s"


def train_attention(settings: BookProfile, label_counts: Sequence[int] = (1464,), *,
                    cache_dir: str | os.PathLike | None = None, device: str = "auto",
                    progress: bool = False, log: Log | None = print
                    ) -> list[tuple[AttentionRun, TrainedRun]]:
    """Train (or load) :func:`attention_runs` for every seed of ``settings``; one ``log`` line a
    run. Works under ``torchrun`` (every rank calls this; see the module notes)."""
    runs = [run for seed in settings.seeds for run in attention_runs(settings, seed, label_counts)]
    done = []
    for index, run in enumerate(runs, 1):
        trained = train_run(run.spec, cache_dir, device=device, progress=progress)
        if log is not None:
            log(_line("attention", index, len(runs), run.name, run.seed, trained.cached, trained.seconds))
        done.append((run, trained))
    return done


def train_segmentations(settings: BookProfile, attention: Sequence[tuple[AttentionRun, TrainedRun]], *,
                        cache_dir: str | os.PathLike | None = None, device: str = "auto",
                        progress: bool = False, log: Log | None = print
                        ) -> list[tuple[SegmentationJob, SegmentationRun]]:
    """Train (or load) :func:`segmentation_runs` on the cues of the trained ``attention`` models
    (:func:`train_attention`'s result); one ``log`` line a network. Single-process."""
    jobs = segmentation_runs(settings, [run for run, _ in attention])
    done = []
    for index, job in enumerate(jobs, 1):
        network = train_segmentation(job.spec, cache_dir, device=device, progress=progress)
        if log is not None:
            log(_line("segmentation", index, len(jobs), f"{job.method}, cues of {job.attention.name}",
                      job.spec.seed, network.cached, network.seconds))
        done.append((job, network))
    return done


# --- evaluation and tables ----------------------------------------------------------------------

def boat_masks(spec: RunSpec) -> int:
    """How many of the images whose mask feeds S_e in ``spec`` show a boat (the paper's 9, 23
    and 78 of Table 7). The images are drawn as :func:`~gainbook.runs.train_run` draws them."""
    from gainlib.data import mark_extra_labels

    train = load_split(spec.data, "train")
    flagged = mark_extra_labels(copy.copy(train), pixel=spec.pixel_labels, boxes=spec.box_labels,
                                seed=spec.data.seed)
    boat = list(train.classes).index("boat")
    ids = [train.ids[i] for i in np.flatnonzero(flagged.use_mask)]
    return sum(int(boat in parse_annotation_xml(train.annotation_dir / f"{i}.xml", train.classes)[1])
               for i in ids)


def classification_scores(model: nn.Module, val: Dataset) -> dict[str, float]:
    """Table 7's "VOC val." column for one model: the accuracy of its boat decision (boat
    probability above one half, against the image labels) on VOC val, and the mAP of the 20
    classes beside it (the paper says "classification accuracy" without more). Fractions."""
    from gainbook.studies import class_scores
    from gainlib.trainer import evaluate

    logits, present = class_scores(model, val, list(val.classes).index("boat"))
    return {"boat accuracy": float(((logits > 0) == present).float().mean()),
            "mAP": evaluate(model, val, attention=False)["map"]}


def environment(device: str = "auto") -> dict[str, Any]:
    """What ran a reproduction: the device's name (``torch.cuda.get_device_name()`` on a GPU),
    the number of GPUs, torch's and gainlib's versions, and the peak GPU memory PyTorch
    allocated in this process (GiB; None on the CPU)."""
    from gainlib import __version__
    from gainlib.models import select_device

    target = select_device(device)
    cuda = target.type == "cuda"
    return {"device": torch.cuda.get_device_name(target) if cuda else f"{target.type} (no GPU)",
            "gpus": torch.cuda.device_count() if cuda else 0, "cpu cores": os.cpu_count(),
            "torch": torch.__version__, "gainlib": __version__,
            "peak GPU memory (GiB)": round(torch.cuda.max_memory_allocated(target) / 2 ** 30, 2) if cuda else None}


def _segmentation_records(segmentation: Sequence[tuple[SegmentationJob, SegmentationRun]], val: Dataset,
                          log: Log | None) -> list[dict[str, Any]]:
    """Table 1's records: each network's mIoU on ``val`` with the dense CRF and without it."""
    from gainlib.segmentation import predict_segmentation, segmentation_scores

    classes = list(val.classes)
    records = []
    for index, (job, network) in enumerate(segmentation, 1):
        started = time.perf_counter()
        refined, plain = (segmentation_scores(predict_segmentation(network.model, val, crf=crf), val, classes)["mIoU"]
                          for crf in (True, False))
        records.append({"method": job.method, "training set": job.training_set, "seed": job.spec.seed,
                        "val mIoU": refined, "val mIoU w/o CRF": plain})
        if log is not None:
            log(f"[evaluation {index}/{len(segmentation)}] {job.method}, {job.training_set}, seed "
                f"{job.spec.seed}: val mIoU {refined:.1%} ({plain:.1%} without the CRF) in "
                f"{time.perf_counter() - started:,.1f} s")
    return records


def _run_records(attention: Sequence[tuple[AttentionRun, TrainedRun]],
                 segmentation: Sequence[tuple[SegmentationJob, SegmentationRun]]) -> list[dict[str, Any]]:
    """One record a network: loaded from the cache or trained, in how many seconds (an attention
    model's training time read from its own history, too)."""
    return [{"stage": "attention", "run": run.name, "seed": run.seed, "cached": trained.cached,
             "seconds": trained.seconds,
             "training seconds (history)": sum(r.get("train_seconds", 0.0) for r in trained.history)}
            for run, trained in attention] + \
           [{"stage": "segmentation", "run": f"{job.method}, {job.training_set}", "seed": job.spec.seed,
             "cached": network.cached, "seconds": network.seconds}
            for job, network in segmentation]


def evaluate_reproduction(settings: BookProfile, attention: Sequence[tuple[AttentionRun, TrainedRun]],
                          segmentation: Sequence[tuple[SegmentationJob, SegmentationRun]], *,
                          device: str = "auto", training_seconds: float | None = None,
                          log: Log | None = print) -> dict[str, Any]:
    """Evaluate a trained reproduction on VOC val: the results a run leaves (JSON-able).

    Args:
        settings: the book profile the networks were trained with.
        attention: :func:`train_attention`'s result.
        segmentation: :func:`train_segmentations`'s result.
        device: as given to the training (:func:`environment` names it).
        training_seconds: the wall time of the training, if measured (None: not recorded).
        log: one line a segmentation network evaluated (None: quiet).

    Returns:
        ``{"profile", "smoke test", "written", "environment", "seeds", "label counts",
        "voc_root", "training seconds", "evaluation seconds", "wall seconds", "runs", "table_1",
        "table_7"}``: ``table_1`` holds :func:`table_1`'s records (each segmentation network's
        val mIoU with the dense CRF at test time, as DeepLab and the paper do, and without it),
        ``table_7`` :func:`table_7`'s (:func:`classification_scores` and :func:`boat_masks` of
        the attention models Table 7 has a row for), ``runs`` one record a network (cached or
        trained, seconds); scores are fractions. ``smoke test`` is true off the paper's profile.
    """
    started = time.perf_counter()
    val = load_split(settings.data, "val")
    table_1_records = _segmentation_records(segmentation, val, log)
    table_7_records = [{"method": run.table_7_method, "seed": run.seed,
                        **classification_scores(trained.model, val), "boat masks": boat_masks(run.spec)}
                       for run, trained in attention if run.table_7_method is not None]
    evaluation_seconds = time.perf_counter() - started
    return {
        "profile": settings.name,
        "smoke test": settings.name != "paper",
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
        "environment": environment(device),
        "seeds": list(settings.seeds),
        "label counts": list(dict.fromkeys(run.paper_labels for run, _ in attention if run.paper_labels)),
        "voc_root": settings.data.voc_root,
        "training seconds": training_seconds,
        "evaluation seconds": evaluation_seconds,
        "wall seconds": None if training_seconds is None else training_seconds + evaluation_seconds,
        "runs": _run_records(attention, segmentation),
        "table_1": table_1_records,
        "table_7": table_7_records,
    }


def results_status(results: dict[str, Any] | None) -> str:
    """One sentence on the ``results`` shown (:func:`load_results`'s, or None): none recorded
    yet, a smoke test's, or a measured run's (profile, seeds, device, date)."""
    if results is None:
        return ("This reproduction has not been run yet: no GPU was available to the authors of this book, "
                "so the tables of this page hold the paper's numbers only. The commands above run it and "
                "record the measured tables here.")
    if results["smoke test"]:
        return (f"SMOKE TEST (profile {results['profile']!r}, a tiny generated VOC tree): the numbers of "
                "ours are not results.")
    return (f"Measured: profile {results['profile']!r}, seeds {results['seeds']}, on "
            f"{results['environment']['device']}, written {results['written']}.")


def _paper_miou(method: str, training_set: str, paper_labels: int) -> tuple[float | None, float | None]:
    for row in TABLE_1_IMAGE_LEVEL + TABLE_1_EXTRA:
        if row["method"] == method and row["training set"] == training_set:
            return row["val mIoU"], row["test mIoU"]
    for row in TABLE_3 + TABLE_4:      # the other label counts: val only
        if row["method"] == method and row["extra labels"] == paper_labels:
            return row["val mIoU"], None
    return None, None


def _ours(records: Sequence[dict[str, Any]], metrics: list[str], key: list[str]) -> "Any":
    """Our ``metrics`` (mean ± std over seeds, in %) per row, the rows named by ``key``'s values
    joined with " | "; the columns prefixed "ours: "."""
    from gainbook.viz import results_table

    table = results_table([{**r, "row": " | ".join(str(r[k]) for k in key)} for r in records],
                          by="row", metrics=metrics, percent=metrics, digits=1)
    table.columns = [f"ours: {c}" for c in table.columns]
    return table


def table_1(records: Sequence[dict[str, Any]] | None = None, label_counts: Sequence[int] = (1464,)) -> "Any":
    """Table 1's rows of the plan: the paper's VOC 2012 val and test mIoU (%) and, given
    ``records`` (``{"method", "training set", "seed", "val mIoU", "val mIoU w/o CRF"}``,
    fractions), ours beside them as mean ± std over seeds. A pandas DataFrame."""
    import pandas as pd

    rows = []
    for attention, framework, paper_labels in _table_1_rows(label_counts):
        method, training_set = _table_1_method(attention, framework), _training_set(attention, paper_labels)
        val, test = _paper_miou(method, training_set, paper_labels)
        rows.append({"method": method, "training set": training_set,
                     "paper: val mIoU": val, "paper: test mIoU": test})
    table = pd.DataFrame(rows)
    if records:
        ours = _ours(records, ["val mIoU", "val mIoU w/o CRF"], ["method", "training set"])
        keys = [f"{m} | {t}" for m, t in zip(table["method"], table["training set"])]
        table = pd.concat([table, ours.reindex(keys).reset_index(drop=True)], axis=1)
    return dashed(table.set_index("method"))


def table_7(records: Sequence[dict[str, Any]] | None = None, label_counts: Sequence[int] = (1464,)) -> "Any":
    """Table 7's rows of the plan (VGG, GAIN, GAIN_ext^p with 200, 400 or 1,464 masks): the
    paper's accuracies (%) and, given ``records`` (``{"method", "seed", "boat accuracy", "mAP",
    "boat masks"}``, fractions, ``method`` as in the paper's table), ours on VOC val. The Biased
    Boat columns stay the paper's alone: its 100 photographs are not public."""
    import pandas as pd

    names = ["VGG (Grad-CAM)", "GAIN"] + [_table_7_method("GAIN_ext^p", n) for n in label_counts
                                          if _table_7_method("GAIN_ext^p", n) is not None]
    paper = {row["method"]: row for row in TABLE_7}
    table = pd.DataFrame([{"method": name, **{f"paper: {k}": v for k, v in paper[name].items() if k != "method"}}
                          for name in names])
    if records:
        ours = _ours(records, ["boat accuracy", "mAP"], ["method"])
        ours.columns = ["ours: VOC val, boat accuracy (%)", "ours: VOC val, mAP (%)", "ours: seeds"]
        masks = {r["method"]: r.get("boat masks") for r in records}
        table = pd.concat([table, ours.reindex(names).reset_index(drop=True)], axis=1)
        table["ours: boat masks"] = [masks.get(n) for n in names]
        table["ours: Biased Boat"] = "needs the 100 Biased Boat photographs"
    return dashed(table.set_index("method"))


def save_results(results: dict[str, Any], path: str | os.PathLike = RESULTS_PATH) -> Path:
    """Write a reproduction's ``results`` (JSON-able) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(results, indent=1, default=str))
    return path


def load_results(path: str | os.PathLike = RESULTS_PATH) -> dict[str, Any] | None:
    """The results a reproduction wrote at ``path``, or None when there are none."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


# --- command line -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gainbook.reproduce``: train the plan, then evaluate it and write the results
    (module notes); 0 on success."""
    parser = argparse.ArgumentParser(
        prog="python -m gainbook.reproduce",
        description="Train the attention models and segmentation networks of the paper-scale "
                    "reproduction (chapter 8), or load them from the cache; then evaluate them on "
                    "VOC val and write the results that chapter 8 shows.")
    parser.add_argument("--profile", choices=("paper", "ci"), default="paper",
                        help="'paper': VGG16 at 321 px on a GPU (default); 'ci': a tiny smoke test")
    parser.add_argument("--voc-root", required=True,
                        help="the folder data_scripts/get_voc.py prepared (e.g. data/voc)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the profile's")
    parser.add_argument("--device", default="auto", help="'cuda', 'cpu' or 'auto' (default)")
    parser.add_argument("--stage", choices=("attention", "segmentation", "all"), default="all",
                        help="'all' (default) trains everything, evaluates it and writes the results; "
                             "'attention' and 'segmentation' train only. 'attention' works under "
                             "torchrun; 'segmentation' and 'all' are single-process")
    parser.add_argument("--label-counts", type=int, nargs="+", default=[1464], metavar="N",
                        help="the paper's numbers of images with extra labels (default: 1464)")
    parser.add_argument("--cache-dir", default=None, help="default: $GAIN_BOOK_CACHE or _build/cache")
    parser.add_argument("--results-file", default=None,
                        help="where --stage all writes the results (default: book/reproduction/results.json "
                             "for the paper profile, ci-results.json in the model cache for ci)")
    args = parser.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and args.stage != "attention":
        parser.error(f"--stage {args.stage} is single-process (train_segmentation has no distributed "
                     "mode): launch it without torchrun, or use --stage attention under torchrun")
    voc_root = resolve_voc_root(args.voc_root)
    try:
        check_voc_root(voc_root)
    except DataFileError as error:
        parser.error(str(error))
    settings = book_profile(args.profile, dataset="voc", voc_root=voc_root, seeds=args.seeds)

    def log(line: str) -> None:
        if rank == 0:
            print(line, flush=True)

    if world > 1:
        if args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available()):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        log(f"{world} processes: batch {settings.batch_size} each, an effective batch of "
            f"{world * settings.batch_size} (the cache key does not record it)")
    log(f"profile {settings.name!r}: {settings.backbone} at {settings.data.image_size} px on {voc_root}, "
        f"seeds {list(settings.seeds)}, stage {args.stage}")
    started = time.perf_counter()
    # The segmentation stage needs the attention models too: loaded from the cache (or trained).
    attention = train_attention(settings, args.label_counts, cache_dir=args.cache_dir,
                                device=args.device, log=log)
    if args.stage != "attention":
        segmentation = train_segmentations(settings, attention, cache_dir=args.cache_dir, device=args.device,
                                           log=log)
    if args.stage == "all":
        results = evaluate_reproduction(settings, attention, segmentation, device=args.device,
                                        training_seconds=time.perf_counter() - started, log=log)
        default = RESULTS_PATH if settings.name == "paper" else cache_root(args.cache_dir) / "ci-results.json"
        log(f"results written to {save_results(results, args.results_file or default)}")
    log(f"done in {time.perf_counter() - started:,.0f} s")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
