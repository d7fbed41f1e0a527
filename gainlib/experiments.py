"""Trained models for the book's chapters: each run described once, trained once, reused.

A chapter holds no training loop. It describes the models it needs as :class:`RunSpec`\\ s and
calls :func:`train_run`. A spec fixes everything that determines the weights (data, backbone,
GAIN hyper-parameters, the trainer's settings, the seed, and the run it is fine-tuned from) and
names a folder of the cache, ``<cache>/<mode>-<hash>/``, keyed by the spec *and* by the gainlib
source that training runs through (attention, losses, streams, models, trainer, data). So

* chapters that need the same model train it once (chapter 1's classifier is chapter 2's
  baseline and the starting point of its GAIN runs);
* a chapter that needs many runs asks for them together (:func:`train_runs`), and the
  independent ones train side by side in worker processes (:mod:`gainlib.parallel`);
* an interrupted run resumes from its last finished epoch (the trainer's checkpoints);
* after a change to that code a run is trained again rather than loaded with weights the
  current code might not produce (a change to plotting or metrics keeps the cache).

The cache lives in ``$GAIN_BOOK_CACHE``, or ``_build/cache`` of the repository. The device is
not part of the key (it is a runtime choice), so a cache filled on a GPU is reused on the CPU.

:class:`BookProfile` holds the chapters' shared settings for each papermill profile (``ci``:
seconds, for the tests; ``default``: the published book, minutes on 2 CPU cores; ``paper``: VOC
at the paper's scale on a GPU) and builds the specs of the baseline classifier and of the
models fine-tuned from it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from gainlib.data.protocol import collate_samples
from gainlib.gain import GAIN, GainConfig
from gainlib.models import build_classifier, select_device
from gainlib.trainer import GainTrainer, Mode, TrainConfig

__all__ = [
    "DataSpec", "RunSpec", "TrainedRun", "BookProfile", "PROFILES", "book_profile",
    "ORIENTATION_PROFILES", "orientation_profile",
    "cache_root", "load_split", "build_model", "train_run", "train_runs", "fill_cache", "attention_by_region", "region_records", "mining_scores",
]

_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DataSpec:
    """Which data a run trains and is evaluated on.

    Attributes:
        dataset: ``"synthetic"`` (:class:`~gainlib.data.SyntheticScenes`, generated),
            ``"camera"`` or ``"workpiece"`` (:class:`~gainlib.data.SyntheticOrientation`,
            generated; Sec. 5.2-5.3) or ``"voc"`` (:class:`~gainlib.data.VOCDataset` under
            ``voc_root``).
        image_size: side of the (square) images.
        n_train, n_eval: images in the training split and in each evaluation split
            (generated data only; VOC uses its lists whole).
        context_bias: P(an object sits on its usual context) in the synthetic training and
            ``val`` splits (0.5: context tells nothing about the labels).
        shortcut_strength: orientation data only: P(the lighting follows the class) in the
            training domain (the training set's bias).
        seed: the data seed (fixed across model seeds: the benchmark is one data set).
        voc_root: the prepared VOC tree (``data_scripts/get_voc.py``).
    """

    dataset: Literal["synthetic", "camera", "workpiece", "voc"] = "synthetic"
    image_size: int = 64
    n_train: int = 2000
    n_eval: int = 300
    context_bias: float = 0.98
    shortcut_strength: float = 0.95
    seed: int = 0
    voc_root: str | None = None

    @property
    def num_classes(self) -> int:
        from gainlib.data import VOC_CLASSES
        from gainlib.data.render_orientation import ORIENTATION_CLASSES
        from gainlib.data.render_scenes import CLASSES

        if self.dataset in ORIENTATION_CLASSES:
            return len(ORIENTATION_CLASSES[self.dataset])
        return len(CLASSES if self.dataset == "synthetic" else VOC_CLASSES)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a trained model; its cache key.

    Attributes:
        data: the data.
        train: the trainer's settings (its runtime fields — device, checkpoint folder,
            progress — are not part of the key).
        gain: the GAIN streams' hyper-parameters.
        backbone: a preset of :mod:`gainlib.models`; ``widths`` are :class:`SmallCNN`'s.
        weights: initial backbone weights (``None``: random; ``"DEFAULT"``: ImageNet).
        init: fine-tune from the weights of this run (trained first if needed).
        pixel_labels, box_labels: how many training images may feed their mask / boxes to the
            S_e stream (:func:`gainlib.data.mark_extra_labels`, drawn with the data seed).
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (what the key hashes)."""
        return {
            "data": dataclasses.asdict(self.data),
            "train": self.train.run_settings(),
            "gain": dataclasses.asdict(self.gain),
            "backbone": self.backbone,
            "widths": list(self.widths) if self.widths is not None else None,
            "weights": self.weights,
            "init": self.init.to_dict() if self.init is not None else None,
            "pixel_labels": self.pixel_labels,
            "box_labels": self.box_labels,
        }

    def key(self) -> str:
        """``<mode>-<hash>``: the cache folder's name, from the spec and gainlib's source."""
        text = json.dumps(self.to_dict(), sort_keys=True) + _source_digest()
        return f"{self.train.mode}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def total_epochs(self) -> int:
        """Epochs of this run and of the runs it was fine-tuned from."""
        return self.train.epochs + (self.init.total_epochs() if self.init is not None else 0)


@dataclass
class TrainedRun:
    """A trained model (in eval mode) with the history of its last training stage."""

    spec: RunSpec
    model: GAIN
    history: list[dict[str, Any]]
    path: Path
    cached: bool
    seconds: float


# The source that decides what weights a spec trains to: a change here retrains; a change to
# plotting, metrics or other modules does not.
_TRAINING_SOURCES = ("attention.py", "gain.py", "losses.py", "masking.py", "models.py",
                     "trainer.py", "experiments.py", "data")


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """Hash of the gainlib source that training depends on (:data:`_TRAINING_SOURCES`)."""
    digest = hashlib.sha256()
    for name in _TRAINING_SOURCES:
        path = _PACKAGE / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(_PACKAGE)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$GAIN_BOOK_CACHE``, else ``<repository>/_build/cache``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("GAIN_BOOK_CACHE"):
        return Path(os.environ["GAIN_BOOK_CACHE"])
    return _PACKAGE.parent / "_build" / "cache"


@functools.lru_cache(maxsize=16)
def load_split(data: DataSpec, split: str) -> Dataset:
    """A split of ``data`` (cached in memory: generating or indexing it once per process).

    Synthetic splits are those of :data:`gainlib.data.SCENE_SPLITS` (``camera`` and
    ``workpiece``: :data:`gainlib.data.ORIENTATION_SPLITS`); for VOC, ``"train"``
    is ``train_aug`` and ``"val"`` the segmentation ``val`` list. The returned dataset is
    shared: copy it before changing its extra-label flags (:func:`train_run` does).
    """
    if data.dataset == "synthetic":
        from gainlib.data import SyntheticScenes

        n = data.n_train if split == "train" else data.n_eval
        return SyntheticScenes(split, n, image_size=data.image_size, seed=data.seed,
                               context_bias=data.context_bias)
    if data.dataset in ("camera", "workpiece"):
        from gainlib.data import SyntheticOrientation

        # Validation during training (history only, no model selection) uses the training
        # domain's test set; the camera study's boxes become masks, as the paper's do (Sec. 5.2).
        split = "test_same" if split == "val" else split
        n = data.n_train if split == "train" else data.n_eval
        return SyntheticOrientation(split, n, variant=data.dataset, image_size=data.image_size,
                                    seed=data.seed, shortcut_strength=data.shortcut_strength,
                                    mask_from_box=data.dataset == "camera")
    if data.dataset == "voc":
        from gainlib.data import VOCDataset, spectral_residual_saliency, voc_transforms

        if data.voc_root is None:
            raise ValueError("dataset 'voc' needs voc_root: the folder prepared by "
                             "data_scripts/get_voc.py")
        names = {"train": "train_aug", "val": "val"}
        if split not in names:
            raise KeyError(f"VOC has the splits {sorted(names)}, not {split!r} (the counterfactual "
                           "splits exist only in the synthetic benchmark)")
        return VOCDataset(data.voc_root, names[split], saliency=spectral_residual_saliency,
                          transforms=voc_transforms(train=split == "train", size=data.image_size))
    raise ValueError(f"dataset must be 'synthetic', 'camera', 'workpiece' or 'voc', got {data.dataset!r}")


def build_model(spec: RunSpec) -> GAIN:
    """The untrained GAIN network of ``spec`` (seeded with the run's seed)."""
    torch.manual_seed(spec.train.seed)
    kwargs = {"widths": spec.widths} if spec.backbone == "small_cnn" and spec.widths else {}
    classifier, layer = build_classifier(spec.backbone, spec.data.num_classes, weights=spec.weights,
                                         **kwargs)
    return GAIN(classifier, layer, spec.gain)


def _training_set(spec: RunSpec) -> Dataset:
    dataset = load_split(spec.data, "train")
    if not (spec.pixel_labels or spec.box_labels):
        return dataset
    from gainlib.data import mark_extra_labels

    flagged = copy.copy(dataset)   # the flags are replaced, not edited: the shared split stays clean
    return mark_extra_labels(flagged, pixel=spec.pixel_labels, boxes=spec.box_labels,
                             seed=spec.data.seed)


def train_run(spec: RunSpec, cache_dir: str | os.PathLike | None = None, *,
              device: str = "auto", progress: bool = False) -> TrainedRun:
    """Train the model of ``spec``, or load it from the cache; returned in eval mode.

    A run fine-tuned from ``spec.init`` trains that run first when it is not cached. Training
    writes the trainer's per-epoch checkpoint into the run's folder, so an interrupted run
    resumes from its last finished epoch; the finished model is ``model.pt`` there.
    """
    folder = cache_root(cache_dir) / spec.key()
    final = folder / "model.pt"
    started = time.perf_counter()
    model = build_model(spec)
    if final.exists():
        state = torch.load(final, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        model.to(select_device(device)).eval()
        return TrainedRun(spec, model, state["history"], folder, True,
                          time.perf_counter() - started)
    if spec.init is not None:
        base = train_run(spec.init, cache_dir, device=device, progress=progress)
        model.load_state_dict(base.model.state_dict())
    folder.mkdir(parents=True, exist_ok=True)
    # Under torchrun every rank trains the same weights; rank 0 alone writes them (the process
    # group is joined inside fit(), so the rank is read from torchrun's environment).
    writer = int(os.environ.get("RANK", "0")) == 0
    if writer:
        (folder / "spec.json").write_text(json.dumps(spec.to_dict(), indent=1))
    config = replace(spec.train, device=device, checkpoint_dir=str(folder), progress=progress)
    history = GainTrainer(model, config).fit(_training_set(spec), load_split(spec.data, "val"))
    if writer:
        tmp = final.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "history": history, "spec": spec.to_dict()}, tmp)
        os.replace(tmp, final)
        (folder / "last.pt").unlink(missing_ok=True)    # the optimizer state is no longer needed
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()   # model.pt exists for every rank before any goes on
    model.eval()
    return TrainedRun(spec, model, history, folder, False, time.perf_counter() - started)


