"""Grad-CAM attention (Eq. 1-2): equations, batching, the grad-cam package, bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from tiny import FlattenHeadNet, TinyNet

from gainlib.attention import GradCAM, attention_from_features, normalize_maps, positive_classes


def test_positive_classes_pads_and_handles_images_without_classes():
    labels = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0.]])
    classes, valid = positive_classes(labels)
    assert classes.tolist() == [[1, 3], [0, 0], [0, 0]]
    assert valid.tolist() == [[True, True], [False, False], [True, False]]
    classes, valid = positive_classes(torch.zeros(2, 5))
    assert classes.shape == (2, 0) and valid.shape == (2, 0)


def _loop_reference(model, layer, images, labels, normalization="max"):
    """Eq. 1-2 image by image, class by class, written out directly."""
    maps = []
    for b in range(len(images)):
        store = {}
        handle = layer.register_forward_hook(lambda m, i, o: store.update(f=o))
        logits = model(images[b:b + 1])
        handle.remove()
        per_class = []
        for c in torch.nonzero(labels[b]).flatten().tolist():
            (grad,) = torch.autograd.grad(logits[0, c], store["f"], retain_graph=True)
            weights = grad.mean(dim=(2, 3))                                 # Eq. 1
            cam = F.relu((weights[:, :, None, None] * store["f"]).sum(1))   # Eq. 2
            cam = F.interpolate(cam[None], size=images.shape[-2:], mode="bilinear",
                                align_corners=False)[0, 0]
            if normalization == "minmax":
                cam = cam - cam.min()
            per_class.append(cam / cam.max().clamp_min(1e-8))
        maps.append(per_class)
    return maps


@pytest.mark.parametrize("normalization", ["max", "minmax"])
def test_batched_attention_equals_per_image_per_class_loop(normalization):
    torch.manual_seed(0)
    model = TinyNet(num_classes=4).eval()
    images = torch.randn(5, 3, 32, 32)
    labels = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 0.]])
    with GradCAM(model, "features", normalization=normalization) as cam:
        out = cam(images, labels)
    reference = _loop_reference(model, model.features, images, labels, normalization)
    assert out.maps.shape == (5, 4, 32, 32)
    for b, per_class in enumerate(reference):
        for k, expected in enumerate(per_class):
            torch.testing.assert_close(out.maps[b, k], expected, atol=1e-5, rtol=1e-4)
        assert out.valid[b].sum() == len(per_class)
        assert (out.maps[b, len(per_class):] == 0).all()   # padded slots are zero


@pytest.mark.parametrize("arch,layer", [("resnet18", "layer4"), ("vgg11", "features.19")])
def test_maps_equal_the_grad_cam_package(arch, layer):
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=6).eval()
    images = torch.randn(3, 3, 64, 64)
    classes = torch.tensor([2, 5, 0])
    target_module = dict(model.named_modules())[layer]
    with ReferenceGradCAM(model=model, target_layers=[target_module]) as reference_cam:
        expected = reference_cam(input_tensor=images,
                                 targets=[ClassifierOutputTarget(int(c)) for c in classes])
    with GradCAM(model, layer, normalization="minmax") as cam:
        ours = cam(images, classes=classes).maps[:, 0]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_all_zero_maps_give_zeros_not_nan():
    zero = torch.zeros(2, 3, 8, 8)
    assert torch.equal(normalize_maps(zero), zero)
    assert torch.equal(normalize_maps(zero, "minmax"), zero)
    # A dead feature map: every activation is zero, so every A^c is zero.
    features = torch.zeros(2, 4, 4, 4, requires_grad=True)
    logits = features.mean(dim=(2, 3)) @ torch.randn(4, 3)
    classes, valid = positive_classes(torch.tensor([[1, 0, 1], [0, 1, 0.]]))
    maps = attention_from_features(logits, features, classes, valid, output_size=(16, 16))
    assert torch.isfinite(maps).all() and (maps == 0).all()
    maps.sum().backward()
    assert torch.isfinite(features.grad).all()


def test_explanations_are_detached_and_training_maps_are_not():
    model = TinyNet().eval()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([[1, 0, 1], [0, 1, 0.]])
    with GradCAM(model, "features") as cam:
        assert not cam(images, labels).maps.requires_grad
        assert cam(images, labels, create_graph=True).maps.requires_grad
        with torch.no_grad():  # explaining works inside no_grad too
            assert cam(images, labels).maps.shape == (2, 2, 32, 32)


def test_second_order_term_reaches_weights_only_without_detach():
    torch.manual_seed(0)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([[1, 0, 1], [0, 1, 0.]])

    def head_grad(detach_weights):
        torch.manual_seed(1)
        model = FlattenHeadNet()
        with GradCAM(model, "features", detach_weights=detach_weights) as cam:
            maps = cam(images, labels, create_graph=True).maps
        (grad,) = torch.autograd.grad(maps.sum(), model.classifier[1].weight, allow_unused=True)
        return grad

    assert head_grad(False).abs().sum() > 0      # A^c depends on the head through w^c
    assert head_grad(True) is None               # detached weights: the head gets nothing


def test_frozen_backbone_still_explains():
    model = TinyNet().eval().requires_grad_(False)
    with GradCAM(model, "features") as cam:
        out = cam(torch.randn(2, 3, 32, 32), classes=torch.tensor([0, 2]))
    assert out.maps.shape == (2, 1, 32, 32) and out.maps.amax() > 0


def test_bad_input_is_named():
    model = TinyNet()
    with pytest.raises(ValueError, match="featurez"):
        GradCAM(model, "featurez")
    with GradCAM(model, "features") as cam:
        with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
            cam(torch.randn(3, 32, 32))
        with pytest.raises(TypeError, match="floating point"):
            cam(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
        with pytest.raises(ValueError, match="do not match"):
            cam(torch.randn(2, 3, 32, 32), labels=torch.ones(2, 5))
        with pytest.raises(ValueError, match="label indices"):
            cam(torch.randn(2, 3, 32, 32), classes=torch.tensor([0, 9]))


def test_batch_minmax_uses_the_extremes_of_the_batchs_valid_maps():
    maps = torch.tensor([[[[2.0, 4.0]], [[0.0, 0.0]]],       # image 0: one class, one padded slot
                         [[[3.0, 10.0]], [[6.0, 8.0]]]])     # image 1: two classes
    valid = torch.tensor([[True, False], [True, True]])
    out = normalize_maps(maps, "batch_minmax", valid=valid)
    # The batch's valid extremes are 2 and 10 (the padded zeros do not count): (A - 2) / 8.
    torch.testing.assert_close(out[valid], (maps[valid] - 2) / 8)
    assert out[valid].amax() == 1 and out[valid].amin() == 0
    # Per map, every map would reach 1; per batch, image 0's weaker map peaks at 0.25.
    assert out[0, 0].amax() == 0.25 and normalize_maps(maps, "minmax")[0, 0].amax() == 1
    # Without valid, every slot counts (the padded zeros set the minimum).
    torch.testing.assert_close(normalize_maps(maps, "batch_minmax"), maps / 10)
    with pytest.raises(ValueError, match="valid must be"):
        normalize_maps(maps, "batch_minmax", valid=valid[:1])
    with pytest.raises(ValueError, match="batch_minmax"):
        normalize_maps(maps, "per_batch")


def test_detached_normaliser_is_a_constant_in_the_gradient():
    maps = torch.tensor([[[[1.0, 3.0]]]], requires_grad=True)
    for normalization in ("max", "minmax", "batch_minmax"):
        (kept,) = torch.autograd.grad(normalize_maps(maps, normalization).sum(), maps)
        (detached,) = torch.autograd.grad(normalize_maps(maps, normalization, True).sum(), maps)
        # Constant divisor d (3, or 3 - 1): d/dA of sum((A - m) / d) is 1 / d everywhere.
        divisor = 3.0 if normalization == "max" else 2.0
        torch.testing.assert_close(detached, torch.full_like(maps, 1 / divisor))
        assert not torch.allclose(kept, detached), normalization
    # max: d/dA_i sum(A / max A) = 1/3 - [i is the peak] * 4/9.
    (kept,) = torch.autograd.grad(normalize_maps(maps, "max").sum(), maps)
    torch.testing.assert_close(kept, torch.tensor([[[[1 / 3, 1 / 3 - 4 / 9]]]]))


def test_gradcam_batch_minmax_peaks_once_per_batch():
    torch.manual_seed(0)
    model = TinyNet().eval()
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1.]])
    with GradCAM(model, "features", normalization="none") as cam:
        raw = cam(images, labels)
    with GradCAM(model, "features", normalization="batch_minmax", detach_normalizer=True) as cam:
        out = cam(images, labels)
    values = raw.maps[raw.valid]
    expected = (values - values.amin()) / (values.amax() - values.amin())
    torch.testing.assert_close(out.maps[out.valid], expected)
    peaks = out.maps[out.valid].amax(dim=(-2, -1))
    assert (peaks == 1).sum() == 1 and (peaks < 1).sum() == len(peaks) - 1
