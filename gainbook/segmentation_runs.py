"""Segmentation networks trained on attention cues, as cached runs: the experiments of the
paper's Sec. 4 (chapters 4 and 7).

The losses, cue rules, CRF and networks are gainlib's (:mod:`gainlib.segmentation`); this module
describes each network as a :class:`SegmentationSpec` of the run cache (:mod:`gainbook.cache`)
in one of three frameworks:

- ``"gain"``: the paper's own framework (Fig. 4), ``L_w-s = L_cl + L_seg`` (Eq. 11-12);
- ``"sec"``: SEC's ``L_seed + L_expand + L_constrain`` (Kolesnikov & Lampert 2016), the
  framework of the paper's "-SEC" rows;
- ``"supervised"``: pixel-wise cross entropy on the ground-truth masks — the upper bound, the
  only framework that sees a mask.

No ground-truth mask reaches the ``"gain"`` and ``"sec"`` networks: they learn from the cues of
an attention model (itself trained on image labels, plus the few masks or boxes of GAIN_ext)
and from image labels. :func:`segmentation_reports` scores many networks side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import torch
from torch import nn

from gainbook.cache import CachedRun, Trained, cache_root, load_or_train, train_all
from gainbook.profiles import segmentation_settings
from gainbook.runs import DataSpec, RunSpec, load_split
from gainlib.models import select_device
from gainlib.segmentation import (
    BG_THRESHOLD,
    FG_THRESHOLD,
    DeepLabLargeFOV,
    SegmentationConfig,
    SegmentationLoss,
    SegmentationTrainer,
    SmallFCN,
    attention_cues,
    deeplabv3_resnet101,
    output_size,
    predict_segmentation,
    segmentation_scores,
)

__all__ = ["Framework", "SegmentationSpec", "SegmentationRun", "segmentation_spec",
           "build_segmentation_network", "train_segmentation", "train_segmentations",
           "segmentation_reports"]

#: The frameworks, :class:`~gainlib.segmentation.training.SegmentationConfig`'s losses.
Framework = SegmentationLoss

#: A trained segmentation network (:class:`gainbook.cache.Trained` of a
#: :class:`SegmentationSpec`; the network is its ``model``).
SegmentationRun = Trained


@dataclass(frozen=True)
class SegmentationSpec(CachedRun):
    """Everything that determines a trained segmentation network; its cache key.

    Attributes:
        data: the data (its ``train`` split trains, its ``val`` split evaluates).
        train: the trainer's settings (:class:`~gainlib.segmentation.training.SegmentationConfig`;
            its runtime fields — device, checkpoint folder, progress — are not part of the key):
            ``loss`` is the framework, ``"gain"`` (Eq. 11-12), ``"sec"`` or ``"supervised"``
            (module notes); SGD with ``epochs``, ``batch_size``, ``lr``, ``momentum``,
            ``weight_decay``, the learning rate falling by 10 after each ``lr_step`` of the
            epochs (SEC: every 2,000 of 8,000 iterations) or following a cosine when ``lr_step``
            is ``None``; ``seed`` seeds the initialisation and the batch order.
        cues_from: the attention model whose cues train the network (``None`` for
            ``"supervised"``).
        network: ``"small_fcn"`` (CPU), ``"largefov"`` (DeepLab-LargeFOV VGG16, SEC's) or
            ``"deeplabv3"`` (ResNet-101, the paper's own framework).
        weights: ImageNet weights of the network's backbone (``None``: random).
        widths: :class:`~gainlib.segmentation.networks.SmallFCN`'s channels.
        fg_threshold, bg_threshold: the cue rule
            (:func:`~gainlib.segmentation.cues.localization_cues`).
    """

    data: DataSpec
    train: SegmentationConfig
    cues_from: RunSpec | None = None
    network: Literal["small_fcn", "largefov", "deeplabv3"] = "small_fcn"
    weights: str | None = None
    widths: tuple[int, int, int] = (16, 32, 64)
    fg_threshold: float = FG_THRESHOLD
    bg_threshold: float = BG_THRESHOLD

    def __post_init__(self) -> None:
        if not isinstance(self.train, SegmentationConfig):
            raise TypeError(f"train must be a SegmentationConfig, got {type(self.train).__name__}")
        if (self.framework == "supervised") != (self.cues_from is None):
            raise ValueError("the 'supervised' framework trains on masks and takes no cues_from; "
                             "'gain' and 'sec' need cues_from, the attention model of the cues")

    prefix: ClassVar[str] = "seg"

    @property
    def framework(self) -> Framework:
        """The loss the network trains with (``train.loss``)."""
        return self.train.loss

    @property
    def seed(self) -> int:
        """The seed of the initialisation and the batch order (``train.seed``)."""
        return self.train.seed

    def name_prefix(self) -> str:
        return f"seg-{self.framework}"

    def dependencies(self) -> list[CachedRun]:
        return [self.cues_from] if self.cues_from is not None else []

    def cost(self) -> float:
        # Pixels seen, in the units of RunSpec.cost: an epoch costs about three classifier epochs.
        return 3.0 * self.train.epochs * self.data.n_train * self.data.image_size ** 2

    def build(self) -> nn.Module:
        return build_segmentation_network(self)

    def fit(self, model: nn.Module, folder: Path, *, device: str, progress: bool,
            cache_dir: Path) -> list[dict[str, Any]]:
        return _fit(self, model, device=device, progress=progress, folder=folder,
                    cache_dir=cache_dir)


#: The settings of :class:`SegmentationSpec` a profile or override may give besides the trainer's.
_SPEC_SETTINGS = ("network", "weights", "widths", "fg_threshold", "bg_threshold")


def segmentation_spec(profile: str, data: DataSpec, framework: Framework,
                      cues_from: RunSpec | None = None, seed: int = 0,
                      **overrides: Any) -> SegmentationSpec:
    """The :class:`SegmentationSpec` of a book profile (:mod:`gainbook.profiles`).

    The profile's settings and ``overrides`` (``None`` values ignored) are one flat mapping:
    the fields of :class:`~gainlib.segmentation.training.SegmentationConfig` that define a run
    (``epochs``, ``lr``, ``lr_step``...) go to :attr:`SegmentationSpec.train`, ``network``,
    ``weights``, ``widths`` and the cue thresholds to the spec; any other name is a
    ``TypeError``."""
    settings = {**segmentation_settings(profile),
                **{k: v for k, v in overrides.items() if v is not None}}
    trainer = set(SegmentationConfig().run_settings()) - {"loss", "seed"}
    unknown = sorted(set(settings) - trainer - set(_SPEC_SETTINGS))
    if unknown:
        raise TypeError(f"unknown segmentation settings {unknown}")
    train = SegmentationConfig(loss=framework, seed=seed,
                               **{k: v for k, v in settings.items() if k in trainer})
    return SegmentationSpec(data, train, cues_from,
                            **{k: v for k, v in settings.items() if k in _SPEC_SETTINGS})


def build_segmentation_network(spec: SegmentationSpec) -> nn.Module:
    """The untrained network of ``spec`` (logits at its output stride, not upsampled)."""
    torch.manual_seed(spec.seed)
    channels = spec.data.num_classes + 1
    if spec.network == "small_fcn":
        return SmallFCN(channels, spec.widths, upsample=False)
    if spec.network == "largefov":
        return DeepLabLargeFOV(channels, weights=spec.weights)
    if spec.network == "deeplabv3":
        # DeepLabv3 upsamples to the input inside torchvision's model; losses then run there.
        return deeplabv3_resnet101(channels, weights_backbone=spec.weights)
    raise ValueError(f"network must be 'small_fcn', 'largefov' or 'deeplabv3', got {spec.network!r}")


def _fit(spec: SegmentationSpec, network: nn.Module, *, device: str, progress: bool,
         folder: Path, cache_dir: Path) -> list[dict[str, Any]]:
    """Train ``network`` with gainlib's :class:`~gainlib.segmentation.training.SegmentationTrainer`
    (checkpoints in the run's folder, exact resume, the non-finite guard). Cues are computed
    once, before training, from the cached attention model ``spec.cues_from``."""
    train = load_split(spec.data, "train")
    cues = None
    if spec.framework != "supervised":
        cue_model = load_or_train(spec.cues_from, cache_dir, device=device).model
        size = output_size(network, (spec.data.image_size, spec.data.image_size))
        cues = attention_cues(cue_model, train, size, spec.fg_threshold, spec.bg_threshold,
                              progress=progress)
    config = replace(spec.train, device=device, checkpoint_dir=str(folder), progress=progress)
    # The val mIoU after every epoch is the learning curve chapter 4 checks for settling.
    history = SegmentationTrainer(network, config).fit(train, load_split(spec.data, "val"),
                                                       cues=cues)
    network.eval()
    return history


def train_segmentation(spec: SegmentationSpec, cache_dir: str | os.PathLike | None = None, *,
                       device: str = "cpu", progress: bool = False) -> SegmentationRun:
    """The network of ``spec``, from the cache or trained now; in eval mode."""
    return load_or_train(spec, cache_dir, device=device, progress=progress)


def train_segmentations(specs: Sequence[SegmentationSpec],
                        cache_dir: str | os.PathLike | None = None, *, device: str = "cpu",
                        workers: int | None = None, progress: bool = True) -> list[SegmentationRun]:
    """Every network of ``specs``, in order. The attention models of the cues are trained (or
    found) first; then the networks not cached train side by side
    (:func:`gainbook.cache.train_all`). A network trained now reports ``cached=False``."""
    return train_all(specs, cache_dir, device=device, workers=workers, progress=progress)


def _report_job(job: tuple[SegmentationSpec, str, str, str]) -> dict[str, dict[str, float]]:
    spec, cache_dir, device, split = job
    network = train_segmentation(spec, cache_dir, device=device).model
    dataset = load_split(spec.data, split)
    names = list(dataset.classes)
    return {"plain": segmentation_scores(predict_segmentation(network, dataset), dataset, names),
            "crf": segmentation_scores(predict_segmentation(network, dataset, crf=True), dataset, names)}


def segmentation_reports(specs: Sequence[SegmentationSpec], split: str = "val",
                         cache_dir: str | os.PathLike | None = None, *, device: str = "cpu",
                         workers: int | None = None,
                         progress: bool = True) -> list[dict[str, dict[str, float]]]:
    """:func:`segmentation_scores` of every spec's network on ``split``, without (``"plain"``)
    and with (``"crf"``) the dense CRF, in order; networks side by side in ``workers`` processes
    (the CRF runs one image at a time on one core). Networks not cached are trained first."""
    from gainbook.pool import default_workers, run_in_processes

    if workers is None:
        workers = default_workers(select_device(device).type)
    root = str(cache_root(cache_dir))
    results = run_in_processes(_report_job, [(s, root, device, split) for s in specs],
                               workers=workers, progress=progress,
                               describe=lambda job: f"network {job[0].key()}",
                               desc=f"scoring {len(specs)} segmentation networks")
    return [report for report, _ in results]