def _train_job(job: tuple[RunSpec, str, str]) -> None:
    spec, cache_dir, device = job
    train_run(spec, cache_dir, device=device)


def fill_cache(specs: Sequence[RunSpec], cache_dir: str | os.PathLike | None = None, *,
               device: str = "cpu", workers: int | None = None,
               progress: bool = True) -> dict[str, float]:
    """Train every run of ``specs`` that is not cached (and the runs they are fine-tuned from),
    independent runs side by side in ``workers`` processes (:mod:`gainlib.parallel`; default:
    :func:`~gainlib.parallel.default_workers`). Returns the seconds each trained run took, by key.
    """
    from gainlib.parallel import default_workers, run_in_processes

    root = cache_root(cache_dir)
    todo: dict[str, RunSpec] = {}    # each run after the run it is fine-tuned from

    def add(spec: RunSpec) -> None:
        if spec.key() in todo or (root / spec.key() / "model.pt").exists():
            return
        if spec.init is not None:
            add(spec.init)
        todo[spec.key()] = spec

    for spec in specs:
        add(spec)
    if workers is None:
        workers = default_workers(select_device(device).type)
    keys = list(todo)
    after = [[keys.index(s.init.key())] if s.init is not None and s.init.key() in todo else []
             for s in todo.values()]
    results = run_in_processes(_train_job, [(s, str(root), device) for s in todo.values()],
                               workers=workers, after=after, progress=progress,
                               describe=lambda job: f"run {job[0].key()}",
                               desc=f"training {len(todo)} runs")
    return {k: run_seconds for k, (_, run_seconds) in zip(keys, results)}


