"""Attention runs: the classifiers and GAIN models the chapters train, as cached runs.

A chapter holds no training loop. It describes the models it needs as :class:`RunSpec`\\ s (or
asks a profile, :mod:`gainbook.profiles`, for them) and calls :func:`train_runs`; the run cache
(:mod:`gainbook.cache`) trains each once, side by side when independent, and reuses it:

* chapters that need the same model train it once (chapter 1's classifier is chapter 2's
  baseline and the starting point of its GAIN runs);
* an interrupted run resumes from its last finished epoch (the trainer's checkpoints);
* after a change to code its training imports, a run is trained again.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from gainbook.cache import (CachedRun, Trained, cache_root, code_digest, fill, load_or_train,
                            refuse_symlinks, train_all, write_atomic)
from gainlib.gain import GAIN, GainConfig
from gainlib.models import build_classifier
from gainlib.trainer import GainTrainer, TrainConfig
from gainlib.validation import check_choice, check_int, check_real

__all__ = ["DataSpec", "RunSpec", "TrainedRun", "load_split", "training_set", "build_model",
           "train_run", "train_runs", "fill_cache"]

#: A trained attention run (:class:`gainbook.cache.Trained` of a :class:`RunSpec`).
TrainedRun = Trained

#: The data a :class:`DataSpec` can name.
DATASETS = ("synthetic", "camera", "workpiece", "decoy", "context", "voc")
#: The VOC lists behind :func:`load_split`'s ``"train"`` and ``"val"``.
VOC_SPLITS = {"train": "train_aug", "val": "val"}


@dataclass(frozen=True)
class DataSpec:
    """Which data a run trains and is evaluated on.

    Attributes:
        dataset: ``"synthetic"`` (:class:`~gainlib.data.SyntheticScenes`, generated),
            ``"camera"`` or ``"workpiece"`` (:class:`~gainlib.data.SyntheticOrientation`,
            generated; Sec. 5.2-5.3), ``"decoy"`` (:class:`~gainlib.data.DecoyShapes`, the
            positive control), ``"context"`` (:class:`~gainlib.data.ContextScenes`, one
            scenario of the bias family, ``design`` a :class:`~gainlib.data.BiasScenario`) or
            ``"voc"`` (:class:`~gainlib.data.VOCDataset` under
            ``voc_root``).
        image_size: side of the (square) images.
        n_train, n_eval: images in the training split and in each evaluation split
            (generated data only; VOC uses its lists whole).
        context_bias: P(an object sits on its usual context) in the synthetic training and
            ``val`` splits (0.5: context tells nothing about the labels).
        shortcut_strength: orientation data: P(the lighting follows the class) in the
            training domain (the training set's bias; 0: always from a random direction);
            ``"decoy"``
            (:class:`~gainlib.data.DecoyShapes`, the positive control): P(the corner patch has
            the class's colour) in ``train`` and ``val`` (1 / 4 = the patch tells nothing: the
            oracle's data).
        seed: the data seed (fixed across model seeds: the benchmark is one data set).
        train_draw: which draw of the training images (and of the images whose masks or
            boxes feed S_e) a run trains on; ``0`` is the data seed's own (VOC: its training
            images are fixed, only the labelled subset is redrawn). The evaluation
            splits do not change with it, so runs of several draws are scored on the same
            held-out images (:meth:`gainbook.profiles.BookProfile.draw_of`).
        voc_root: the prepared VOC tree (``data_scripts/get_voc.py``), a string or a path;
            stored as one absolute path (``~`` expanded, resolved), so that two spellings of
            a folder are one key. A run's key also covers the files of the tree
            (:meth:`run_settings`).
        design: synthetic scenes: their layout and palettes, a name in
            :data:`gainlib.data.render_scenes.SCENE_DESIGNS` (``"v1"``, ``"v2"``, ``"v3"``) or a
            :class:`~gainlib.data.render_scenes.SceneDesign`; orientation data: how far the
            shifted domain moves the object, a name in
            :data:`gainlib.data.render_orientation.ORIENTATION_DESIGNS` or an
            :class:`~gainlib.data.render_orientation.OrientationDesign`.
    """

    dataset: Literal["synthetic", "camera", "workpiece", "decoy", "context", "voc"] = "synthetic"
    image_size: int = 64
    n_train: int = 2000
    n_eval: int = 300
    context_bias: float = 0.98
    shortcut_strength: float = 0.95
    seed: int = 0
    voc_root: str | None = None
    design: Any = "v1"      # str | SceneDesign | OrientationDesign (imported lazily)
    train_draw: int = 0

    def __post_init__(self) -> None:
        # Every field here, naming it, rather than where a bad value first breaks (deep in
        # rendering or the JSON encoder); numpy scalars become plain numbers for the key.
        check_choice(self, "dataset", DATASETS)
        for name in ("image_size", "n_train", "n_eval"):
            check_int(self, name, 1)
        for name in ("seed", "train_draw"):
            check_int(self, name, 0)
        for name in ("context_bias", "shortcut_strength"):
            check_real(self, name, 0.0, maximum=1.0)
        if self.dataset == "context":
            from gainlib.data import BiasScenario

            if not isinstance(self.design, BiasScenario):
                raise TypeError("DataSpec(dataset='context') needs design=BiasScenario(...), got "
                                f"{self.design!r}")
        if self.voc_root is not None:
            if not isinstance(self.voc_root, (str, os.PathLike)):
                raise TypeError(f"DataSpec.voc_root must be a path or None, got {self.voc_root!r}")
            object.__setattr__(self, "voc_root", str(Path(self.voc_root).expanduser().resolve()))

    def run_settings(self) -> dict[str, Any]:
        """What a run's key hashes of its data (:mod:`gainbook.cache`): the fields, and for VOC
        a fingerprint of the lists and files its splits read
        (:func:`gainlib.data.voc.files_fingerprint`), so that a tree replaced under the same
        ``voc_root`` trains again rather than serving the old tree's model."""
        settings = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.dataset == "voc" and self.voc_root is not None:
            from gainlib.data.voc import files_fingerprint

            settings["files"] = files_fingerprint(self.voc_root, tuple(VOC_SPLITS.values()))
        return settings

    def split_seed(self, split: str) -> int:
        """The seed that generates ``split``: the data seed, or for the training split of
        another draw a seed derived from both (a new set of images)."""
        if split != "train" or self.train_draw == 0:
            return self.seed
        return int(np.random.SeedSequence([self.seed, self.train_draw]).generate_state(1)[0])

    @property
    def num_classes(self) -> int:
        from gainlib.data import VOC_CLASSES
        from gainlib.data.render_orientation import ORIENTATION_CLASSES
        from gainlib.data.render_scenes import CLASSES

        if self.dataset == "context":
            return len(CLASSES) if self.design.multi_label else 1
        if self.dataset in ORIENTATION_CLASSES:
            return len(ORIENTATION_CLASSES[self.dataset])
        return len(CLASSES if self.dataset in ("synthetic", "decoy") else VOC_CLASSES)


@dataclass(frozen=True)
class RunSpec(CachedRun):
    """Everything that determines a trained attention model; its cache key.

    Attributes:
        data: the data.
        train: the trainer's settings (its runtime fields — device, checkpoint folder,
            progress — are not part of the key).
        gain: the GAIN streams' hyper-parameters.
        backbone: a preset of :mod:`gainlib.models`; ``widths`` are :class:`SmallCNN`'s.
        weights: initial backbone weights (``None``: random; ``"DEFAULT"``: ImageNet).
        init: fine-tune from the weights of this run (trained first if needed).
        pixel_labels, box_labels: how many training images may feed their mask / boxes to the
            S_e stream (:func:`gainlib.data.mark_extra_labels`, drawn with the training
            split's seed).
    """

    data: DataSpec
    train: TrainConfig
    gain: GainConfig = field(default_factory=GainConfig)
    backbone: str = "small_cnn"
    widths: tuple[int, ...] | None = (32, 64, 128)
    weights: str | None = None
    init: "RunSpec | None" = None
    pixel_labels: int = 0
    box_labels: int = 0

    prefix: ClassVar[str] = "attention"

    def name_prefix(self) -> str:
        return self.train.mode

    def dependencies(self) -> list[CachedRun]:
        return [self.init] if self.init is not None else []

    def cost(self) -> float:
        # Pixels seen; an attention step (S_cl, Grad-CAM and S_am) costs the book's runs about
        # 3.7 classifier steps.
        seen = self.train.epochs * self.data.n_train * self.data.image_size ** 2
        return seen * (1.0 if self.train.mode == "classifier" else 3.7)

    def total_epochs(self) -> int:
        """Epochs of this run and of the runs it was fine-tuned from."""
        return self.train.epochs + (self.init.total_epochs() if self.init is not None else 0)

    def build(self) -> GAIN:
        return build_model(self)

    def fit(self, model: GAIN, folder: Path, *, device: str, progress: bool,
            cache_dir: Path) -> list[dict[str, Any]]:
        if self.init is not None:
            model.load_state_dict(load_or_train(self.init, cache_dir, device=device).model.state_dict())
        config = replace(self.train, device=device, checkpoint_dir=str(folder), progress=progress)
        return GainTrainer(model, config).fit(training_set(self), load_split(self.data, "val"))


#: The datasets :func:`load_split` renders, with their gainlib.data class (whose module's code
#: their pixels come from).
_RENDERED = {"synthetic": "SyntheticScenes", "camera": "SyntheticOrientation",
             "workpiece": "SyntheticOrientation", "decoy": "DecoyShapes",
             "context": "ContextScenes"}
_SPLIT_CACHE_VERSION = 1


def _split_file(data: DataSpec, split: str) -> Path:
    """Where the rendered ``split`` of ``data`` is kept: ``<cache>/splits/``, under a hash of
    the data's settings, the split, the split's own seed and the code that renders it."""
    # What the pixels depend on; not the draw or the data seed as such (a split's own seed
    # stands for both), so that the evaluation splits of every draw share one file.
    settings = {f.name: getattr(data, f.name) for f in fields(data)
                if f.name not in ("seed", "train_draw", "n_train", "n_eval", "voc_root")}
    if is_dataclass(data.design):
        settings["design"] = asdict(data.design)
    key = json.dumps({"data": settings, "split": split, "seed": data.split_seed(split),
                      "n": _split_size(data, split), "code": code_digest(_dataset_class(data).__module__),
                      "version": _SPLIT_CACHE_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_root(None) / "splits" / f"{data.dataset}-{split}-{digest}.npz"


def _split_size(data: DataSpec, split: str) -> int:
    return data.n_train if split in ("train", "unbiased") else data.n_eval


@functools.lru_cache(maxsize=16)
def load_split(data: DataSpec, split: str) -> Dataset:
    """A split of ``data`` (cached in memory: generating or indexing it once per process).

    Synthetic splits are those of :data:`gainlib.data.SCENE_SPLITS` (``camera`` and
    ``workpiece``: :data:`gainlib.data.ORIENTATION_SPLITS`); for VOC, ``"train"``
    is ``train_aug`` and ``"val"`` the segmentation ``val`` list. The returned dataset is
    shared: copy it before changing its extra-label flags (:func:`train_run` does).

    A rendered split is also kept on disk, beside the run cache (:func:`_split_file`): the
    chapters' kernels and the worker processes that train their runs render each split once
    per build instead of once per process. A file that does not load is rendered again.
    """
    if data.dataset not in _RENDERED:
        return _build_split(data, split)
    path = _split_file(data, split)
    refuse_symlinks(path.parent, path)
    if path.exists():
        try:
            return _dataset_class(data).load_arrays(path)
        except ValueError as error:
            warnings.warn(f"rendering {split!r} again: {error}", stacklevel=2)
    dataset = _build_split(data, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, dataset.save_arrays)
    return dataset


def _dataset_class(data: DataSpec) -> type:
    import gainlib.data

    return getattr(gainlib.data, _RENDERED[data.dataset])


def _build_split(data: DataSpec, split: str) -> Dataset:
    """Render (or index) ``split`` of ``data``: :func:`load_split` without its caches."""
    if data.dataset == "synthetic":
        from gainlib.data import SyntheticScenes

        n = data.n_train if split == "train" else data.n_eval
        return SyntheticScenes(split, n, image_size=data.image_size,
                               seed=data.split_seed(split),
                               context_bias=data.context_bias, design=data.design)
    if data.dataset in ("camera", "workpiece"):
        from gainlib.data import SyntheticOrientation

        # Validation during training (history only, no model selection) uses the training
        # domain's test set; the camera study's boxes become masks, as the paper's do (Sec. 5.2).
        split = "test_same" if split == "val" else split
        n = data.n_train if split == "train" else data.n_eval
        return SyntheticOrientation(split, n, variant=data.dataset, image_size=data.image_size,
                                    seed=data.split_seed(split),
                                    shortcut_strength=data.shortcut_strength,
                                    mask_from_box=data.dataset == "camera", design=data.design)
    if data.dataset == "decoy":
        from gainlib.data import DecoyShapes

        n = data.n_train if split == "train" else data.n_eval
        return DecoyShapes(split, n, image_size=data.image_size,
                           seed=data.split_seed(split),
                           shortcut_strength=data.shortcut_strength)
    if data.dataset == "context":
        from gainlib.data import ContextScenes

        n = data.n_train if split in ("train", "unbiased") else data.n_eval
        return ContextScenes(split, n, scenario=data.design, image_size=data.image_size,
                             seed=data.split_seed(split))
    if data.dataset == "voc":
        from gainlib.data import VOCDataset, spectral_residual_saliency, voc_transforms

        if data.voc_root is None:
            raise ValueError("dataset 'voc' needs voc_root: the folder prepared by "
                             "data_scripts/get_voc.py")
        if split not in VOC_SPLITS:
            raise KeyError(f"VOC has the splits {sorted(VOC_SPLITS)}, not {split!r} (the "
                           "counterfactual splits exist only in the synthetic benchmark)")
        return VOCDataset(data.voc_root, VOC_SPLITS[split], saliency=spectral_residual_saliency,
                          transforms=voc_transforms(train=split == "train", size=data.image_size))
    raise ValueError("dataset must be 'synthetic', 'camera', 'workpiece', 'decoy', 'context' or 'voc', "
                     f"got {data.dataset!r}")


def build_model(spec: RunSpec) -> GAIN:
    """The untrained GAIN network of ``spec`` (seeded with the run's seed)."""
    torch.manual_seed(spec.train.seed)
    small = spec.backbone in ("small_cnn", "small_cnn_fc")
    kwargs = {"widths": spec.widths} if small and spec.widths else {}
    classifier, layer = build_classifier(spec.backbone, spec.data.num_classes, weights=spec.weights,
                                         **kwargs)
    return GAIN(classifier, layer, spec.gain)


def training_set(spec: RunSpec) -> Dataset:
    """The training split of ``spec`` with its S_e flags (a copy: the shared split stays clean)."""
    dataset = load_split(spec.data, "train")
    if not (spec.pixel_labels or spec.box_labels):
        return dataset
    from gainlib.data import mark_extra_labels

    flagged = copy.copy(dataset)   # the flags are replaced, not edited: the shared split stays clean
    return mark_extra_labels(flagged, pixel=spec.pixel_labels, boxes=spec.box_labels,
                             seed=spec.data.split_seed("train"))


def train_run(spec: RunSpec, cache_dir: str | os.PathLike | None = None, *,
              device: str = "auto", progress: bool = False) -> TrainedRun:
    """The model of ``spec``, from the cache or trained now (:func:`gainbook.cache.load_or_train`)."""
    return load_or_train(spec, cache_dir, device=device, progress=progress)


def train_runs(specs: Sequence[RunSpec], cache_dir: str | os.PathLike | None = None, *,
               device: str = "cpu", workers: int | None = None,
               progress: bool = True) -> list[TrainedRun]:
    """Every run of ``specs``, in order; those not cached train first, side by side
    (:func:`gainbook.cache.train_all`)."""
    return train_all(specs, cache_dir, device=device, workers=workers, progress=progress)


def fill_cache(specs: Sequence[RunSpec], cache_dir: str | os.PathLike | None = None, *,
               device: str = "cpu", workers: int | None = None,
               progress: bool = True) -> dict[str, float]:
    """Train the runs of ``specs`` that are not cached (:func:`gainbook.cache.fill`)."""
    return fill(specs, cache_dir, device=device, workers=workers, progress=progress)
