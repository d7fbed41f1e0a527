"""Weakly supervised semantic segmentation on attention cues: the experiments of the paper's Sec. 4.

The losses, cue rules, CRF and networks are in :mod:`gainlib.segmentation`; this module trains
and evaluates segmentation networks with them, as chapter 4 needs:

* :func:`attention_cues` — the localization cues of a trained attention model over a whole
  dataset (foreground > 20 % of each map's maximum; background where the dataset's saliency
  prior, the one ``L_bbox`` uses, is below 0.1 and no foreground cue claims the pixel).
* :class:`SegmentationSpec` and :func:`train_segmentation` — one network trained in one of three
  frameworks, cached like :func:`gainlib.experiments.train_run`:

  - ``"gain"``: the paper's own framework (Fig. 4), ``L_w-s = L_cl + L_seg`` (Eq. 11-12);
  - ``"sec"``: SEC's ``L_seed + L_expand + L_constrain`` (Kolesnikov & Lampert 2016), the
    framework of the paper's "-SEC" rows;
  - ``"supervised"``: pixel-wise cross entropy on the ground-truth masks — the upper bound,
    the only framework that sees a mask.

  No ground-truth mask reaches the ``"gain"`` and ``"sec"`` networks: they learn from the cues
  of an attention model (itself trained on image labels, plus the few masks or boxes of
  GAIN_ext) and from image labels.
* :func:`predict_segmentation` (with or without the dense CRF) and :func:`segmentation_scores`
  (IoU per class and mIoU, the layout of the paper's Table 2).

Cache: ``<cache>/seg-<framework>-<hash>/model.pt``, keyed by the spec (which includes the cue
model's own key, hence the training code of the attention model) and by the source of this
module, :mod:`gainlib.segmentation` and :mod:`gainlib.losses`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from gainlib.data.protocol import IGNORE_INDEX, collate_samples
from gainlib.experiments import DataSpec, RunSpec, cache_root, load_split, train_run
from gainlib.losses import weakly_supervised_segmentation_loss
from gainlib.metrics import ConfusionMatrix
from gainlib.models import select_device
from gainlib.segmentation import (
    BG_THRESHOLD,
    FG_THRESHOLD,
    SEC_CRF_SCALE,
    DeepLabLargeFOV,
    SmallFCN,
    crf_refine,
    deeplabv3_resnet101,
    localization_cues,
    sec_loss,
)

__all__ = [
    "Framework",
    "SegmentationSpec",
    "SegmentationRun",
    "SEGMENTATION_PROFILES",
    "segmentation_spec",
    "attention_cues",
    "build_segmentation_network",
    "train_segmentation",
    "train_segmentations",
    "segmentation_reports",
    "predict_segmentation",
    "segmentation_scores",
    "cue_quality",
    "cue_size",
]

Framework = Literal["gain", "sec", "supervised"]
_FRAMEWORKS = ("gain", "sec", "supervised")
_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SegmentationSpec:
    """Everything that determines a trained segmentation network; its cache key.

    Attributes:
        data: the data (its ``train`` split trains, its ``val`` split evaluates).
        framework: ``"gain"`` (Eq. 11-12), ``"sec"`` or ``"supervised"`` (module notes).
        cues_from: the attention model whose cues train the network (``None`` for
            ``"supervised"``).
        network: ``"small_fcn"`` (CPU), ``"largefov"`` (DeepLab-LargeFOV VGG16, SEC's) or
            ``"deeplabv3"`` (ResNet-101, the paper's own framework).
        weights: ImageNet weights of the network's backbone (``None``: random).
        widths: :class:`~gainlib.segmentation.SmallFCN`'s channels.
        epochs, batch_size, lr, momentum, weight_decay: SGD; the learning rate falls by 10
            after each ``lr_step`` of the epochs (SEC: every 2,000 of 8,000 iterations), or
            follows a cosine when ``lr_step`` is ``None``.
        fg_threshold, bg_threshold: the cue rule (:func:`gainlib.segmentation.localization_cues`).
        seed: seeds the initialisation and the batch order.
    """

    data: DataSpec
    framework: Framework
    cues_from: RunSpec | None = None
    network: Literal["small_fcn", "largefov", "deeplabv3"] = "small_fcn"
    weights: str | None = None
    widths: tuple[int, int, int] = (16, 32, 64)
    epochs: int = 6
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_step: float | None = None
    fg_threshold: float = FG_THRESHOLD
    bg_threshold: float = BG_THRESHOLD
    seed: int = 0

    def __post_init__(self) -> None:
        if self.framework not in _FRAMEWORKS:
            raise ValueError(f"framework must be one of {_FRAMEWORKS}, got {self.framework!r}")
        if (self.framework == "supervised") != (self.cues_from is None):
            raise ValueError("the 'supervised' framework trains on masks and takes no cues_from; "
                             "'gain' and 'sec' need cues_from, the attention model of the cues")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (what the key hashes)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["data"] = dataclasses.asdict(self.data)
        fields["cues_from"] = None if self.cues_from is None else self.cues_from.key()
        fields["widths"] = list(self.widths)
        return fields

    def key(self) -> str:
        """``seg-<framework>-<hash>``: the cache folder's name."""
        text = json.dumps(self.to_dict(), sort_keys=True) + _source_digest()
        return f"seg-{self.framework}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass
class SegmentationRun:
    """A trained segmentation network (eval mode) and its per-epoch history."""

    spec: SegmentationSpec
    network: nn.Module
    history: list[dict[str, float]]
    path: Path
    cached: bool
    seconds: float


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    digest = hashlib.sha256()
    for name in ("wsss.py", "segmentation.py", "losses.py"):
        digest.update((_PACKAGE / name).read_bytes())
    return digest.hexdigest()


#: Per-profile settings of the segmentation networks (the fields of :class:`SegmentationSpec`
#: other than data, framework, cues and seed). ``paper``: SEC's settings of the paper's Sec. 4.1
#: — DeepLab-LargeFOV from ImageNet VGG16, 321x321 inputs, batch 15, lr 1e-3 divided by 10
#: every 2,000 of 8,000 iterations (8,000 x 15 / 10,582 images = 11.3 epochs, a step every
#: 2.8 epochs).
SEGMENTATION_PROFILES: dict[str, dict[str, Any]] = {
    "ci": {"widths": (8, 8, 16), "epochs": 1, "batch_size": 32, "lr": 0.05},
    "default": {"widths": (16, 32, 64), "epochs": 6, "batch_size": 32, "lr": 0.05},
    "paper": {"network": "largefov", "weights": "IMAGENET1K_V1", "epochs": 11, "batch_size": 15,
              "lr": 1e-3, "lr_step": 2.8},
}


def segmentation_spec(profile: str, data: DataSpec, framework: Framework,
                      cues_from: RunSpec | None = None, seed: int = 0,
                      **overrides: Any) -> SegmentationSpec:
    """The :class:`SegmentationSpec` of a book profile (:data:`SEGMENTATION_PROFILES`)."""
    if profile not in SEGMENTATION_PROFILES:
        raise KeyError(f"unknown profile {profile!r}; choose from {sorted(SEGMENTATION_PROFILES)}")
    settings = {**SEGMENTATION_PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
    return SegmentationSpec(data, framework, cues_from, seed=seed, **settings)


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


def _batches(dataset: Dataset, batch_size: int, order: Sequence[int] | None = None):
    order = list(range(len(dataset))) if order is None else list(order)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        yield chunk, collate_samples([dataset[i] for i in chunk])


@torch.no_grad()
def attention_cues(model: nn.Module, dataset: Dataset, size: tuple[int, int],
                   fg_threshold: float = FG_THRESHOLD, bg_threshold: float = BG_THRESHOLD,
                   batch_size: int = 64, progress: bool = False) -> Tensor:
    """Localization cues of ``model`` on every sample of ``dataset`` (paper Sec. 4).

    Foreground: the Grad-CAM ``A^c`` of each ground-truth class above ``fg_threshold`` of its
    maximum. Background: the sample's ``saliency`` (the prior of ``L_bbox``, Eq. 9) below
    ``bg_threshold`` where no foreground cue is; a dataset without saliency falls back to the
    attention itself (:func:`gainlib.segmentation.localization_cues`).

    Returns:
        ``bool [N, C + 1, h, w]`` at ``size`` (the segmentation network's output size), CPU.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    cues = []
    try:
        for _, batch in tqdm(_batches(dataset, batch_size), total=math.ceil(len(dataset) / batch_size),
                             desc="cues", disable=not progress, leave=False):
            with torch.enable_grad():   # Grad-CAM needs the gradient of the scores
                out = model.attention(batch["image"].to(device), labels=batch["labels"].to(device))
            saliency = batch.get("saliency")
            cues.append(localization_cues(
                out.maps.detach(), out.classes, out.valid, batch["labels"].shape[1],
                None if saliency is None else saliency.to(device), fg_threshold, bg_threshold,
                size).cpu())
    finally:
        model.train(was_training)
    return torch.cat(cues)


def cue_size(spec: SegmentationSpec) -> tuple[int, int]:
    """The output size of ``spec``'s network on its images: where its cues and losses live."""
    side = spec.data.image_size
    return _output_size(build_segmentation_network(spec), (side, side))


def _output_size(network: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    with torch.no_grad():
        was_training = network.training
        network.eval()
        probe = next(network.parameters())
        shape = network(torch.zeros(1, 3, *image_size, device=probe.device)).shape[-2:]
        network.train(was_training)
    return tuple(shape)


def _sec_refiner(output_size: tuple[int, int]):
    # SEC divides the CRF's spatial deviations by 12 on its 41x41 output; at another output size
    # the same relative extent needs 12 * 41 / h.
    scale = SEC_CRF_SCALE * 41 / output_size[0]
    return functools.partial(crf_refine, scale_factor=scale, mean=None, std=None)


def _loss(spec: SegmentationSpec, logits: Tensor, batch: dict[str, Any], cues: Tensor | None,
          refine: Any) -> Tensor:
    if spec.framework == "supervised":
        target = batch["mask"].to(logits.device)
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    labels = batch["labels"].to(logits.device)
    if spec.framework == "gain":
        return weakly_supervised_segmentation_loss(logits, cues, labels)              # Eq. 12
    return sec_loss(logits, cues, labels, batch["image"], refine=refine).total


def _learning_rate(spec: SegmentationSpec, epoch: float) -> float:
    if spec.lr_step is not None:
        return spec.lr * 0.1 ** math.floor(epoch / spec.lr_step)
    return 0.5 * spec.lr * (1 + math.cos(math.pi * epoch / spec.epochs))


def train_segmentation(spec: SegmentationSpec, cache_dir: str | os.PathLike | None = None, *,
                       device: str = "cpu", progress: bool = False,
                       cue_model: nn.Module | None = None) -> SegmentationRun:
    """Train the network of ``spec``, or load it from the cache; returned in eval mode.

    A plain loop: SGD with momentum, the learning rate of ``spec`` set before every step, the
    batches in a seeded order. Cues are computed once, before training, from ``cue_model`` or
    else from ``train_run(spec.cues_from)`` (loaded from its cache, trained if missing).

    Raises:
        RuntimeError: when the loss becomes NaN or infinite (nothing is written).
    """
    folder = cache_root(cache_dir) / spec.key()
    final = folder / "model.pt"
    started = time.perf_counter()
    target = select_device(device)
    network = build_segmentation_network(spec).to(target)
    if final.exists():
        state = torch.load(final, map_location=target, weights_only=False)
        network.load_state_dict(state["network"])
        return SegmentationRun(spec, network.eval(), state["history"], folder, True,
                               time.perf_counter() - started)
    train = load_split(spec.data, "train")
    cues = None
    refine = None
    if spec.framework != "supervised":
        if cue_model is None:
            cue_model = train_run(spec.cues_from, cache_dir, device=device).model
        size = _output_size(network, (spec.data.image_size, spec.data.image_size))
        cues = attention_cues(cue_model, train, size, spec.fg_threshold, spec.bg_threshold,
                              progress=progress)
        refine = _sec_refiner(size)
    generator = torch.Generator().manual_seed(spec.seed)
    # NHWC weights and images: ~20 % faster per step on the CPU, and what tensor cores prefer.
    network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(network.parameters(), lr=spec.lr, momentum=spec.momentum,
                                weight_decay=spec.weight_decay)
    steps = math.ceil(len(train) / spec.batch_size)
    history = []
    network.train()
    for epoch in range(spec.epochs):
        order = torch.randperm(len(train), generator=generator).tolist()
        total, count = 0.0, 0
        bar = tqdm(_batches(train, spec.batch_size, order), total=steps, disable=not progress,
                   desc=f"{spec.framework} epoch {epoch + 1}/{spec.epochs}", leave=False)
        for step, (chunk, batch) in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(spec, epoch + step / steps)
            logits = network(batch["image"].to(target).contiguous(memory_format=torch.channels_last))
            batch_cues = None if cues is None else cues[chunk].to(target)
            loss = _loss(spec, logits, batch, batch_cues, refine)
            if not torch.isfinite(loss):
                raise RuntimeError(f"{spec.framework} segmentation loss is {loss.item()} at epoch "
                                   f"{epoch + 1}, step {step + 1}; lower lr ({spec.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(chunk)
            count += len(chunk)
        history.append({"epoch": epoch + 1, "loss": total / count})
    network.eval()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(json.dumps(spec.to_dict(), indent=1))
    tmp = final.with_suffix(".tmp")
    torch.save({"network": network.state_dict(), "history": history, "spec": spec.to_dict()}, tmp)
    os.replace(tmp, final)
    return SegmentationRun(spec, network, history, folder, False, time.perf_counter() - started)


def _train_segmentation_job(job: tuple[SegmentationSpec, str, str]) -> None:
    spec, cache_dir, device = job
    train_segmentation(spec, cache_dir, device=device)


def train_segmentations(specs: Sequence[SegmentationSpec], cache_dir: str | os.PathLike | None = None,
                        *, device: str = "cpu", workers: int | None = None,
                        progress: bool = True) -> list[SegmentationRun]:
    """:func:`train_segmentation` for every spec, in order. The attention models of the cues
    are trained (or found) first; then the networks not cached train side by side in
    ``workers`` processes (:mod:`gainlib.parallel`), each computing its cues from the cached
    attention model. A network trained now reports ``cached=False`` and its training's seconds."""
    from gainlib.experiments import fill_cache
    from gainlib.parallel import default_workers, run_in_processes

    if workers is None:
        workers = default_workers(select_device(device).type)
    fill_cache([s.cues_from for s in specs if s.cues_from is not None], cache_dir, device=device,
               workers=workers, progress=progress)
    root = cache_root(cache_dir)
    todo = {s.key(): s for s in specs if not (root / s.key() / "model.pt").exists()}
    results = run_in_processes(_train_segmentation_job, [(s, str(root), device) for s in todo.values()],
                               workers=workers, progress=progress,
                               describe=lambda job: f"network {job[0].key()}",
                               desc=f"training {len(todo)} segmentation networks")
    seconds = {k: run_seconds for k, (_, run_seconds) in zip(todo, results)}
    runs = []
    for spec in specs:
        run = train_segmentation(spec, cache_dir, device=device)
        if spec.key() in seconds:
            run = dataclasses.replace(run, cached=False, seconds=seconds[spec.key()])
        runs.append(run)
    return runs


def _report_job(job: tuple[SegmentationSpec, str, str, str]) -> dict[str, dict[str, float]]:
    spec, cache_dir, device, split = job
    network = train_segmentation(spec, cache_dir, device=device).network
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
    from gainlib.parallel import default_workers, run_in_processes

    if workers is None:
        workers = default_workers(select_device(device).type)
    root = str(cache_root(cache_dir))
    results = run_in_processes(_report_job, [(s, root, device, split) for s in specs],
                               workers=workers, progress=progress,
                               describe=lambda job: f"network {job[0].key()}",
                               desc=f"scoring {len(specs)} segmentation networks")
    return [report for report, _ in results]


@torch.no_grad()
def predict_segmentation(network: nn.Module, dataset: Dataset, crf: bool = False,
                         batch_size: int = 64, crf_scale: float | None = None) -> Tensor:
    """Label maps ``int64 [N, H, W]`` of ``network`` on ``dataset`` at the images' size.

    The logits are upsampled bilinearly to the image; with ``crf`` the softmax is refined by
    the dense CRF first (:func:`gainlib.segmentation.crf_refine`). DeepLab's CRF parameters
    are set for ~500-pixel images: ``crf_scale`` divides its spatial deviations (default
    ``321 / H``, the image size relative to the paper's 321x321 inputs).
    """
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    labels = []
    try:
        for _, batch in _batches(dataset, batch_size):
            images = batch["image"]
            logits = network(images.to(device)).float()
            if logits.shape[-2:] != images.shape[-2:]:
                logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
            probs = torch.softmax(logits, dim=1).cpu()
            if crf:
                scale = crf_scale if crf_scale is not None else 321 / images.shape[-2]
                probs = crf_refine(images, probs, scale_factor=scale)
            labels.append(probs.argmax(dim=1))
    finally:
        network.train(was_training)
    return torch.cat(labels)


def segmentation_scores(pred: Tensor, dataset: Dataset, class_names: Sequence[str]) -> dict[str, float]:
    """IoU of every class (background first) and their mean over ``dataset``'s masks.

    Args:
        pred: ``[N, H, W]`` labels (:func:`predict_segmentation`).
        dataset: the samples, whose ``mask`` (0 background, ``c + 1`` class ``c``, 255 ignore)
            is the ground truth.
        class_names: the ``C`` object classes.

    Returns:
        ``{"background": iou, <class>: iou, ..., "mIoU": mean}`` (fractions; a class absent
        from both prediction and truth is NaN and left out of the mean).
    """
    if len(pred) != len(dataset):
        raise ValueError(f"{len(pred)} predictions for {len(dataset)} samples")
    matrix = ConfusionMatrix(len(class_names) + 1, IGNORE_INDEX)
    for start in range(0, len(dataset), 256):
        chunk = range(start, min(len(dataset), start + 256))
        target = torch.stack([torch.as_tensor(dataset[i]["mask"]) for i in chunk])
        matrix.update(pred[start:start + len(chunk)], target)
    iou = matrix.iou()
    scores = {name: float(v) for name, v in zip(["background", *class_names], iou)}
    scores["mIoU"] = float(matrix.miou())
    return scores


def cue_quality(cues: Tensor, dataset: Dataset) -> dict[str, float]:
    """How good localization cues are, against the masks they never saw (``[N, C + 1, h, w]``
    cues, resized to the masks by nearest neighbour).

    Returns (fractions over all pixels of the dataset, ignore pixels left out):
        ``fg precision`` — of the pixels with a foreground cue, those whose true class is among
        the cued ones; ``fg recall`` — of object pixels, those cued with their class;
        ``bg precision`` — of background cues, those on true background; ``bg recall`` — of
        true background, the share cued; ``cued`` — pixels with any cue.
    """
    if len(cues) != len(dataset):
        raise ValueError(f"{len(cues)} cue maps for {len(dataset)} samples")
    sums = dict.fromkeys(("fg_cued", "fg_right", "obj", "obj_hit", "bg_cued", "bg_right", "bg",
                          "bg_hit", "cued", "pixels"), 0.0)
    for i in range(len(dataset)):
        mask = torch.as_tensor(dataset[i]["mask"])
        cue = F.interpolate(cues[i:i + 1].float(), size=tuple(mask.shape), mode="nearest")[0] > 0.5
        valid = mask != IGNORE_INDEX
        truth = F.one_hot(mask.clamp(max=cue.shape[0] - 1), cue.shape[0]).permute(2, 0, 1).bool()
        fg_any = cue[1:].any(0) & valid
        fg_right = (cue[1:] & truth[1:]).any(0) & valid
        obj = (mask > 0) & valid
        sums["fg_cued"] += float(fg_any.sum())
        sums["fg_right"] += float(fg_right.sum())
        sums["obj"] += float(obj.sum())
        sums["obj_hit"] += float((fg_right & obj).sum())
        bg_cue = cue[0] & valid
        sums["bg_cued"] += float(bg_cue.sum())
        sums["bg_right"] += float((bg_cue & (mask == 0)).sum())
        sums["bg"] += float(((mask == 0) & valid).sum())
        sums["bg_hit"] += float((bg_cue & (mask == 0)).sum())
        sums["cued"] += float((cue.any(0) & valid).sum())
        sums["pixels"] += float(valid.sum())

    def ratio(a: str, b: str) -> float:
        return sums[a] / sums[b] if sums[b] else float("nan")

    return {"fg precision": ratio("fg_right", "fg_cued"), "fg recall": ratio("obj_hit", "obj"),
            "bg precision": ratio("bg_right", "bg_cued"), "bg recall": ratio("bg_hit", "bg"),
            "cued": ratio("cued", "pixels")}