def train_runs(specs: Sequence[RunSpec], cache_dir: str | os.PathLike | None = None, *,
               device: str = "cpu", workers: int | None = None,
               progress: bool = True) -> list[TrainedRun]:
    """:func:`train_run` for every spec, in order; the runs not cached are trained first by
    :func:`fill_cache`, independent ones side by side in ``workers`` processes. A run trained
    now reports ``cached=False`` and the seconds its training took."""
    seconds = fill_cache(specs, cache_dir, device=device, workers=workers, progress=progress)
    runs = []
    for spec in specs:
        run = train_run(spec, cache_dir, device=device)
        if spec.key() in seconds:
            run = replace(run, cached=False, seconds=seconds[spec.key()])
        runs.append(run)
    return runs


@dataclass(frozen=True)
class BookProfile:
    """The settings the chapters share for one papermill profile.

    The baseline is a plain classifier trained from scratch (or from ImageNet weights) for
    ``classifier_epochs``. GAIN is fine-tuned from it for ``finetune_epochs`` at
    ``finetune_lr`` — as the paper starts GAIN from a trained network and the public
    implementations pre-train the classifier — and so is a "classifier, continued" run with
    the same epochs, so that GAIN is compared with a classifier that trained as long.
    """

    name: str
    data: DataSpec
    seeds: tuple[int, ...]
    backbone: str = "small_cnn"
    widths: tuple[int, ...] | None = (32, 64, 128)
    weights: str | None = None
    classifier_epochs: int = 12
    classifier_lr: float = 0.02
    finetune_epochs: int = 5
    finetune_lr: float = 0.002
    batch_size: int = 32
    grad_clip: float | None = None

    def _train(self, mode: Mode, epochs: int, lr: float, seed: int) -> TrainConfig:
        # Validation only measures classification (the chapters measure attention themselves,
        # and Grad-CAM on the whole split costs ~10 %), and only after the last epoch: the
        # history's val mAP is a record, not a model selection, and validating after every
        # epoch cost another ~10 % of a fine-tuning run on 2 cores.
        return TrainConfig(mode=mode, epochs=epochs, lr=lr, batch_size=self.batch_size,
                           lr_schedule="cosine", grad_clip=self.grad_clip, seed=seed,
                           eval_attention=False, eval_every=epochs)

    def classifier(self, seed: int) -> RunSpec:
        """The plain classifier (the Grad-CAM baseline of chapter 1)."""
        return RunSpec(self.data, self._train("classifier", self.classifier_epochs,
                                              self.classifier_lr, seed),
                       backbone=self.backbone, widths=self.widths, weights=self.weights)

    def finetuned(self, seed: int, mode: Mode, *, pixel_labels: int = 0, box_labels: int = 0,
                  **gain: Any) -> RunSpec:
        """``mode`` (``"classifier"``, ``"gain"``, ``"gain_ext"``) fine-tuned from
        :meth:`classifier`; ``gain`` overrides :class:`GainConfig` fields."""
        base = self.classifier(seed)
        return replace(base, train=self._train(mode, self.finetune_epochs, self.finetune_lr, seed),
                       gain=GainConfig(**gain), init=base, pixel_labels=pixel_labels,
                       box_labels=box_labels)


