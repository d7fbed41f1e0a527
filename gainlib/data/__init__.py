"""Datasets that follow gainlib's sample protocol (see :mod:`gainlib.data.protocol`)."""

from gainlib.data.protocol import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SampleError,
    boxes_to_masks,
    collate_samples,
    denormalize,
    validate_sample,
)

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SampleError",
    "boxes_to_masks",
    "collate_samples",
    "denormalize",
    "validate_sample",
]
