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
* :class:`SmallCNN` uses no in-place operations at all.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import DenseNet, get_model, get_model_weights, get_weight

__all__ = [
    "TARGET_LAYERS",
    "HEAD_LAYERS",
    "SmallCNN",
    "SMALL_DENSENET",
    "build_classifier",
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
}

#: ``densenet_small``: torchvision's DenseNet with three dense blocks of four layers and growth
#: rate 12 (DenseNet-BC's design, about 0.1 M parameters instead of DenseNet-121's 7 M): the
#: book's CPU stand-in for the DenseNet of the paper's Table 8. Random init only.
SMALL_DENSENET: dict[str, Any] = {"growth_rate": 12, "block_config": (4, 4, 4),
                                  "num_init_features": 24, "bn_size": 4}

# Path-like suffixes for `weights=`; anything else is treated as a weight-enum name.
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class SmallCNN(nn.Module):
    """A small CNN for the CPU benchmark (64-96 px images, trains in minutes on 2 cores).

    ``features`` is ``len(widths)`` blocks of ``conv3x3 -> BatchNorm -> ReLU`` with a
    2x2 max-pool between consecutive blocks, so its stride is ``2 ** (len(widths) - 1)``
    (8 by default: a 64 px input gives an 8x8 Grad-CAM map).  ``classifier`` is global
    average pooling followed by ``Linear -> ReLU -> Linear``.

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
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(widths) < 1:
            raise ValueError("widths must contain at least one block width")
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
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(c_in, hidden),
            nn.ReLU(inplace=False),
            nn.Linear(hidden, num_classes),
        )
        self.num_classes = num_classes
        self.stride = 2 ** (len(widths) - 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C, H, W]`` -> logits ``[B, num_classes]``."""
        return self.classifier(self.features(x))


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
    **kwargs: Any,
) -> tuple[nn.Module, str]:
    """Build a backbone with a ``num_classes``-way head and return its Grad-CAM layer.

    Args:
        name: one of :data:`TARGET_LAYERS` (``vgg16``, ``vgg11``, ``resnet18/50/101``,
            ``densenet121/161``, ``densenet_small``, ``small_cnn``).
        num_classes: number of output logits.
        weights: ``None`` (random init, the default: nothing is downloaded);
            ``"DEFAULT"`` or a torchvision weight-enum name (``"IMAGENET1K_V1"``,
            ``"VGG16_Weights.IMAGENET1K_V1"``) or enum member for ImageNet weights,
            read from ``torch.hub.get_dir()/checkpoints`` or downloaded there; or a
            path to a local state dict (``os.PathLike``, or a string ending in
            ``.pth``/``.pt``/``.ckpt``/``.bin`` or containing a ``/``; an ImageNet one with a
            1000-way head or a saved model with any head size; ``{"state_dict": ...}``
            wrappers and ``module.`` prefixes are accepted).  ``small_cnn`` and
            ``densenet_small`` only accept ``None`` or a path.
        **kwargs: passed to the torchvision builder (e.g. ``dropout`` for VGG,
            ``memory_efficient`` for DenseNet) or to :class:`SmallCNN` (``widths``,
            ``hidden``, ``in_channels``); ``progress`` (bool) controls the download bar.

    Returns:
        ``(model, target_layer)``: ``model(x [B, 3, H, W]) -> [B, num_classes]`` and
        the dotted name of the Grad-CAM target layer, whose output is a 4-D map
        ``[B, C, h, w]`` (use :func:`resolve_layer` to get the module).  The head is
        a fresh ``nn.Linear`` unless the loaded weights already have ``num_classes``
        outputs (e.g. ``num_classes=1000`` keeps the ImageNet classifier).

    Raises:
        ValueError: unknown model name or weight name.
        FileNotFoundError: ``weights`` looks like a path that does not exist.
        RuntimeError: the ImageNet weights are not cached and cannot be downloaded
            (offline); the message names the file and where to put it.
    """
    if name not in TARGET_LAYERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(TARGET_LAYERS))}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    progress = bool(kwargs.pop("progress", True))
    head = HEAD_LAYERS[name]

    # 1. Architecture with its original head (1000-way for torchvision models) so that
    #    ImageNet state dicts load strictly.
    if name == "small_cnn":
        model: nn.Module = SmallCNN(num_classes, **kwargs)
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
            if not path.is_file():
                raise FileNotFoundError(f"weights file not found: {path}")
            state = _clean_state_dict(torch.load(path, map_location="cpu", weights_only=True), name)
            head_w = state.get(f"{head}.weight")
            if head_w is not None and head_w.shape[0] != _head_out_features(model, head):
                _replace_head(model, head, head_w.shape[0])  # saved model with its own head
            model.load_state_dict(state)
        elif name in ("small_cnn", "densenet_small"):
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