PROFILES: dict[str, BookProfile] = {
    # Seconds per chapter: only checks that every cell runs (nothing here is a result).
    "ci": BookProfile("ci", DataSpec(image_size=32, n_train=96, n_eval=48), seeds=(0,),
                      widths=(8, 16), classifier_epochs=2, finetune_epochs=1),
    # The published book: the whole book in minutes on 2 CPU cores. 48 px and a 2-block CNN:
    # its Grad-CAM map is 24 x 24, fine enough to tell an object's part from its body (a
    # 3-block CNN's 12 x 12 map covered both alike at this size).
    "default": BookProfile("default", DataSpec(image_size=48, n_train=1000, n_eval=250),
                           seeds=(0, 1, 2), widths=(16, 32), classifier_epochs=12,
                           finetune_epochs=6),
    # The paper's network and data (Sec. 4.1): VGG16 from ImageNet on VOC 2012 + SBD at 321 px,
    # GAIN fine-tuned with SGD at lr 1e-5; needs a GPU and voc_root, the folder that
    # data_scripts/get_voc.py prepared.
    "paper": BookProfile("paper", DataSpec("voc", image_size=321),
                         seeds=(0, 1, 2), backbone="vgg16", widths=None, weights="DEFAULT",
                         classifier_epochs=10, classifier_lr=1e-3, finetune_epochs=35,
                         finetune_lr=1e-5, batch_size=16),
}

