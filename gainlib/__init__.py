"""gainlib: the Guided Attention Inference Network (GAIN) in PyTorch.

One module per concept of the paper (Li et al., CVPR 2018 / TPAMI 2019):
:mod:`~gainlib.attention` (Eq. 1-2), :mod:`~gainlib.masking` (Eq. 3-4),
:mod:`~gainlib.losses` (Eq. 5-12), :mod:`~gainlib.gain` (the streams S_cl, S_am, S_e),
:mod:`~gainlib.trainer`, :mod:`~gainlib.models`, :mod:`~gainlib.metrics` and
:mod:`~gainlib.data`.

Train GAIN on any dataset that follows :mod:`gainlib.data.protocol`::

    model = gainlib.GAIN.from_name("small_cnn", num_classes=4, seed=0)
    trainer = gainlib.GainTrainer(model, gainlib.TrainConfig(mode="gain", epochs=10, seed=0))
    history = trainer.fit(train_set, val_set)
"""

__version__ = "0.1.0"

from gainlib.attention import AttentionMaps, GradCAM, attention_from_features, normalize_maps, positive_classes
from gainlib.gain import GAIN, GainConfig
from gainlib.losses import (
    attention_mining_loss,
    bbox_attention_loss,
    class_targets_from_mask,
    classification_loss,
    extra_supervision_loss,
    pixel_attention_loss,
    segmentation_loss,
    self_guidance_loss,
    weakly_supervised_segmentation_loss,
)
from gainlib.masking import masked_image, soft_mask
from gainlib.metrics import (
    ConfusionMatrix,
    attention_coverage,
    attention_iou,
    attention_precision,
    attention_scores,
    mean_average_precision,
    multilabel_accuracy,
)
from gainlib.models import TARGET_LAYERS, SmallCNN, build_classifier, eval_mode, select_device
from gainlib.trainer import GainTrainer, NonFiniteLossError, TrainConfig, evaluate

__all__ = [
    "AttentionMaps", "GradCAM", "attention_from_features", "normalize_maps", "positive_classes",
    "GAIN", "GainConfig",
    "attention_mining_loss", "bbox_attention_loss", "class_targets_from_mask", "classification_loss",
    "extra_supervision_loss", "pixel_attention_loss", "segmentation_loss", "self_guidance_loss",
    "weakly_supervised_segmentation_loss",
    "masked_image", "soft_mask",
    "ConfusionMatrix", "attention_coverage", "attention_iou", "attention_precision", "attention_scores", "mean_average_precision",
    "multilabel_accuracy",
    "TARGET_LAYERS", "SmallCNN", "build_classifier", "eval_mode", "select_device",
    "GainTrainer", "NonFiniteLossError", "TrainConfig", "evaluate",
]
