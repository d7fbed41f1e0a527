"""The sample protocol: what one training/evaluation sample looks like to gainlib.

Any dataset plugs into :class:`gainlib.trainer.GainTrainer` if its ``__getitem__``
returns a ``dict`` with these keys (``validate_sample`` checks them):

==============  ============================  ==================================================
key             type / shape                  meaning
==============  ============================  ==================================================
``image``       float32 ``[3, H, W]``         the network input (already normalised, see below)
``labels``      float32 ``[C]``               multi-hot image-level labels (the weak labels W)
``mask``        int64 ``[H, W]`` optional     class-index mask, VOC convention: 0 background,
                                              1..C the classes (class ``c`` is label index
                                              ``c - 1``), 255 ignore
``boxes``       float32 ``[N, 4]`` optional   boxes ``(x1, y1, x2, y2)`` in pixels of ``image``
``box_labels``  int64 ``[N]`` optional        label index (0..C-1) of each box
``saliency``    float32 ``[H, W]`` optional   saliency prior S in [0, 1] (Eq. 9)
``use_mask``    bool                          this sample may feed its mask to stream S_e^p
``use_boxes``   bool                          this sample may feed its boxes to stream S_e^b
``id``          str                           a name for error messages and bookkeeping
==============  ============================  ==================================================

Images must be finite and normalised: a value beyond ``±IMAGE_VALUE_LIMIT`` (50; ImageNet
normalisation maps [0, 1] to about [-2.1, 2.7]) is taken for pixels in 0..255 that were never
normalised, and refused. Labels must be 0 or 1, mask values ``0..C`` or 255. The same checks
guard gainlib's public entries for tensors (:func:`check_images`, :func:`check_labels`,
:func:`check_mask`: the losses and the :class:`~gainlib.gain.GAIN` methods), each one
vectorised operation per batch. Boxes must be finite, inside the image and not empty
(``x1 < x2 <= W``, ``y1 < y2 <= H``). A ``use_boxes`` sample needs a ``saliency`` prior (without
one, L_bbox of Eq. 9 would pull the map to 0 inside its boxes) and a box for every positive label.

A mask may be present on every sample (for evaluation) while only the few samples with
``use_mask=True`` are used as extra supervision during training; likewise for boxes.

Images are normalised by the dataset (ImageNet mean/std by default), so that the masked
image of Eq. 3, ``I - T(A) * I``, sets erased pixels to the dataset mean rather than to
black. :func:`denormalize` undoes it for display.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The largest magnitude a normalised image may hold; beyond it, pixels in 0..255 are suspected.
IMAGE_VALUE_LIMIT = 50.0

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SampleError",
    "validate_sample",
    "collate_samples",
    "IMAGE_VALUE_LIMIT",
    "check_images",
    "check_labels",
    "check_mask",
    "boxes_to_masks",
    "denormalize",
]


class SampleError(ValueError):
    """A sample does not follow the protocol; the message names the sample and the problem."""


def _fail(sample: Mapping[str, Any], problem: str) -> None:
    raise SampleError(f"sample {sample.get('id', '<no id>')!r}: {problem}")


def validate_sample(sample: Mapping[str, Any], num_classes: int | None = None) -> None:
    """Check one sample against the protocol; raise :class:`SampleError` naming the problem."""
    _check_structure(sample, num_classes)
    _check_values(sample)


def _check_structure(sample: Mapping[str, Any], num_classes: int | None,
                     position: int | None = None) -> None:
    """Keys, types, shapes and dtypes: cheap, per sample (``position``: its index in a batch)."""
    if not isinstance(sample, Mapping):
        where = f"the sample at position {position} of the batch" if position is not None else "the sample"
        hint = (" (did the dataset's __getitem__ forget to return it?)" if sample is None else "")
        raise SampleError(f"{where} is {type(sample).__name__}, not a dict{hint}")
    for key in ("image", "labels"):
        if key not in sample:
            _fail(sample, f"missing key {key!r}")
    image, labels = sample["image"], sample["labels"]
    if not torch.is_tensor(image) or image.ndim != 3 or image.shape[0] != 3:
        _fail(sample, f"'image' must be a float tensor [3, H, W], got {_describe(image)}")
    if not image.is_floating_point():
        _fail(sample, f"'image' must be floating point, got {image.dtype}")
    if not torch.is_tensor(labels) or labels.ndim != 1:
        _fail(sample, f"'labels' must be a multi-hot tensor [C], got {_describe(labels)}")
    if num_classes is not None and labels.shape[0] != num_classes:
        _fail(sample, f"'labels' has {labels.shape[0]} classes, expected {num_classes}")
    height, width = image.shape[-2:]
    mask = sample.get("mask")
    if mask is not None:
        if not torch.is_tensor(mask) or mask.shape != (height, width):
            _fail(sample, f"'mask' must be [H, W] = [{height}, {width}], got {_describe(mask)}")
        if mask.is_floating_point():
            _fail(sample, f"'mask' must hold integer class indices, got {mask.dtype}")
    if sample.get("use_mask", False) and mask is None:
        _fail(sample, "use_mask=True but the sample has no 'mask'")
    boxes = sample.get("boxes")
    if boxes is not None:
        box_labels = sample.get("box_labels")
        if not torch.is_tensor(boxes) or boxes.ndim != 2 or boxes.shape[1] != 4:
            _fail(sample, f"'boxes' must be [N, 4] (x1, y1, x2, y2), got {_describe(boxes)}")
        if box_labels is None or not torch.is_tensor(box_labels) or box_labels.shape != (boxes.shape[0],):
            _fail(sample, "'box_labels' must be a tensor [N] matching 'boxes'")
    saliency = sample.get("saliency")
    if sample.get("use_boxes", False):
        if boxes is None:
            _fail(sample, "use_boxes=True but the sample has no 'boxes'")
        if saliency is None:
            # Without a prior L_bbox (Eq. 9) would pull the map to 0 inside every box.
            _fail(sample, "use_boxes=True but the sample has no 'saliency': L_bbox (Eq. 9) needs a "
                          "saliency prior S inside the boxes; give the sample one, e.g. with "
                          "saliency=gainlib.data.spectral_residual_saliency in the dataset")
    if saliency is not None and (not torch.is_tensor(saliency) or saliency.shape != (height, width)):
        _fail(sample, f"'saliency' must be [H, W] = [{height}, {width}], got {_describe(saliency)}")


def _check_values(sample: Mapping[str, Any]) -> None:
    """Value ranges of a structurally valid sample (collate checks them for a whole batch at once)."""
    image, labels = sample["image"], sample["labels"]
    if _bad_image_values(image):
        _fail(sample, f"'image' {_image_value_problem(image)}")
    if _bad_labels(labels):
        _fail(sample, f"'labels' must be multi-hot (0/1 values), found {_odd_values(labels)}")
    mask = sample.get("mask")
    if mask is not None and _bad_mask(mask, labels.shape[0]):
        _fail(sample, _mask_problem("'mask'", mask, labels.shape[0]))
    saliency = sample.get("saliency")
    if saliency is not None and _bad_saliency(saliency):
        _fail(sample, "'saliency' values must lie in [0, 1] (no NaN)")
    boxes, box_labels = sample.get("boxes"), sample.get("box_labels")
    if boxes is None:
        return
    if box_labels.numel() and (box_labels.min() < 0 or box_labels.max() >= labels.shape[0]):
        _fail(sample, f"'box_labels' must be label indices 0..{labels.shape[0] - 1}")
    height, width = image.shape[-2:]
    for problem, bad in _bad_boxes(boxes.float(), height, width).items():
        if bad.any():
            i = int(bad.nonzero()[0])
            _fail(sample, f"box {i} (x1, y1, x2, y2) = {boxes[i].tolist()} {problem}")
    if sample.get("use_boxes", False):
        missing = _classes_without_box(labels[None].float(), torch.zeros_like(box_labels),
                                       box_labels.long(), torch.ones(1, dtype=torch.bool))[0]
        if missing.any():
            _fail(sample, f"use_boxes=True but positive label(s) {missing.nonzero()[:, 0].tolist()} have "
                          "no box: L_bbox (Eq. 9) would pull their maps to 0 everywhere; add their "
                          "boxes or set use_boxes=False")


def _bad_image_values(image: torch.Tensor) -> bool:
    """NaN, infinite or beyond ``IMAGE_VALUE_LIMIT``: one pass over the image(s)."""
    low, high = torch.aminmax(image)
    return not bool((low >= -IMAGE_VALUE_LIMIT) & (high <= IMAGE_VALUE_LIMIT))   # NaN fails


def _image_value_problem(image: torch.Tensor) -> str:
    if not torch.isfinite(image).all():
        return "holds NaN or infinite values"
    low, high = (float(v) for v in torch.aminmax(image))
    return (f"holds values from {low:g} to {high:g}, beyond ±{IMAGE_VALUE_LIMIT:g}: pixels in "
            "0..255 that were never normalised? Convert them to [0, 1] and normalise them "
            "(e.g. with the ImageNet mean and std, as gainlib.data.build_sample does)")


def _bad_labels(labels: torch.Tensor) -> bool:
    return bool(((labels != 0) & (labels != 1)).any())


def _odd_values(values: torch.Tensor, allowed: Sequence[int] = (0, 1)) -> str:
    """Up to ten of the distinct values of ``values`` not in ``allowed``, for messages."""
    odd = values[~torch.isin(values, torch.tensor(allowed, dtype=values.dtype, device=values.device))]
    return "[" + ", ".join(f"{float(v):g}" for v in odd.unique()[:10].tolist()) + "]"


def _bad_mask(mask: torch.Tensor, num_classes: int) -> bool:
    return bool((((mask < 0) | (mask > num_classes)) & (mask != IGNORE_INDEX)).any())


def _mask_problem(what: str, mask: torch.Tensor, num_classes: int) -> str:
    return (f"{what} values must be 0..{num_classes} or {IGNORE_INDEX} (0 background, c + 1 for "
            f"label index c, {IGNORE_INDEX} ignore), found "
            f"{_odd_values(mask, [*range(num_classes + 1), IGNORE_INDEX])}")


def check_images(images: Any, *, channels: int | None = 3, values: bool = True) -> None:
    """Raise unless ``images`` is a non-empty floating-point tensor ``[B, 3, H, W]``
    (``channels``; ``None``: any) whose values lie within ``±IMAGE_VALUE_LIMIT`` (``values``).
    ``TypeError`` for the type or dtype, ``ValueError`` for the layout, an empty batch or the
    values; the message names what was given and, for a likely mistake (one image without
    its batch dimension, channels last, greyscale, uint8 or 0..255 pixels), the fix."""
    expected = f"a float tensor [B, {channels if channels is not None else 'C'}, H, W]"
    if not torch.is_tensor(images):
        raise TypeError(f"images must be {expected}, got {_describe(images)}")
    shape = list(images.shape)
    if images.ndim != 4:
        hint = (": one image without its batch dimension? Pass images[None]"
                if images.ndim == 3 and images.shape[0] in (1, 3) else "")
        raise ValueError(f"images must be {expected}, got shape {shape}{hint}")
    if channels is not None and images.shape[1] != channels:
        hint = ("; they look channels-last [B, H, W, 3]: pass images.permute(0, 3, 1, 2)"
                if images.shape[-1] == channels else
                "; one channel (greyscale?): pass images.expand(-1, 3, -1, -1)"
                if images.shape[1] == 1 and channels == 3 else "")
        raise ValueError(f"images must be {expected}, got shape {shape} with "
                         f"{images.shape[1]} channels{hint}")
    if not images.is_floating_point():
        raise TypeError(f"images must be {expected} (floating point, normalised), got dtype "
                        f"{images.dtype}" + (": convert to [0, 1] floats and normalise them, e.g. "
                                             "with gainlib.data.build_sample"
                                             if images.dtype == torch.uint8 else ""))
    if images.shape[0] == 0:
        raise ValueError(f"images is an empty batch (shape {shape}): there is nothing to score")
    if values and _bad_image_values(images):
        raise ValueError(f"images {_image_value_problem(images)}")


def check_labels(labels: Any, logits: torch.Tensor | None = None) -> None:
    """Raise unless ``labels`` are multi-hot (0/1) ``[B, C]`` (like ``logits``, when given) of
    a non-empty batch. Wider labels would otherwise surface as an out-of-bounds index deep in
    Eq. 1's ``scatter_`` (a device-side assert on CUDA); soft or count labels as a loss without
    a lower bound, or attention mining silently switched off (a label of 0.3 is no class)."""
    if not torch.is_tensor(labels):
        raise TypeError(f"labels must be a multi-hot tensor [B, C], got {_describe(labels)}")
    if logits is not None and (labels.ndim != 2 or labels.shape != logits.shape):
        if labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1 < logits.shape[1]):
            problem = (f"they look like class indices; give multi-hot labels [B, C], e.g. "
                       f"torch.nn.functional.one_hot(indices.view(-1), {logits.shape[1]}).float()")
        elif labels.ndim == 2 and labels.shape[1] != logits.shape[1]:
            problem = (f"{labels.shape[1]} label classes for a model with {logits.shape[1]} outputs; "
                       "build the model for the dataset's classes")
        else:
            problem = "multi-hot labels [B, C], one row per image, expected"
        raise ValueError(f"labels {list(labels.shape)} do not match the model's logits "
                         f"{list(logits.shape)}: {problem}")
    if labels.ndim != 2:
        raise ValueError(f"labels must be multi-hot [B, C], got shape {list(labels.shape)}")
    if labels.shape[0] == 0:
        raise ValueError(f"labels is an empty batch (shape {list(labels.shape)}): there is "
                         "nothing to score")
    if _bad_labels(labels):
        raise ValueError(f"labels must be multi-hot (0/1 values), found {_odd_values(labels)}: "
                         "counts, soft labels or -1 for 'absent' are not labels of GAIN's losses")


def check_mask(mask: Any, num_classes: int | None = None) -> None:
    """Raise unless ``mask`` is an integer tensor of class ids ``0..num_classes`` or
    ``IGNORE_INDEX`` (``num_classes=None``: ``0..255``, the ids of any class count)."""
    if not torch.is_tensor(mask) or mask.is_floating_point() or mask.dtype == torch.bool:
        raise TypeError(f"mask must be an integer tensor of class ids, got {_describe(mask)}")
    if _bad_mask(mask, IGNORE_INDEX if num_classes is None else num_classes):
        raise ValueError(_mask_problem("mask", mask, IGNORE_INDEX - 1 if num_classes is None
                                       else num_classes))


def _bad_saliency(saliency: torch.Tensor) -> bool:
    return bool(~((saliency >= 0) & (saliency <= 1)).all())       # NaN fails both comparisons


def _bad_boxes(boxes: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    """Per problem, which of ``boxes [N, 4]`` (x1, y1, x2, y2, pixels) have it."""
    finite = torch.isfinite(boxes).all(dim=1)
    return {
        "is not finite": ~finite,
        f"lies outside the {width}x{height} image": finite & (
            (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)),
        "is empty or inverted (x2 <= x1 or y2 <= y1)": finite & (
            (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])),
    }


def _classes_without_box(labels: torch.Tensor, owners: torch.Tensor, box_labels: torch.Tensor,
                         use_boxes: torch.Tensor) -> torch.Tensor:
    """``[B, C]``: positive labels of ``use_boxes`` samples that no box of theirs covers
    (``owners``/``box_labels``: sample and label index of each box, all in range)."""
    batch, num_classes = labels.shape
    boxed = torch.zeros(batch * num_classes, dtype=torch.bool)
    boxed[owners * num_classes + box_labels] = True
    return (labels > 0.5) & ~boxed.view(batch, num_classes) & use_boxes[:, None]


def _describe(value: Any) -> str:
    if torch.is_tensor(value):
        return f"tensor of shape {list(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)) or type(value).__module__ == "numpy":
        return (f"a {type(value).__name__}; convert it with torch.as_tensor(..., dtype=torch.float32) "
                "or build the sample with gainlib.data.build_sample")
    return type(value).__name__


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Validate and batch protocol samples (use as a DataLoader's ``collate_fn``).

    Returns ``image [B,3,H,W]``, ``labels [B,C]``, ``mask [B,H,W]`` (all ``IGNORE_INDEX``
    where a sample has none), ``has_mask [B]``, ``use_mask [B]``, ``use_boxes [B]``,
    ``box_masks [B,C,H,W]`` (1 inside any box of that class, Eq. 9's B^c; zeros where a
    sample has no boxes), ``has_boxes [B]``, ``saliency [B,H,W]`` (zeros where absent),
    ``has_saliency [B]`` and ``id`` (list).
    """
    if len(samples) == 0:
        raise SampleError("cannot collate an empty list of samples")
    num_classes = None
    for i, s in enumerate(samples):  # cheap, and it names the bad sample
        _check_structure(s, num_classes, position=i)
        num_classes = s["labels"].shape[0]          # the first sample's count binds the others
    sizes = {tuple(s["image"].shape) for s in samples}
    if len(sizes) > 1:
        raise SampleError(f"samples {[s.get('id') for s in samples]} have different image sizes "
                          f"{sorted(sizes)}; resize them in the dataset's transform")
    image = torch.stack([s["image"] for s in samples])
    labels = torch.stack([s["labels"].float() for s in samples])
    batch, _, height, width = image.shape
    num_classes = labels.shape[1]
    mask = torch.full((batch, height, width), IGNORE_INDEX, dtype=torch.long)
    saliency = torch.zeros(batch, height, width)
    has = {k: torch.zeros(batch, dtype=torch.bool) for k in ("mask", "boxes", "saliency")}
    owners, boxes, box_labels = [], [], []      # every box of the batch, with its sample
    for i, s in enumerate(samples):
        if s.get("mask") is not None:
            mask[i] = s["mask"].long()
            has["mask"][i] = True
        if s.get("boxes") is not None:
            has["boxes"][i] = True
            owners.append(torch.full((s["boxes"].shape[0],), i, dtype=torch.long))
            boxes.append(s["boxes"].float())
            box_labels.append(s["box_labels"].long())
        if s.get("saliency") is not None:
            saliency[i] = s["saliency"].float()
            has["saliency"][i] = True
    all_labels = torch.cat(box_labels) if box_labels else torch.zeros(0, dtype=torch.long)
    all_owners = torch.cat(owners) if owners else torch.zeros(0, dtype=torch.long)
    all_boxes = torch.cat(boxes) if boxes else torch.zeros(0, 4)
    use_boxes = torch.tensor([bool(s.get("use_boxes", False)) for s in samples])
    # The value checks, once for the batch; only a failing batch is searched for the culprit.
    labels_in_range = not all_labels.numel() or (all_labels.min() >= 0 and all_labels.max() < num_classes)
    if (_bad_image_values(image)
            or _bad_labels(labels)
            or _bad_mask(mask, num_classes)
            or _bad_saliency(saliency)
            or not labels_in_range
            or any(bad.any() for bad in _bad_boxes(all_boxes, height, width).values())
            or _classes_without_box(labels, all_owners, all_labels, use_boxes).any()):
        for s in samples:
            _check_values(s)
        raise AssertionError("a batch failed the value checks that each of its samples passed")
    # B^c of every sample in one product: a box marks slot (sample, class) = owner * C + label.
    box_masks = (boxes_to_masks(all_boxes, all_owners * num_classes + all_labels,
                                batch * num_classes, height, width).view(batch, num_classes, height, width)
                 if boxes else torch.zeros(batch, num_classes, height, width))
    return {
        "image": image,
        "labels": labels,
        "mask": mask,
        "has_mask": has["mask"],
        "use_mask": torch.tensor([bool(s.get("use_mask", False)) for s in samples]),
        "box_masks": box_masks,
        "has_boxes": has["boxes"],
        "use_boxes": use_boxes,
        "saliency": saliency,
        "has_saliency": has["saliency"],
        "id": [str(s.get("id", i)) for i, s in enumerate(samples)],
    }


def boxes_to_masks(boxes: torch.Tensor, box_labels: torch.Tensor, num_classes: int,
                   height: int, width: int) -> torch.Tensor:
    """B^c of Eq. 9: ``[C, H, W]``, 1 inside any box of class ``c`` and 0 elsewhere.

    A pixel ``(y, x)`` (its centre at ``x + 0.5``) is inside ``(x1, y1, x2, y2)`` when
    ``x1 <= x + 0.5 < x2`` and likewise for y.
    """
    if boxes.numel() == 0:
        return torch.zeros(num_classes, height, width)
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    boxes = boxes.float()
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])   # [N, W]
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])   # [N, H]
    inside = (inside_y[:, :, None] & inside_x[:, None, :]).float()              # [N, H, W]
    per_class = torch.nn.functional.one_hot(box_labels.long(), num_classes).t().float()  # [C, N]
    return (per_class @ inside.flatten(1)).clamp(max=1).view(num_classes, height, width)


def denormalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Undo the dataset normalisation for display: ``[..., 3, H, W]`` -> values in [0, 1]."""
    mean_t = torch.tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std_t + mean_t).clamp(0, 1)
