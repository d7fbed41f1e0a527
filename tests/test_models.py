"""Tests for gainlib.models: presets, target layers, weight loading (never online)."""

from __future__ import annotations

import functools
import os
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from gainlib.models import (
    HEAD_LAYERS,
    TARGET_LAYERS,
    SmallCNN,
    build_classifier,
    resolve_layer,
    select_device,
)

NUM_CLASSES = 5
RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1 file


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Every test runs with an empty hub dir and a download function that fails."""

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"network disabled in tests ({url})")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)  # let TORCH_HOME decide
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    yield


@functools.lru_cache(maxsize=None)
def _built(name: str) -> tuple[nn.Module, str]:
    # Building vgg16/densenet161 takes seconds (random init): build each preset once.
    torch.manual_seed(0)
    return build_classifier(name, NUM_CLASSES)


def _capture(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}
    handle = resolve_layer(model, layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, store["a"]


@pytest.mark.parametrize("name", sorted(TARGET_LAYERS))
def test_preset_builds_with_output_size_and_4d_target(name):
    model, layer = _built(name)
    assert layer == TARGET_LAYERS[name]
    assert resolve_layer(model, HEAD_LAYERS[name]).out_features == NUM_CLASSES
    model.eval()
    # With a module backward hook registered, an in-place op on the target's output
    # would already fail in the forward pass.
    bh = resolve_layer(model, layer).register_full_backward_hook(lambda m, gi, go: None)
    try:
        logits, act = _capture(model, layer, torch.randn(1, 3, 64, 64))
    finally:
        bh.remove()
    assert logits.shape == (1, NUM_CLASSES)
    assert act.dim() == 4 and act.shape[0] == 1 and min(act.shape[2:]) >= 1


# One representative per family (VGG's target ReLU, ResNet's stage, DenseNet's patched
# forward, SmallCNN): the heavier presets share the code path.
@pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")
@pytest.mark.parametrize("name", ["vgg11", "resnet18", "densenet121", "small_cnn"])
def test_target_layer_supports_trainable_gradcam(name):
    model, layer = _built(name)
    model.train()
    x = torch.randn(2, 3, 32, 32)  # small on purpose: target maps of 1-4 px are enough here
    grads: dict[str, torch.Tensor] = {}
    bh = resolve_layer(model, layer).register_full_backward_hook(lambda m, gi, go: grads.__setitem__("g", go[0]))
    try:
        logits, act = _capture(model, layer, x)
        # GAIN's trainable Grad-CAM: gradient with create_graph, then backprop through
        # the map down to the first layer (only that weight's gradient is requested,
        # which keeps VGG's 100M-parameter classifier out of the test's runtime).
        (g,) = torch.autograd.grad(logits[:, 0].sum(), act, create_graph=True)
        cam = torch.relu((g.mean((2, 3), keepdim=True) * act).sum(1))
        first = next(model.parameters())
        (g_first,) = torch.autograd.grad(cam.mean() + logits.sum(), first)
    finally:
        bh.remove()
    assert g.shape == act.shape
    assert "g" in grads and grads["g"].shape == act.shape
    assert torch.isfinite(g_first).all() and g_first.abs().sum() > 0


def test_vgg_target_layers_are_the_last_conv_relus():
    for name, idx in [("vgg16", 29), ("vgg11", 19)]:
        model, layer = _built(name)
        feats = model.features
        assert layer == f"features.{idx}"
        assert isinstance(feats[idx], nn.ReLU) and isinstance(feats[idx - 1], nn.Conv2d)
        assert not any(isinstance(m, nn.Conv2d) for m in feats[idx + 1 :])
        assert feats[idx].inplace is False  # made safe for module backward hooks


def test_densenet_forward_matches_torchvision():
    model, _ = _built("densenet121")
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)
        stock = torchvision.models.DenseNet.forward(model, x)  # relu(relu(.)) == relu(.)
        act = model.features(x)
    torch.testing.assert_close(ours, stock)
    assert (act >= 0).all()  # target activation is post-ReLU, like VGG/ResNet


def test_small_densenet_is_torchvisions_densenet_at_stride_16():
    model, layer = _built("densenet_small")
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, act = _capture(model, layer, x)
        torch.testing.assert_close(logits, torchvision.models.DenseNet.forward(model, x))
    assert act.shape[2:] == (4, 4) and (act >= 0).all()
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_small_cnn_target_is_8x8_at_64px_and_stride_follows_widths():
    model, layer = _built("small_cnn")
    model.eval()
    with torch.no_grad():
        logits, act = _capture(model, layer, torch.randn(3, 3, 64, 64))
        assert act.shape == (3, 128, 8, 8) and logits.shape == (3, NUM_CLASSES)
        _, act96 = _capture(model, layer, torch.randn(1, 3, 96, 96))
        assert act96.shape[2:] == (12, 12)
    small = SmallCNN(3, widths=(8, 16), hidden=16, in_channels=1)
    assert small.stride == 2
    assert small.features(torch.randn(1, 1, 64, 64)).shape == (1, 16, 32, 32)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in small.classifier.modules())


def test_small_cnn_head_does_not_mix_images():
    # Batched Grad-CAM sums scores over the batch: the gradient w.r.t. A[b] must be
    # the per-image gradient, even in train mode.
    torch.manual_seed(0)
    model = SmallCNN(4, widths=(8, 16, 16, 16), hidden=16).train()
    act = model.features(torch.randn(3, 3, 32, 32)).detach().requires_grad_(True)
    (g_batch,) = torch.autograd.grad(model.classifier(act)[:, 1].sum(), act)
    for b in range(3):
        a_b = act[b : b + 1].detach().requires_grad_(True)
        (g_b,) = torch.autograd.grad(model.classifier(a_b)[:, 1].sum(), a_b)
        torch.testing.assert_close(g_batch[b : b + 1], g_b)


def test_fc_head_gives_the_gradcam_weights_a_gradient_that_varies_by_position():
    # Eq. 1: w^c = GAP(ds^c / df). After global pooling ds^c/df is the same at every position;
    # the "fc" head (a 6x6 grid, flattened) has its own weights per cell, so it is not, and
    # the second-order term of the map reaches the per-cell weights of the hidden Linear.
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48, 48)
    for head, varies in (("gap", False), ("fc", True)):
        model, layer = build_classifier("small_cnn" if head == "gap" else "small_cnn_fc", 3,
                                        widths=(4, 8), hidden=8)
        assert model.head == head and layer == "features"
        logits, act = _capture(model, layer, x)
        (g,) = torch.autograd.grad(logits[:, 0].sum(), act, create_graph=True)
        spread = (g - g.mean((2, 3), keepdim=True)).abs().amax()
        assert (spread > 1e-6) == varies, head
    hidden = model.classifier[2]
    assert hidden.in_features == 8 * 6 * 6 and HEAD_LAYERS["small_cnn_fc"] == "classifier.4"
    cam = torch.relu((g.mean((2, 3), keepdim=True) * act).sum(1))
    (g_hidden,) = torch.autograd.grad(cam.sum(), hidden.weight)
    assert g_hidden.abs().sum() > 0
    with pytest.raises(ValueError, match="head must be 'gap' or 'fc', got 'mlp'"):
        SmallCNN(3, head="mlp")


def test_unknown_model_and_layer_errors():
    with pytest.raises(ValueError, match="unknown model 'vgg19'.*known models:.*small_cnn.*vgg16"):
        build_classifier("vgg19", 3)
    model, _ = _built("resnet18")
    with pytest.raises(ValueError, match=r"layer 'layer5' not found.*'layer4'"):
        resolve_layer(model, "layer5")
    with pytest.raises(ValueError, match=r"'features\.31' not found.*'features\.3"):
        resolve_layer(_built("vgg16")[0], "features.31")
    with pytest.raises(ValueError, match="not found"):
        resolve_layer(model, "completely_unrelated_xyz")
    assert resolve_layer(model, "") is model


def test_resolve_layer_sees_through_ddp_style_wrappers():
    inner = SmallCNN(2, widths=(4, 4), hidden=4)

    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    wrapped = Wrapper(inner)
    assert resolve_layer(wrapped, "features") is inner.features
    assert resolve_layer(wrapped, "module.features") is inner.features


def test_bad_weights_arguments():
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        build_classifier("resnet18", 3, weights="IMAGENET9K")
    with pytest.raises(ValueError, match="small_cnn has no pretrained weights"):
        build_classifier("small_cnn", 3, weights="DEFAULT")
    with pytest.raises(FileNotFoundError):
        build_classifier("small_cnn", 3, weights="/nonexistent/dir/model.pth")
    with pytest.raises(ValueError, match="densenet_small has no pretrained weights"):
        build_classifier("densenet_small", 3, weights="DEFAULT")


@pytest.mark.parametrize(
    "weights",
    ["DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1", torchvision.models.ResNet18_Weights.IMAGENET1K_V1],
)
def test_offline_download_gives_clear_runtime_error(weights):
    ckpt_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    with pytest.raises(RuntimeError) as info:
        build_classifier("resnet18", 3, weights=weights, progress=False)
    msg = str(info.value)
    assert RESNET18_FILE in msg
    assert ckpt_dir in msg and "TORCH_HOME" in msg and "weights=None" in msg
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert "network disabled in tests" in msg  # the fixture's fake download was hit


def test_offline_error_when_load_state_dict_from_url_itself_fails(monkeypatch):
    def fail(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    with pytest.raises(RuntimeError, match="densenet121-a639ec97.pth"):
        build_classifier("densenet121", 3, weights="DEFAULT")


def test_default_weights_load_from_hub_cache_without_network():
    # A file already in $TORCH_HOME/hub/checkpoints is used, no download attempted.
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()  # 1000-way head, like the real file
    ckpt_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(ckpt_dir)
    torch.save(reference.state_dict(), os.path.join(ckpt_dir, RESNET18_FILE))

    model, layer = build_classifier("resnet18", 3, weights="DEFAULT", progress=False)
    assert layer == "layer4"
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight)
    assert model.fc.out_features == 3

    model1000, _ = build_classifier("resnet18", 1000, weights="IMAGENET1K_V1")
    torch.testing.assert_close(model1000.fc.weight, reference.fc.weight)  # ImageNet head kept


def test_local_state_dict_paths(tmp_path):
    torch.manual_seed(2)
    trained = SmallCNN(NUM_CLASSES)
    path = tmp_path / "small.pth"
    torch.save(trained.state_dict(), path)

    same, _ = build_classifier("small_cnn", NUM_CLASSES, weights=str(path))
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(same.state_dict()[k], v)

    # Different class count: backbone loaded, fresh head of the requested size.
    other, _ = build_classifier("small_cnn", 3, weights=path)
    torch.testing.assert_close(other.features[0].weight, trained.features[0].weight)
    assert other.classifier[4].out_features == 3

    # ImageNet-style torchvision checkpoint wrapped by a trainer, with DDP prefixes.
    ref = torchvision.models.resnet18()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}
    torch.save(wrapped, tmp_path / "resnet18_imagenet.pt")
    model, _ = build_classifier("resnet18", 7, weights=tmp_path / "resnet18_imagenet.pt")
    torch.testing.assert_close(model.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert model.fc.out_features == 7


def test_select_device(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device() == torch.device("cpu")
    assert select_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")
