"""Segmentation networks: :class:`SmallFCN` (the CPU-sized stand-in), :class:`DeepLabLargeFOV`
(SEC's network, the paper's GAIN-SEC rows) and :func:`deeplabv3_resnet101` (the paper's own
framework, Sec. 4.1) with :class:`LogitsOnly`; :func:`output_size`, the size of a network's
logits, where its cues and losses live.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gainlib.models import eval_mode

__all__ = ["SmallFCN", "DeepLabLargeFOV", "LogitsOnly", "deeplabv3_resnet101", "output_size"]


def _conv_block(c_in: int, c_out: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallFCN(nn.Module):
    """A small fully convolutional segmentation network for the CPU.

    One conv-BN-ReLU at full and one at half resolution, each followed by a 2x2 max-pool, then
    a pair of dilated 3x3 convolutions (dilation 2, DeepLab's way of widening the field of
    view without a further stride) and a 1x1 classifier: logits at 1/4 of the input
    (:attr:`output_stride`), bilinearly upsampled to the input unless ``upsample=False`` (the
    losses of Eq. 11-12 and SEC are computed at the low output resolution, as DeepLab's).
    One convolution per resolution keeps a training epoch on 1,500 images of 64 px near the
    cost of the book's classifier (two per stage cost four times as much on 2 CPU cores).

    Args:
        num_classes: output channels, ``C + 1`` with the background.
        widths: channels of the three stages.
        dilation: dilation of the last stage.
        upsample: return logits at the input size.

    Shapes:
        ``[B, 3, H, W]`` -> ``[B, num_classes, H, W]``, or ``[B, num_classes, H // 4, W // 4]``
        with ``upsample=False``.
    """

    output_stride = 4

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (16, 32, 64),
                 dilation: int = 2, upsample: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            *_conv_block(3, w1), nn.MaxPool2d(2),
            *_conv_block(w1, w2), nn.MaxPool2d(2),
            *_conv_block(w2, w3, dilation), *_conv_block(w3, w3, dilation))
        self.classifier = nn.Conv2d(w3, num_classes, 1)
        self.num_classes = num_classes
        self.upsample = upsample
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.classifier:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> logits ``[B, num_classes, H, W]`` (or at 1/4)."""
        logits = self.classifier(self.features(x))
        if self.upsample:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


class DeepLabLargeFOV(nn.Module):
    """DeepLab-LargeFOV on VGG16 (Chen et al., ICLR 2015), the network of SEC and of the paper's
    GAIN-SEC rows (Sec. 4.1): 321x321 inputs give 41x41 logits (output stride 8).

    torchvision's VGG16 ``features`` with pool4 and pool5 turned into 3x3 stride-1 pools and the
    conv5 block dilated by 2, then ``fc6`` as a 3x3 convolution with dilation 12 and 1,024
    channels, ``fc7`` a 1x1 convolution with 1,024, dropout after each, and ``fc8`` the 1x1
    classifier. ``weights`` (e.g. ``"IMAGENET1K_V1"``) load ImageNet weights into the
    convolutions of ``features`` only — nothing is downloaded unless asked for.

    Shapes:
        ``[B, 3, H, W]`` -> ``[B, num_classes, ceil(H / 8), ceil(W / 8)]`` (or ``[.., H, W]``
        with ``upsample=True``).
    """

    output_stride = 8

    def __init__(self, num_classes: int = 21, weights: Any = None, upsample: bool = False,
                 progress: bool = True) -> None:
        super().__init__()
        from torchvision.models import vgg16

        features = vgg16(weights=weights, progress=progress).features
        layers: list[nn.Module] = []
        pools = 0
        for layer in features:
            if isinstance(layer, nn.MaxPool2d):
                pools += 1
                # pool1-3 halve with ceil mode (321 -> 161 -> 81 -> 41); pool4-5 keep the size.
                layer = (nn.MaxPool2d(3, stride=2, padding=1) if pools <= 3
                         else nn.MaxPool2d(3, stride=1, padding=1))
            elif isinstance(layer, nn.Conv2d) and pools == 4:
                layer.dilation, layer.padding = (2, 2), (2, 2)
            layers.append(layer)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Conv2d(512, 1024, 3, padding=12, dilation=12), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5))
        self.classifier = nn.Conv2d(1024, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> logits at 1/8 (or at the input size with ``upsample``)."""
        logits = self.classifier(self.head(self.features(x)))
        if self.upsample:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


class LogitsOnly(nn.Module):
    """Wrap a torchvision segmentation model so that ``forward`` returns its ``"out"`` logits
    ``[B, num_classes, H, W]`` (like :class:`SmallFCN`) instead of a dict. The wrapped model is
    :attr:`model`; its auxiliary head, if any, stays reachable there."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> ``[B, num_classes, H, W]``."""
        return self.model(x)["out"]


def deeplabv3_resnet101(
    num_classes: int = 21,
    weights: Any = None,
    weights_backbone: Any = None,
    aux_loss: bool = False,
    progress: bool = True,
) -> LogitsOnly:
    """torchvision's DeepLabv3-ResNet101 for the paper's scale (Sec. 4.1: DeepLab initialised
    from ImageNet ResNet-101, 321x321 inputs), returning logits (:class:`LogitsOnly`).

    Nothing is downloaded unless asked for: ``weights`` and ``weights_backbone`` default to None
    (random initialisation), whereas torchvision's own builder fetches ImageNet backbone weights
    by default. For the paper's setting pass ``weights_backbone="IMAGENET1K_V1"`` (or a
    ``ResNet101_Weights``). With full ``weights`` (e.g. ``"DEFAULT"``, trained on 21 VOC classes)
    and ``num_classes != 21``, the last 1x1 convolution of each head is replaced by a freshly
    initialised one.

    Args:
        num_classes: output channels, ``C + 1`` with the background (21 for VOC).
        weights, weights_backbone: torchvision weight enums or their names, or None.
        aux_loss: keep the auxiliary FCN head on ``layer3`` (its logits are in
            ``model.model(x)["aux"]``).

    Returns:
        A module mapping ``[B, 3, H, W]`` to ``[B, num_classes, H, W]``.
    """
    from torchvision.models.segmentation import deeplabv3_resnet101 as build

    if weights is None:
        model = build(weights=None, weights_backbone=weights_backbone, num_classes=num_classes,
                      aux_loss=aux_loss, progress=progress)
    else:
        model = build(weights=weights, progress=progress)
        if num_classes != model.classifier[-1].out_channels:
            model.classifier[-1] = nn.Conv2d(model.classifier[-1].in_channels, num_classes, 1)
            if model.aux_classifier is not None:
                model.aux_classifier[-1] = nn.Conv2d(model.aux_classifier[-1].in_channels, num_classes, 1)
        if not aux_loss:
            model.aux_classifier = None
    return LogitsOnly(model)


@torch.no_grad()
def output_size(network: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    """The spatial size of ``network``'s logits for images of ``image_size``: where its cues
    and losses live."""
    with eval_mode(network):
        probe = next(network.parameters())
        return tuple(network(torch.zeros(1, 3, *image_size, device=probe.device)).shape[-2:])