# The orientation studies of Sec. 5.2 (camera, 2 classes) and 5.3 (workpiece, 4 classes) on
# generated data, per book profile. The paper's camera set has 700 training images and two
# test sets of 100; its workpiece set 6,118 training and 2,059 test images (the ``paper``
# profile uses those sizes, and the paper's VGG16 and DenseNet-121 from ImageNet).
ORIENTATION_PROFILES: dict[str, dict[str, BookProfile]] = {
    "ci": {
        "camera": BookProfile("ci", DataSpec("camera", image_size=32, n_train=64, n_eval=32),
                              seeds=(0,), widths=(8, 16), classifier_epochs=2, finetune_epochs=1),
        "workpiece": BookProfile("ci", DataSpec("workpiece", image_size=32, n_train=64, n_eval=32),
                                 seeds=(0,), backbone="densenet_small", widths=None,
                                 classifier_epochs=2, finetune_epochs=1),
    },
    "default": {
        "camera": BookProfile("default", DataSpec("camera", image_size=64, n_train=700, n_eval=100),
                              seeds=(0, 1, 2), widths=(16, 32, 64), classifier_epochs=12,
                              finetune_epochs=4),
        "workpiece": BookProfile("default", DataSpec("workpiece", image_size=64, n_train=1000,
                                                     n_eval=300),
                                 seeds=(0, 1, 2), backbone="densenet_small", widths=None,
                                 classifier_epochs=10, finetune_epochs=4),
    },
    "paper": {
        "camera": BookProfile("paper", DataSpec("camera", image_size=224, n_train=700, n_eval=100),
                              seeds=(0, 1, 2), backbone="vgg16", widths=None, weights="DEFAULT",
                              classifier_epochs=10, classifier_lr=1e-3, finetune_epochs=35,
                              finetune_lr=1e-5, batch_size=16),
        "workpiece": BookProfile("paper", DataSpec("workpiece", image_size=224, n_train=6118,
                                                   n_eval=2059),
                                 seeds=(0, 1, 2), backbone="densenet121", widths=None,
                                 weights="DEFAULT", classifier_epochs=10, classifier_lr=1e-3,
                                 finetune_epochs=35, finetune_lr=1e-5, batch_size=16),
    },
}


def orientation_profile(study: Literal["camera", "workpiece"], name: str,
                        **overrides: Any) -> BookProfile:
    """The :class:`BookProfile` of an orientation study for the book profile ``name``, with
    ``overrides`` as in :func:`book_profile`."""
    if name not in ORIENTATION_PROFILES:
        raise KeyError(f"unknown profile {name!r}; choose from {sorted(ORIENTATION_PROFILES)}")
    if study not in ORIENTATION_PROFILES[name]:
        raise KeyError(f"unknown study {study!r}; choose 'camera' or 'workpiece'")
    return _with_overrides(ORIENTATION_PROFILES[name][study], overrides)


def book_profile(name: str, **overrides: Any) -> BookProfile:
    """The profile ``name`` with ``overrides`` (``None`` values are ignored): fields of
    :class:`BookProfile` or of its :class:`DataSpec` (``dataset``, ``image_size``, ...)."""
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
    return _with_overrides(PROFILES[name], overrides)


def _with_overrides(profile: BookProfile, overrides: dict[str, Any]) -> BookProfile:
    given = {k: v for k, v in overrides.items() if v is not None}
    data_fields = {f.name for f in dataclasses.fields(DataSpec)}
    profile_fields = {f.name for f in dataclasses.fields(BookProfile)}
    unknown = sorted(set(given) - data_fields - profile_fields)
    if unknown:
        raise TypeError(f"unknown profile settings {unknown}")
    data = replace(profile.data, **{k: v for k, v in given.items() if k in data_fields})
    rest = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items()
            if k in profile_fields}
    return replace(profile, data=data, **rest)


REGIONS = ("part", "body", "context", "elsewhere")


def _regions(scenes: Any, index: int, cls: int) -> dict[str, np.ndarray]:
    obj = scenes.masks[index] == cls + 1
    part = obj & scenes.part_masks[index]
    context = (scenes.context_maps[index] == cls + 1) & ~obj
    return {"object": obj, "part": part, "body": obj & ~part, "context": context,
            "elsewhere": ~obj & ~context}


