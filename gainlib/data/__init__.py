"""Datasets that follow gainlib's sample protocol (see :mod:`gainlib.data.protocol`).

* :mod:`gainlib.data.synthetic` -- the synthetic GAIN benchmark (:class:`SyntheticScenes`,
  :class:`SyntheticOrientation`, :func:`synthetic_splits`), generated on the fly.
* :mod:`gainlib.data.decoy` -- :class:`DecoyShapes`, a DecoyMNIST-style shortcut: the positive control.
* :mod:`gainlib.data.context_family` -- :class:`ContextScenes`, Biased Boat scenes whose bias
  mechanism is a parameter (:class:`BiasScenario`).
* :mod:`gainlib.data.voc` -- PASCAL VOC 2012 + SBD, or any set in VOC layout (:class:`VOCDataset`).
* :mod:`gainlib.data.saliency` -- saliency priors for L_bbox (Eq. 9).
* :func:`iter_batches` -- a dataset (or some of its samples) in collated batches.
* :mod:`gainlib.data.extra_labels` -- :func:`mark_extra_labels` picks the samples whose mask or
  boxes feed the extra-supervision streams.
"""

from gainlib.data.batching import iter_batches
from gainlib.data.context_family import CONTEXT_SPLITS, BiasScenario, ContextScenes
from gainlib.data.decoy import DECOY_SPLITS, DecoyShapes
from gainlib.data.extra_labels import mark_extra_labels, pick_subset
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
from gainlib.data.saliency import SaliencyPrior, per_image, spectral_residual_saliency, uniform_saliency
from gainlib.data.sample import build_sample
from gainlib.data.synthetic import (
    ORIENTATION_SPLITS,
    SCENE_SPLITS,
    SyntheticOrientation,
    SyntheticScenes,
    synthetic_splits,
)
from gainlib.data.transforms import AlignedResize
from gainlib.data.voc import VOCDataset, voc_transforms
from gainlib.data.voc_layout import VOC_CLASSES, DataFileError, read_id_list, write_id_list

__all__ = [
    "iter_batches",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SampleError",
    "boxes_to_masks",
    "collate_samples",
    "denormalize",
    "validate_sample",
    # synthetic benchmark
    "SCENE_SPLITS",
    "ORIENTATION_SPLITS",
    "SyntheticScenes",
    "SyntheticOrientation",
    "synthetic_splits",
    "DECOY_SPLITS",
    "DecoyShapes",
    "CONTEXT_SPLITS",
    "BiasScenario",
    "ContextScenes",
    # VOC
    "VOC_CLASSES",
    "VOCDataset",
    "voc_transforms",
    "AlignedResize",
    "DataFileError",
    "read_id_list",
    "write_id_list",
    # saliency priors, extra labels, sample building
    "SaliencyPrior",
    "spectral_residual_saliency",
    "uniform_saliency",
    "per_image",
    "mark_extra_labels",
    "pick_subset",
    "build_sample",
]
