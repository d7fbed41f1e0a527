"""Grad-CAM attention that stays differentiable (GAIN, Eq. 1-2).

For every ground-truth class ``c`` of every image, GAIN computes

* Eq. 1: ``w^c = GAP(ds^c / df_l)`` — the neuron-importance weights, one per channel of
  the target layer's activation ``f_l``;
* Eq. 2: ``A^c = ReLU(conv(f_l, w^c))`` — the channel-weighted sum of ``f_l``.

The map is then upsampled to the input size and normalised to [0, 1] per map.

Choices (where the public GAIN implementations disagree):

* **Second-order term.** ``create_graph=True`` keeps the graph of Eq. 1, so a loss on
  ``A^c`` reaches the network both through ``f_l`` and through ``w^c``. This is the
  paper's "trainable attention" and the default when training. With a GAP + linear head
  ``ds/df`` does not depend on ``f`` but still depends on the head's weights, which then
  receive gradient from the attention losses; heads with non-linearities after the
  target layer (VGG's FC layers) also get the term through ``f``. ``detach_weights=True``
  reproduces what every public implementation does (``w^c`` treated as a constant).
* **Normalisation** happens after upsampling so a map reaches exactly 1 at its peak.
  ``"max"`` (default) divides each map (one image, one class) by its maximum — after the
  ReLU the minimum is already 0 almost always, so the threshold sigma of Eq. 4 is relative
  to the peak; ``"minmax"`` subtracts each map's minimum first (what the ``grad-cam``
  package, ilyak93/GAIN-pytorch and — at their batch size of one — alokwhitewolf's and
  AustinDoolittle's code do); ``"batch_minmax"`` takes the minimum and maximum over every
  map of the batch (ngxbac/GAIN's ``Ac.min()``, ``Ac.max()``), so a map whose peak is weaker
  than the batch's strongest never reaches 1 and erases less. The constants are kept in the
  graph by default; ``detach_normalizer=True`` treats them as constants (alokwhitewolf's
  ``.data``), so the gradient of a loss on A^c does not see that raising the peak rescales
  the whole map. A map that is all zero stays zero (the denominator is clamped), never NaN.
* **Upsampling** is bilinear with ``align_corners=False`` (pixel-centre convention, the
  same as OpenCV's resize used by ``grad-cam``).
* **Classes are batched**: one vectorised ``autograd.grad`` call with
  ``is_grads_batched=True`` computes the gradients for all K class slots at once. The
  class scores are summed over the batch, which is exact as long as nothing after the
  target layer mixes images of a batch (no BatchNorm in the head; true for the torchvision
  classifiers preset in :mod:`gainlib.models`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gainlib.data.protocol import check_images, check_labels
from gainlib.models import resolve_layer

Normalization = Literal["max", "minmax", "batch_minmax", "none"]

# check_labels stays importable from here for old code; it is documented where it lives,
# gainlib.data.protocol (listing it twice would point the API page's source links astray).
__all__ = ["AttentionMaps", "GradCAM", "positive_classes", "attention_from_features",
           "normalize_maps"]

_EPS = 1e-8


class AttentionMaps(NamedTuple):
    """The result of a Grad-CAM pass.

    ``logits [B, C]``; ``maps [B, K, H, W]`` in [0, 1] (zero in padded slots);
    ``classes [B, K]`` label index of each slot (0 in padded slots); ``valid [B, K]`` True
    where the slot holds a ground-truth class. ``K`` is the largest number of positive
    classes of any image in the batch (0 if no image has one).
    """

    logits: Tensor
    maps: Tensor
    classes: Tensor
    valid: Tensor


def positive_classes(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Turn multi-hot ``labels [B, C]`` into padded class slots.

    Returns ``classes [B, K]`` (label indices, 0 where padded) and ``valid [B, K]`` with
    ``K = max_b n_b`` — the ``c`` of the paper's sums over ground-truth classes.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be multi-hot [B, C], got shape {list(labels.shape)}")
    positive = labels > 0.5
    counts = positive.sum(dim=1)
    k = int(counts.max().item()) if labels.shape[0] else 0
    # A stable sort puts the positive class indices first, in increasing order.
    order = torch.sort((~positive).to(torch.int8), dim=1, stable=True).indices[:, :k]
    valid = torch.arange(k, device=labels.device)[None, :] < counts[:, None]
    return torch.where(valid, order, torch.zeros_like(order)), valid


def normalize_maps(maps: Tensor, normalization: Normalization = "max",
                   detach_normalizer: bool = False, valid: Tensor | None = None) -> Tensor:
    """Scale maps ``[..., H, W]`` to [0, 1] (see the module notes); zero maps stay zero.

    ``"max"`` and ``"minmax"`` work per map; ``"batch_minmax"`` uses the extremes of all the
    maps given, or, with ``valid`` (``[B, K]`` for maps ``[B, K, H, W]``), of the valid
    slots only, so padded all-zero slots do not pull the minimum down. ``detach_normalizer``
    treats the subtracted minimum and the divisor as constants.

    >>> maps = torch.tensor([[[[1.0, 3.0]], [[2.0, 5.0]]]])      # one image, two class slots
    >>> normalize_maps(maps, "minmax")[0, :, 0]
    tensor([[0., 1.],
            [0., 1.]])
    >>> normalize_maps(maps, "batch_minmax")[0, :, 0]           # extremes 1 and 5 of the batch
    tensor([[0.0000, 0.5000],
            [0.2500, 1.0000]])
    """
    if normalization == "none":
        return maps
    if normalization not in ("max", "minmax", "batch_minmax"):
        raise ValueError(f"normalization must be 'max', 'minmax', 'batch_minmax' or 'none', "
                         f"got {normalization!r}")
    if normalization == "batch_minmax":
        if valid is not None and valid.shape != maps.shape[:-2]:
            raise ValueError(f"valid must be {list(maps.shape[:-2])} for maps {list(maps.shape)}, "
                             f"got {list(valid.shape)}")
        values = maps if valid is None else maps[valid]
        if values.numel() == 0:
            return maps
        low, high = values.amin(), values.amax()
    else:
        low = maps.amin(dim=(-2, -1), keepdim=True) if normalization == "minmax" else None
        high = maps.amax(dim=(-2, -1), keepdim=True)
    if detach_normalizer:
        low = None if low is None else low.detach()
        high = high.detach()
    if low is not None:
        # max(A - min) == max(A) - min exactly: rounding is monotone.
        maps, high = maps - low, high - low
    return maps / high.clamp_min(_EPS)


def attention_from_features(
    logits: Tensor,
    features: Tensor,
    classes: Tensor,
    valid: Tensor,
    output_size: tuple[int, int] | None = None,
    create_graph: bool = True,
    detach_weights: bool = False,
    normalization: Normalization = "max",
    detach_normalizer: bool = False,
) -> Tensor:
    """Eq. 1-2 for all class slots at once.

    Args:
        logits: ``[B, C]`` class scores ``s`` computed from ``features``.
        features: ``[B, D, h, w]`` activation ``f_l`` of the target layer (in the graph of
            ``logits``).
        classes, valid: ``[B, K]`` class slots from :func:`positive_classes`.
        output_size: ``(H, W)`` to upsample to; ``None`` keeps ``(h, w)``.
        create_graph: keep the graph of Eq. 1 so the maps can be trained (GAIN);
            ``False`` for explanations.
        detach_weights: treat ``w^c`` as constants (the public implementations' choice).
        normalization: ``"max"``, ``"minmax"``, ``"batch_minmax"`` (over the valid slots
            of the batch) or ``"none"``.
        detach_normalizer: treat the normalising constants as constants.

    Returns:
        ``[B, K, H, W]`` attention maps, zero in padded slots.
    """
    batch, k = classes.shape
    if logits.ndim != 2 or logits.shape[0] != batch:
        raise ValueError(f"logits must be [B={batch}, C], got {list(logits.shape)}")
    if features.ndim != 4 or features.shape[0] != batch:
        raise ValueError(f"features must be [B={batch}, D, h, w], got {list(features.shape)}")
    size = tuple(output_size) if output_size is not None else tuple(features.shape[-2:])
    if k == 0:
        return features.new_zeros(batch, 0, *size)
    # grad_outputs[k, b] is the one-hot of image b's k-th class: the sum over the batch of
    # s^{c_bk} for each slot k; padded slots get a zero vector, hence a zero map.
    grad_outputs = torch.zeros(k, *logits.shape, dtype=logits.dtype, device=logits.device)
    grad_outputs.scatter_(2, classes.t().unsqueeze(-1), valid.t().unsqueeze(-1).to(logits.dtype))
    (gradients,) = torch.autograd.grad(
        logits, features, grad_outputs=grad_outputs, is_grads_batched=True,
        create_graph=create_graph, retain_graph=True,
    )                                                                 # [K, B, D, h, w]
    weights = gradients.mean(dim=(-2, -1))                            # Eq. 1, [K, B, D]
    if detach_weights or not create_graph:
        weights = weights.detach()
    if not create_graph:
        features = features.detach()
    maps = F.relu(torch.einsum("kbd,bdhw->bkhw", weights, features))  # Eq. 2
    if maps.shape[-2:] != size:
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return normalize_maps(maps, normalization, detach_normalizer, valid) * valid[:, :, None, None]


class GradCAM:
    """Grad-CAM on any module with a named target layer, batched over images and classes.

    >>> from gainlib.models import SmallCNN
    >>> model = SmallCNN(num_classes=3, widths=(4, 8))
    >>> labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> with GradCAM(model, "features") as cam:
    ...     out = cam(torch.randn(2, 3, 16, 16), labels)   # every positive class of every image
    >>> tuple(out.maps.shape), out.valid.tolist()            # [B, K, H, W]; K = most classes
    ((2, 2, 16, 16), [[True, True], [True, False]])

    ``create_graph=True`` (set by the GAIN streams) makes the maps trainable; the default
    ``False`` gives plain explanations. The forward hook stays registered until
    :meth:`close` (or the end of a ``with`` block).
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | nn.Module,
        normalization: Normalization = "max",
        detach_weights: bool = False,
        detach_normalizer: bool = False,
    ) -> None:
        self.model = model
        self.layer = resolve_layer(model, target_layer) if isinstance(target_layer, str) else target_layer
        self.normalization = normalization
        self.detach_weights = detach_weights
        self.detach_normalizer = detach_normalizer
        self.features: Tensor | None = None
        self._handle = self.layer.register_forward_hook(self._store)

    def _store(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        if not torch.is_tensor(output):
            raise TypeError(f"target layer {type(module).__name__} must output a tensor, "
                            f"got {type(output).__name__}")
        if torch.is_grad_enabled() and not output.requires_grad:
            # A frozen backbone: make the activation a leaf so the scores still depend on it.
            output = output.detach().requires_grad_()
            self.features = output
            return output
        self.features = output
        return None

    def forward_with_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Run the model and return ``(logits, features of the target layer)``."""
        check_images(images, values=False)   # any model's inputs: the layout, not the range
        self.features = None
        logits = self.model(images)
        if self.features is None:
            raise RuntimeError("the target layer was not run by the model's forward pass")
        features, self.features = self.features, None
        if not torch.is_tensor(logits) or logits.ndim != 2:
            raise TypeError(f"the model must return logits [B, C], got {_shape_of(logits)}")
        return logits, features

    def __call__(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        classes: Tensor | None = None,
        create_graph: bool = False,
    ) -> AttentionMaps:
        """Attention maps for ``images [B, 3, H, W]``.

        Give either multi-hot ``labels [B, C]`` (a map per positive class) or explicit
        integer label indices ``classes [B]`` / ``[B, K]``; with neither, the top-scoring class.
        Works under ``torch.no_grad()`` and ``torch.inference_mode()`` too (Grad-CAM needs
        gradients, so it computes them on normal copies of the inputs there).
        """
        if torch.is_inference_mode_enabled():
            # Inference tensors cannot enter autograd: leave inference mode and use copies.
            with torch.inference_mode(False):
                copies = [None if t is None or not torch.is_tensor(t) else t.clone()
                          for t in (images, labels, classes)]
                return self(*copies, create_graph=create_graph)
        if classes is not None:                     # before the forward pass: fail fast
            classes = _class_slots(classes, len(images) if torch.is_tensor(images) else None)
        with torch.enable_grad():
            logits, features = self.forward_with_features(images)
            if labels is not None:
                check_labels(labels, logits)
                slots, valid = positive_classes(labels)
            else:
                slots = (classes if classes is not None else logits.argmax(dim=1)[:, None]).to(logits.device)
                if slots.numel() and (slots.min() < 0 or slots.max() >= logits.shape[1]):
                    raise ValueError(f"classes must be label indices 0..{logits.shape[1] - 1}")
                valid = torch.ones_like(slots, dtype=torch.bool)
            maps = attention_from_features(
                logits, features, slots, valid, output_size=tuple(images.shape[-2:]),
                create_graph=create_graph, detach_weights=self.detach_weights,
                normalization=self.normalization, detach_normalizer=self.detach_normalizer,
            )
        if not create_graph:
            logits, maps = logits.detach(), maps.detach()
        return AttentionMaps(logits, maps, slots, valid)

    def close(self) -> None:
        """Remove the forward hook."""
        self._handle.remove()

    def __enter__(self) -> "GradCAM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shape_of(value: object) -> str:
    return f"shape {list(value.shape)}" if torch.is_tensor(value) else type(value).__name__


def _class_slots(classes: Tensor, batch: int | None) -> Tensor:
    """``classes [B]`` / ``[B, K]`` of integer label indices as ``[B, K]`` int64 slots."""
    classes = torch.as_tensor(classes)
    if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
        # .long() would truncate 2.7 to 2 without a word.
        raise TypeError(f"classes must be integer label indices, got dtype {classes.dtype}; "
                        "for multi-hot labels pass labels= instead")
    if classes.ndim not in (1, 2) or (batch is not None and classes.shape[0] != batch):
        raise ValueError(f"classes must be [B] or [B, K] with B = {batch} images, "
                         f"got shape {list(classes.shape)}")
    return classes.reshape(classes.shape[0], -1).long()
