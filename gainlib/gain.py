"""The GAIN network: one classifier, three streams that share all parameters (Fig. 2-3).

* S_cl — the classifier on the image: logits, L_cl, and the trainable attention maps
  A^c of every ground-truth class (Eq. 1-2).
* S_am — the same classifier on the masked images I*^c (Eq. 3-4): L_am (Eq. 5).
* S_e  — on the few samples with extra labels: L_p (Eq. 7) for pixel masks, L_bbox (Eq. 9)
  for boxes with a saliency prior, chosen per sample (GAIN_ext^{b,p} mixes both).

``L = L_cl + alpha * L_am + omega_e * L_e`` (Eq. 6, 8, 10).

BatchNorm in S_am: the masked images have statistics unlike any real image, and the choice
matters. ``"batch"`` (default) normalises S_am's masked images with the batch statistics of
the S_cl pass on the real images (captured by hooks, kept in the graph): the masked image is
scored by exactly the function that classified the real one, and the running averages are not
touched. ``"eval"`` uses the running averages instead (what public implementations that
switch the network to eval mode do, e.g. ilyak93/GAIN-pytorch). On the synthetic benchmark
this let the network minimise L_am by making its eval-mode scores low for every input, a
mode L_cl never sees in training: validation accuracy collapsed to "predict nothing" while
the training loss kept falling. ``"train"`` normalises the masked images with their own
batch statistics and updates the running averages with them (ngxbac/GAIN and
AustinDoolittle/Pytorch-Gain, which run S_am as an ordinary train-mode forward pass).

Every choice the paper leaves open is a :class:`GainConfig` field, with gainlib's choice as the
default; :meth:`GainConfig.preset` gives the settings of the public implementations
(:mod:`gainlib.presets`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator, Literal, Mapping

import torch
from torch import Tensor, nn

from gainlib.attention import AttentionMaps, GradCAM, attention_from_features, positive_classes
from gainlib.losses import (
    mean_over_class_slots,
    attention_mining_loss,
    bbox_attention_loss,
    class_targets_from_mask,
    classification_loss,
    pixel_attention_loss,
)
from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD, check_images, check_labels
from gainlib.masking import DEFAULT_BLUR_SIGMA, DEFAULT_OMEGA, DEFAULT_SIGMA, Fill, masked_image, soft_mask
from gainlib.models import build_classifier
from gainlib.presets import preset_fields

__all__ = ["GainConfig", "GAIN"]


@dataclass
class GainConfig:
    """Hyper-parameters of the GAIN streams.

    Attributes:
        sigma, omega: threshold and scale of the soft mask (Eq. 4).
        alpha: weight of L_am (Eq. 6; 1 in the paper). 0 switches S_am off: GAIN_ext with
            the streams S_cl and S_e only, as in the paper's camera study (Sec. 5.2).
        ext_weight: weight of L_p / L_bbox (the omega of Eq. 8 and 10; 10 in the paper).
        normalization: how A^c is scaled to [0, 1]: per map by its maximum (``"max"``) or
            its minimum and maximum (``"minmax"``), or by the batch's extremes
            (``"batch_minmax"``); :mod:`gainlib.attention`.
        detach_weights: treat the Grad-CAM weights as constants, dropping the second-order
            term (what the public implementations do).
        am_score: which score of I* L_am minimises: ``"sigmoid"``, ``"logit"``,
            ``"softmax"`` of class c, or ``"max_softmax"``, the largest softmax probability
            of any class (:mod:`gainlib.losses`).
        am_batchnorm: BatchNorm mode in S_am: ``"batch"``, ``"eval"`` or ``"train"``
            (module notes).
        detach_normalizer: treat the normalisation's minimum and divisor as constants.
        fill: what the erased region of I* shows (Eq. 3; :mod:`gainlib.masking`):
            ``"blur"`` (the default), ``"mean"`` (Eq. 3 exactly, on normalised images),
            ``"zero"`` (black), ``"noise"``. The default follows the decision, not the map:
            across the book's family of biased scenes (chapter 5), GAIN and GAIN_ext^p
            separated boats off water from water without boats better with the blur than
            with the mean in some scenarios and worse in none, while noise was worse in some
            (the CHANGELOG gives the numbers).
        blur_sigma: the blur of ``fill="blur"``, a fraction of the shorter image side.
        image_mean, image_std: the per-channel normalisation of the training images, to
            place black for ``fill="zero"`` (ImageNet's, as gainlib's datasets by default).

    Every field's type and range is checked when the config is built (``ValueError`` /
    ``TypeError`` naming the field): sigma in [0, 1], omega > 0, alpha and ext_weight >= 0,
    blur_sigma > 0, image_std > 0, all finite and within float32's range (Eq. 4 computes
    omega * (A - sigma) in float32); the string fields one of their choices;
    the flags bools.
    """

    sigma: float = DEFAULT_SIGMA
    omega: float = DEFAULT_OMEGA
    alpha: float = 1.0
    ext_weight: float = 10.0
    normalization: Literal["max", "minmax", "batch_minmax"] = "max"
    detach_weights: bool = False
    am_score: Literal["sigmoid", "logit", "softmax", "max_softmax"] = "sigmoid"
    am_batchnorm: Literal["batch", "eval", "train"] = "batch"
    detach_normalizer: bool = False
    fill: Fill = "blur"
    blur_sigma: float = DEFAULT_BLUR_SIGMA
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        # Every field against its annotation, so a typo fails here rather than at the first
        # step (or never: sigma=True would silently act as 1).
        hints = typing.get_type_hints(type(self))
        for field in fields(self):
            value, expected = getattr(self, field.name), hints[field.name]
            if typing.get_origin(expected) is Literal:
                if value not in typing.get_args(expected):
                    choices = ", ".join(repr(c) for c in typing.get_args(expected))
                    raise ValueError(f"GainConfig.{field.name} must be one of {choices}, got {value!r}")
            elif expected is bool:
                if not isinstance(value, bool):
                    raise TypeError(f"GainConfig.{field.name} must be True or False, got {value!r}")
            elif expected is float:
                _check_number(field.name, value)
            elif typing.get_origin(expected) is tuple:
                size = len(typing.get_args(expected))
                if not isinstance(value, (tuple, list)) or len(value) != size:
                    raise TypeError(f"GainConfig.{field.name} must be {size} numbers (one per "
                                    f"channel), got {value!r}")
                for item in value:
                    _check_number(field.name, item)
                setattr(self, field.name, tuple(value))   # a list (from JSON) compares as a tuple
            else:
                raise TypeError(f"GainConfig.{field.name}: no check for its annotation {expected}")
        if not 0 <= self.sigma <= 1:   # A^c is normalised to [0, 1] (Eq. 4 thresholds it)
            raise ValueError(f"GainConfig.sigma must lie in [0, 1] (the maps are normalised to a "
                             f"peak of 1), got {self.sigma!r}")
        if self.omega <= 0:
            raise ValueError(f"GainConfig.omega must be positive (Eq. 4's scale), got {self.omega!r}")
        for name in ("alpha", "ext_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"GainConfig.{name} must be >= 0 (a loss weight), got {getattr(self, name)!r}")
        if self.blur_sigma <= 0:
            raise ValueError(f"GainConfig.blur_sigma must be positive (a fraction of the image "
                             f"side), got {self.blur_sigma!r}")
        if min(self.image_std) <= 0:
            raise ValueError(f"GainConfig.image_std must be positive, got {self.image_std!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "GainConfig":
        """The configuration a public GAIN implementation runs with, in gainlib's terms.

        ``name`` is one of ``"gainlib"`` (the defaults), ``"alokwhitewolf"``,
        ``"ilyak93"``, ``"ngxbac"`` or ``"austindoolittle"``; the functions of the same
        name in :mod:`gainlib.presets` cite the file and line of every value. ``overrides``
        change single fields (one factor at a time). Unknown names raise ``KeyError``
        listing the presets.

        >>> GainConfig.preset("ngxbac").am_score
        'max_softmax'
        >>> GainConfig.preset("ngxbac", fill="blur").fill
        'blur'
        """
        return cls(**{**preset_fields(name), **overrides})


#: The largest magnitude a setting may have: the streams compute in float32, where a larger
#: omega makes Eq. 4's omega * (A - sigma) infinite (NaN where A = sigma, and in its gradient).
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"GainConfig.{name} must be a number, got {value!r} "
                        f"({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"GainConfig.{name} must be finite, got {value!r}")
    if abs(value) > _FLOAT32_MAX:
        raise ValueError(f"GainConfig.{name} = {value!r} overflows float32, the precision the "
                         f"streams compute in (largest {_FLOAT32_MAX:.3g})"
                         + (": Eq. 4's omega * (A - sigma) would be infinite" if name == "omega" else ""))


class GAIN(nn.Module):
    """A classifier with trainable Grad-CAM attention and the GAIN streams.

    Args:
        classifier: any module mapping images ``[B, 3, H, W]`` to logits ``[B, C]`` with
            nothing that mixes images of a batch after ``target_layer``.
        target_layer: dotted name of the layer whose activation is f_l of Eq. 1-2.
        config: the streams' hyper-parameters.
    """

    def __init__(self, classifier: nn.Module, target_layer: str,
                 config: GainConfig | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.target_layer = target_layer
        self.config = config or GainConfig()
        self._cam = GradCAM(classifier, target_layer, normalization=self.config.normalization,
                            detach_weights=self.config.detach_weights,
                            detach_normalizer=self.config.detach_normalizer)

    @classmethod
    def from_name(cls, name: str, num_classes: int, weights: str | None = None, *,
                  seed: int | None = None, **config: Any) -> "GAIN":
        """Build a GAIN on a preset backbone of :mod:`gainlib.models` (``"vgg16"``, ...);
        ``seed`` makes its initial weights reproducible (:func:`build_classifier`), ``config``
        are :class:`GainConfig` fields."""
        classifier, layer = build_classifier(name, num_classes, weights=weights, seed=seed)
        return cls(classifier, layer, GainConfig(**config))

    def forward(self, images: Tensor) -> Tensor:
        """Plain classification of ``images [B, 3, H, W]`` (checked: :func:`check_images`):
        logits ``[B, C]``."""
        check_images(images)
        return self.classifier(images)

    def attention(self, images: Tensor, labels: Tensor | None = None,
                  classes: Tensor | None = None, create_graph: bool = False) -> AttentionMaps:
        """Grad-CAM maps (Eq. 1-2) of the given classes; see :class:`GradCAM` (it works under
        ``torch.no_grad()`` and ``torch.inference_mode()`` too)."""
        check_images(images)
        return self._cam(images, labels=labels, classes=classes, create_graph=create_graph)

    def _trainable_attention(self, images: Tensor, labels: Tensor):
        logits, features = self._cam.forward_with_features(images)
        check_labels(labels, logits)
        classes, valid = positive_classes(labels)
        maps = attention_from_features(
            logits, features, classes, valid, output_size=tuple(images.shape[-2:]),
            create_graph=True, detach_weights=self.config.detach_weights,
            normalization=self.config.normalization,
            detach_normalizer=self.config.detach_normalizer)
        return logits, maps, classes, valid

    def erase(self, images: Tensor, maps: Tensor) -> Tensor:
        """Eq. 3-4 with this model's settings: ``I*^c`` for each map, ``[B, K, 3, H, W]``
        (the soft mask of ``sigma``/``omega``, erased with the configured ``fill``)."""
        config = self.config
        return masked_image(images, soft_mask(maps, config.sigma, config.omega), config.fill,
                            mean=config.image_mean, std=config.image_std,
                            blur_sigma=config.blur_sigma)

    def stream_losses(self, batch: Mapping[str, Any], ext_batch: Mapping[str, Any] | None = None,
                      attention_mining: bool = True) -> dict[str, Tensor]:
        """The loss terms of one training step.

        Args:
            batch: a collated batch (:func:`gainlib.data.collate_samples`) for S_cl and S_am.
            ext_batch: a batch of samples with extra labels for S_e, or ``None``.
            attention_mining: run S_am; ``False`` trains a plain classifier (when also
                ``ext_batch is None``).

        Returns:
            ``{"cl", "am", "ext", "total"}`` (terms not computed are absent).
        """
        images, labels = batch["image"], batch["labels"]
        check_images(images)
        out: dict[str, Tensor] = {}
        if not attention_mining or self.config.alpha == 0:
            logits = self.classifier(images)
            out["cl"] = classification_loss(logits, labels)       # checks the labels
            total = out["cl"]
        else:
            with _recorded_batch_stats(self.classifier) as batch_stats:
                logits, maps, classes, valid = self._trainable_attention(images, labels)
            out["cl"] = classification_loss(logits, labels)
            erased = self.erase(images, maps)
            masked_logits = logits.new_zeros(*classes.shape, logits.shape[1])
            if valid.any():
                with _batchnorm_mode(self.classifier, self.config.am_batchnorm, batch_stats):
                    masked_logits[valid] = self.classifier(erased[valid])
            out["am"] = attention_mining_loss(masked_logits, classes, valid, self.config.am_score)
            total = out["cl"] + self.config.alpha * out["am"]
        if ext_batch is not None:
            out["ext"] = self.extra_supervision(ext_batch)
            total = total + self.config.ext_weight * out["ext"]
        out["total"] = total
        return out

    def extra_supervision(self, batch: Mapping[str, Any]) -> Tensor:
        """Stream S_e: L_p (Eq. 7) on samples flagged ``use_mask``, otherwise L_bbox (Eq. 9)
        on samples flagged ``use_boxes``; the mean over those samples' classes."""
        images, labels = batch["image"], batch["labels"]
        check_images(images)
        use_mask, use_boxes = batch["use_mask"], batch["use_boxes"] & ~batch["use_mask"]
        _, maps, classes, valid = self._trainable_attention(images, labels)
        per_slot = maps.new_zeros(classes.shape)
        if use_mask.any():
            targets, pixel_valid = class_targets_from_mask(batch["mask"], classes, labels.shape[1])
            pixel = pixel_attention_loss(maps, targets, valid, pixel_valid, reduction="none")
            per_slot = torch.where(use_mask[:, None], pixel, per_slot)
        if use_boxes.any():
            box_masks = batch["box_masks"].gather(
                1, classes[:, :, None, None].expand(-1, -1, *maps.shape[-2:]))
            box = bbox_attention_loss(maps, box_masks, batch["saliency"], valid, reduction="none")
            per_slot = torch.where(use_boxes[:, None], box, per_slot)
        return mean_over_class_slots(per_slot, valid & (use_mask | use_boxes)[:, None])

    def hyperparameters(self) -> dict[str, Any]:
        """The config as a plain dict (for checkpoints and cache keys)."""
        return {"target_layer": self.target_layer, **asdict(self.config)}


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def _recorded_batch_stats(module: nn.Module) -> Iterator[dict[nn.Module, tuple[Tensor, Tensor]]]:
    """Run the block with every training-mode BatchNorm normalising by batch statistics that
    are computed once, kept in the graph (not detached) and recorded: the mean and biased
    variance of each norm's input. They are functions of the weights, and S_am's gradient must
    see that (see :func:`_batchnorm_mode`). The norm computes what ``nn.BatchNorm`` computes,
    running averages included; only float rounding differs."""
    stats: dict[nn.Module, tuple[Tensor, Tensor]] = {}

    def normalize(norm: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
        mean, var = _batch_moments(x)
        stats[norm] = (mean, var)
        _update_running_stats(norm, mean, var, x.numel() // x.shape[1])
        return _normalize_with(norm, mean, var, x)

    norms = [m for m in _batchnorms(module) if m.training]
    for m in norms:
        m.forward = functools.partial(normalize, m)
    try:
        yield stats
    finally:
        for m in norms:
            m.__dict__.pop("forward", None)


def _batch_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of ``x [N, C, ...]``, differentiable. Two passes
    rather than ``Tensor.var``, whose CPU kernel over dims (0, 2, 3) is several times slower
    (benchmarks/batch_stats.py); a channels-last ``[N, C, H, W]`` is reduced as the
    ``[N*H*W, C]`` matrix it is in memory, which is faster still."""
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        rows = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])     # a view, no copy
        mean = rows.mean(0)
        return mean, (rows - mean).square().mean(0)
    dims = [0, *range(2, x.ndim)]
    mean = x.mean(dims, keepdim=True)
    return mean.flatten(), (x - mean).square().mean(dims)


@torch.no_grad()
def _update_running_stats(norm: nn.modules.batchnorm._BatchNorm, mean: Tensor, var: Tensor,
                          count: int) -> None:
    """The running averages' update of ``nn.BatchNorm`` in training mode (unbiased variance,
    ``momentum=None`` as a cumulative average)."""
    if count <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"of {count} value(s) per channel")
    if not norm.track_running_stats or norm.running_mean is None:
        return
    momentum = norm.momentum
    if norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if momentum is None:
            momentum = 1.0 / float(norm.num_batches_tracked)
    norm.running_mean.lerp_(mean.detach().to(norm.running_mean.dtype), momentum)
    norm.running_var.lerp_((var.detach() * count / (count - 1)).to(norm.running_var.dtype),
                           momentum)


@contextlib.contextmanager
def _batchnorm_mode(module: nn.Module, mode: str,
                    batch_stats: Mapping[nn.Module, tuple[Tensor, Tensor]]) -> Iterator[None]:
    """Run the block with every BatchNorm in the S_am mode of :class:`GainConfig`.

    ``"eval"``: running averages, not updated. ``"batch"``: each norm normalises with the
    statistics recorded in the S_cl pass, *differentiably*. Detaching them (an earlier
    version did) makes the gradient of L_am wrong: a conv followed by BatchNorm is invariant
    to the scale of its weights, but with constant statistics L_am's gradient has a component
    along the weights that the next S_cl pass undoes. Following it, both losses rose epoch
    after epoch until GAIN was worse than the classifier it started from. Norms without
    recorded statistics (the network in eval mode) keep their running averages.
    """
    if mode == "train":
        yield
        return
    norms = _batchnorms(module)
    training = [m.training for m in norms]
    for m in norms:
        m.eval()
        if mode == "batch" and m in batch_stats:
            m.forward = functools.partial(_normalize_with, m, *batch_stats[m])
    try:
        yield
    finally:
        for m, was_training in zip(norms, training):
            m.train(was_training)
            m.__dict__.pop("forward", None)


def _normalize_with(norm: nn.modules.batchnorm._BatchNorm, mean: Tensor, var: Tensor,
                    x: Tensor) -> Tensor:
    """BatchNorm of ``x`` with the given statistics, differentiable in them (unlike
    ``F.batch_norm``'s running statistics)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = torch.rsqrt(var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = (norm.bias if norm.affine else 0.0) - mean * scale
    # One fused pass over x (x * scale + shift), as cheap as the native kernel: the per-channel
    # arithmetic happens on [C]-sized tensors.
    return torch.addcmul(shift.view(shape), x, scale.view(shape))
