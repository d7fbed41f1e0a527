"""Weakly supervised segmentation from GAIN's attention (paper Sec. 4, Eq. 11-12) and SEC.

The paper evaluates its attention maps by what a segmentation network trained on them can do.
Each step has its submodule; every name below is also importable from ``gainlib.segmentation``.

1. **Localization cues** (Sec. 4), :mod:`gainlib.segmentation.cues`: for each ground-truth class
   ``c`` the pixels whose attention exceeds 20 percent of the map's maximum are a foreground cue
   ``l^c_x = 1``; background cues come from a saliency network (DHSNet [30] in the paper).
   :func:`~gainlib.segmentation.cues.localization_cues`,
   :func:`~gainlib.segmentation.cues.cues_from_model`, and over a whole dataset
   :func:`~gainlib.segmentation.cues.attention_cues` (the cues of a trained attention model).
2. **SEC** (Kolesnikov & Lampert, "Seed, Expand and Constrain", ECCV 2016), the framework of the
   paper's GAIN-SEC rows, :mod:`gainlib.segmentation.sec`:
   :func:`~gainlib.segmentation.sec.seeding_loss`,
   :func:`~gainlib.segmentation.sec.expansion_loss` (with
   :func:`~gainlib.segmentation.sec.global_weighted_rank_pooling`),
   :func:`~gainlib.segmentation.sec.constrain_loss` on a fully connected CRF, and their sum
   :func:`~gainlib.segmentation.sec.sec_loss`.
3. **The dense CRF**, :mod:`gainlib.segmentation.crf`:
   :func:`~gainlib.segmentation.crf.dense_crf`, :func:`~gainlib.segmentation.crf.crf_refine`,
   for SEC's constrain loss and for post-processing predictions.
4. **Networks**, :mod:`gainlib.segmentation.networks`: the paper's own framework (Fig. 4,
   Eq. 11-12) uses the cues with :func:`gainlib.losses.segmentation_loss` and
   :func:`gainlib.losses.weakly_supervised_segmentation_loss` on a DeepLab network
   (:func:`~gainlib.segmentation.networks.deeplabv3_resnet101`); SEC's is
   :class:`~gainlib.segmentation.networks.DeepLabLargeFOV`;
   :class:`~gainlib.segmentation.networks.SmallFCN` is the CPU-sized stand-in.
5. **Evaluation**, :mod:`gainlib.segmentation.evaluation`:
   :func:`~gainlib.segmentation.evaluation.predict_segmentation` (with or without the CRF),
   :func:`~gainlib.segmentation.evaluation.segmentation_scores` (IoU per class and mIoU, the
   layout of the paper's Table 2), :func:`~gainlib.segmentation.evaluation.cue_quality`; and
   :func:`~gainlib.segmentation.evaluation.segmentation_miou` for label tensors (mIoU over VOC's
   21 classes, ignore 255).
6. **Training**, :mod:`gainlib.segmentation.training`:
   :class:`~gainlib.segmentation.training.SegmentationTrainer` trains a network with the loss of
   Eq. 11-12, SEC's, or supervised cross entropy, through :class:`gainlib.trainer.Trainer`
   (checkpoints, exact resume, the non-finite guard), configured by
   :class:`~gainlib.segmentation.training.SegmentationConfig`.

Shapes: ``B`` images, ``C`` object classes (label indices ``0..C-1``), ``C + 1`` segmentation
channels with channel 0 the background and channel ``c + 1`` the label index ``c`` (the VOC mask
convention of :mod:`gainlib.data.protocol`), ``K`` attention slots per image
(:func:`gainlib.attention.positive_classes`).

Choices where the papers leave room (each documented again where it is made):

* **Background cue rule.** The paper applies DHSNet "several times" without giving a threshold.
  Here a pixel is a background cue where the saliency prior ``S`` is *below* ``bg_threshold``
  (0.1 by default) and no foreground cue claims it. Any prior of
  :mod:`gainlib.data.saliency` plugs in; with no prior, ``S`` is the largest normalised
  attention of the image's classes, so pixels that no class attends to are background.
* **Seeding normalisation.** :func:`gainlib.losses.segmentation_loss` divides by the cues of the
  whole batch; SEC divides by each image's cues and averages images.
  :func:`~gainlib.segmentation.sec.seeding_loss` does either (``per_image``);
  :func:`~gainlib.segmentation.sec.sec_loss` follows SEC.
* **Expansion for absent classes.** SEC's paper and released code pool the classes absent from
  the image with ``d- = 0``, i.e. global *max* pooling (any confident pixel of an absent class
  is penalised); ``d_neg`` changes it.
* **Probability floors.** SEC adds 1e-4 to its softmax; here the logarithms are computed from
  logits (``log_softmax``), and only the GWRP values are clamped away from 0 and 1.
"""

from gainlib.segmentation.crf import Refiner, crf_refine, dense_crf
from gainlib.segmentation.cues import (
    BG_THRESHOLD,
    FG_THRESHOLD,
    attention_cues,
    cues_from_model,
    localization_cues,
    to_uint8_images,
)
from gainlib.segmentation.evaluation import (
    cue_quality,
    predict_segmentation,
    segmentation_miou,
    segmentation_scores,
)
from gainlib.segmentation.networks import (
    DeepLabLargeFOV,
    LogitsOnly,
    SmallFCN,
    deeplabv3_resnet101,
    output_size,
)
from gainlib.segmentation.sec import (
    SEC_CRF_SCALE,
    SEC_D_BG,
    SEC_D_FG,
    SEC_D_NEG,
    SECLosses,
    constrain_loss,
    constrain_targets,
    expansion_loss,
    global_weighted_rank_pooling,
    sec_loss,
    sec_refiner,
    seeding_loss,
)
from gainlib.segmentation.training import SegmentationConfig, SegmentationLoss, SegmentationTrainer

__all__ = [
    "FG_THRESHOLD",
    "BG_THRESHOLD",
    "SEC_D_FG",
    "SEC_D_BG",
    "SEC_D_NEG",
    "SEC_CRF_SCALE",
    "localization_cues",
    "cues_from_model",
    "to_uint8_images",
    "seeding_loss",
    "global_weighted_rank_pooling",
    "expansion_loss",
    "dense_crf",
    "crf_refine",
    "constrain_targets",
    "constrain_loss",
    "SECLosses",
    "sec_loss",
    "SmallFCN",
    "DeepLabLargeFOV",
    "LogitsOnly",
    "deeplabv3_resnet101",
    "segmentation_miou",
    "attention_cues",
    "output_size",
    "predict_segmentation",
    "segmentation_scores",
    "cue_quality",
    "SegmentationConfig",
    "SegmentationTrainer",
    "sec_refiner",
    "Refiner",
    "SegmentationLoss",
]