def attention_by_region(model: GAIN, scenes: Any, threshold: float = 0.5,
                        indices: Sequence[int] | None = None, batch_size: int = 64) -> "Any":
    """Where a model's attention falls on synthetic scenes, one row per (image, true class).

    For the map ``A^c`` of each ground-truth class, thresholded at ``threshold`` (relative to
    its peak): the fraction of the object's discriminative ``part`` covered, of the rest of
    its ``body``, of its usual ``context`` patches, and of everything ``elsewhere``; and the
    ``iou`` and ``coverage`` of the thresholded map against the object's mask. NaN where the
    region is empty (e.g. no context patch).

    Args:
        model: a GAIN model; scenes: a :class:`~gainlib.data.SyntheticScenes` split.

    Returns:
        A pandas DataFrame with columns ``image, class, part, body, context, elsewhere, iou,
        coverage``.
    """
    import pandas as pd

    indices = list(range(len(scenes))) if indices is None else list(indices)
    rows = []
    device = next(model.parameters()).device
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        batch = collate_samples([scenes[i] for i in chunk])
        out = model.attention(batch["image"].to(device), labels=batch["labels"].to(device))
        above: Tensor = (out.maps > threshold).cpu()
        for j, index in enumerate(chunk):
            for k in range(out.classes.shape[1]):
                if not out.valid[j, k]:
                    continue
                cls = int(out.classes[j, k])
                hit = above[j, k].numpy()
                regions = _regions(scenes, index, cls)
                row = {"image": index, "class": scenes.classes[cls]}
                for name in REGIONS:
                    region = regions[name]
                    row[name] = float(hit[region].mean()) if region.any() else float("nan")
                obj = regions["object"]
                row["iou"] = float((hit & obj).sum() / max((hit | obj).sum(), 1))
                row["coverage"] = float(hit[obj].mean()) if obj.any() else float("nan")
                rows.append(row)
    return pd.DataFrame(rows, columns=["image", "class", *REGIONS, "iou", "coverage"])


def region_records(models: dict[str, dict[int, GAIN]], data: DataSpec, splits: Sequence[str],
                   threshold: float = 0.5) -> list[dict[str, Any]]:
    """:func:`attention_by_region` of several methods and seeds, averaged over each split.

    Args:
        models: ``{method name: {seed: model}}``.
        data: the synthetic data of the runs; ``splits``: which of its splits to measure.

    Returns:
        One record per (method, split, seed): ``{"method": "<method>, <split>", "seed": ...,
        "part", "body", "context", "elsewhere", "iou"}`` — the input of
        :func:`gainlib.viz.results_table`.
    """
    records = []
    for name, by_seed in models.items():
        for split in splits:
            scenes = load_split(data, split)
            for seed, model in by_seed.items():
                means = attention_by_region(model, scenes, threshold)[[*REGIONS, "iou"]].mean()
                records.append({"method": f"{name}, {split}", "seed": seed, **means.to_dict()})
    return records


def mining_scores(model: GAIN, dataset: Dataset, batch_size: int = 64) -> dict[str, float]:
    """What attention mining sees on ``dataset``: the mean, over (image, true class) pairs, of
    the class probability ``s^c(I)`` of the image, of ``s^c(I*^c)`` of the image erased with
    the model's own soft mask (Eq. 3-4, the model's sigma and omega), and of the erased
    fraction ``mean T(A^c)``; ``survives`` is the fraction of pairs whose erased image still
    scores above 0.5 (evidence the map missed)."""
    from gainlib.masking import masked_image, soft_mask

    device = next(model.parameters()).device
    config = model.config
    sums = {"s(I)": 0.0, "s(I*)": 0.0, "erased": 0.0, "survives": 0.0}
    count = 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            batch = collate_samples([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
            images, labels = batch["image"].to(device), batch["labels"].to(device)
            out = model.attention(images, labels=labels)
            if not out.valid.any():
                continue
            mask = soft_mask(out.maps, config.sigma, config.omega)
            with torch.no_grad():
                masked = torch.sigmoid(model(masked_image(images, mask)[out.valid]))
            classes = out.classes[out.valid]
            after = masked.gather(1, classes[:, None])[:, 0]
            before = torch.sigmoid(out.logits).gather(1, out.classes)[out.valid]
            sums["s(I)"] += before.sum().item()
            sums["s(I*)"] += after.sum().item()
            sums["erased"] += mask[out.valid].mean(dim=(-2, -1)).sum().item()
            sums["survives"] += (after > 0.5).sum().item()
            count += int(out.valid.sum())
    finally:
        model.train(was_training)
    return {k: v / max(count, 1) for k, v in sums.items()}
