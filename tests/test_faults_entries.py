"""Reliability, round two: one validation at every public entry of gainlib. Each test holds one
case of the issue and failed before its fix.

The losses and the GAIN methods took labels and masks the batching refuses, empty batches,
images of the wrong layout, dtype or range, and GainConfig values that overflow float32;
attention() failed under inference_mode; the builders gave raw errors for a weights folder and
a string class count; and the README's three lines gave another network on every run.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TinyNet, TinyScenes

import gainlib
from gainlib.data.protocol import IMAGE_VALUE_LIMIT, SampleError, collate_samples
from gainlib.gain import GAIN, GainConfig
from gainlib.losses import class_targets_from_mask, classification_loss
from gainlib.models import SmallCNN, build_classifier
from gainlib.trainer import GainTrainer, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _model(**config):
    torch.manual_seed(0)
    return GAIN(TinyNet(num_classes=3), "features", GainConfig(**config))


def _batch(n=4, **replace):
    batch = collate_samples([TinyScenes(n=n, pixel=tuple(range(n)))[i] for i in range(n)])
    batch.update(replace)
    return batch


def _entries(model, batch):
    """Every public entry of a GAIN model that takes a batch's images and labels."""
    return {"stream_losses": lambda: model.stream_losses(batch),
            "classifier step": lambda: model.stream_losses(batch, attention_mining=False),
            "extra_supervision": lambda: model.extra_supervision(batch),
            "attention": lambda: model.attention(batch["image"], labels=batch["labels"])}


# -- labels: multi-hot 0/1 only ---------------------------------------------------------------

@pytest.mark.parametrize("value", [2.0, 0.3, -1.0], ids=["count", "soft", "minus-one"])
def test_labels_that_are_not_0_or_1_are_refused_by_the_losses_and_the_model(value):
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels[0, 0] = value
    # With a label of 2 the loss had no lower bound: -100 at a logit of +100.
    with pytest.raises(ValueError, match=rf"labels must be multi-hot \(0/1 values\), found \[{value:g}\]"):
        classification_loss(torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), labels)
    batch = _batch(n=2)
    batch["labels"] = labels
    for name, call in _entries(_model(), batch).items():
        with pytest.raises(ValueError, match="multi-hot"):
            call()


def test_labels_given_as_class_indices_are_named_as_such():
    batch = _batch()
    indices = batch["labels"].argmax(1, keepdim=True)                   # [B, 1]
    for labels in (indices, indices[:, 0]):
        batch["labels"] = labels
        for call in _entries(_model(), batch).values():
            with pytest.raises(ValueError, match=r"look like class indices; give multi-hot labels "
                                                 r"\[B, C\], e\.g\. .*one_hot\(indices\.view\(-1\), 3\)"):
                call()


# -- masks: class ids 0..C or the ignore index --------------------------------------------------

@pytest.mark.parametrize("value", [50, -1, 254])
def test_mask_values_outside_the_classes_are_refused_not_taken_for_background(value):
    batch = _batch()
    batch["mask"] = batch["mask"].clone()
    batch["mask"][0, 5, 5] = value
    message = rf"mask values must be 0\.\.3 or 255 \(0 background, .*\), found \[{value}\]"
    with pytest.raises(ValueError, match=message):
        class_targets_from_mask(batch["mask"], torch.zeros(4, 1, dtype=torch.long), num_classes=3)
    with pytest.raises(ValueError, match=message):
        _model().extra_supervision(batch)


def test_a_mask_without_a_class_count_still_refuses_negative_and_float_values():
    classes = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"found \[-1\]"):
        class_targets_from_mask(torch.tensor([[[0, -1]]]), classes)
    with pytest.raises(TypeError, match="integer tensor of class ids"):
        class_targets_from_mask(torch.tensor([[[0.0, 1.0]]]), classes)
    targets, _ = class_targets_from_mask(torch.tensor([[[0, 1, 255]]]), classes)
    assert targets.tolist() == [[[[0.0, 1.0, 0.0]]]]


# -- empty batches -----------------------------------------------------------------------------

def test_an_empty_batch_is_an_error_not_nan_losses():
    batch = _batch()
    empty = {k: (v[:0] if torch.is_tensor(v) else v[:0]) for k, v in batch.items()}
    for call in _entries(_model(), empty).values():
        with pytest.raises(ValueError, match="empty batch"):
            call()
    with pytest.raises(ValueError, match="empty batch"):
        classification_loss(torch.zeros(0, 3), torch.zeros(0, 3))


# -- GainConfig: nothing that overflows float32 in Eq. 4 ---------------------------------------

@pytest.mark.parametrize("field, value", [("omega", 1e300), ("omega", 4e38), ("alpha", 1e39),
                                          ("ext_weight", 1e300)])
def test_gainconfig_refuses_values_that_overflow_float32(field, value):
    with pytest.raises(ValueError, match=re.escape(f"GainConfig.{field} = {value!r} overflows float32")):
        GainConfig(**{field: value})


def test_an_omega_within_float32_keeps_the_losses_finite():
    losses = _model(omega=3e38).stream_losses(_batch())
    assert all(torch.isfinite(v) for v in losses.values())


# -- images: [B, 3, H, W] float, normalised ----------------------------------------------------

@pytest.mark.parametrize("images, error, message", [
    (torch.zeros(4, 3, 32, 32, dtype=torch.uint8), TypeError,
     r"a float tensor \[B, 3, H, W\] \(floating point, normalised\), got dtype torch.uint8: "
     r"convert to \[0, 1\] floats"),
    (torch.zeros(4, 32, 32, 3), ValueError,
     r"a float tensor \[B, 3, H, W\], got shape \[4, 32, 32, 3\] with 32 channels; they look "
     r"channels-last \[B, H, W, 3\]: pass images.permute\(0, 3, 1, 2\)"),
    (torch.zeros(4, 1, 32, 32), ValueError,
     r"got shape \[4, 1, 32, 32\] with 1 channels; one channel \(greyscale\?\)"),
    (torch.zeros(3, 32, 32), ValueError,
     r"got shape \[3, 32, 32\]: one image without its batch dimension"),
], ids=["uint8", "nhwc", "greyscale", "one-image"])
def test_images_of_the_wrong_layout_or_dtype_name_the_expected_layout(images, error, message):
    model = _model()
    batch = _batch(image=images)
    for call in [*_entries(model, batch).values(), lambda: model(images)]:
        with pytest.raises(error, match=message):
            call()


def test_images_in_0_255_are_refused_naming_the_value():
    batch = _batch()
    raw = (batch["image"] - batch["image"].min()) * 40          # pixels 0..255-ish, never normalised
    model = _model()
    for call in [*_entries(model, {**batch, "image": raw}).values(), lambda: model(raw)]:
        with pytest.raises(ValueError, match=r"images holds values from 0 to [\d.]+, beyond "
                                             r"±50: pixels in 0\.\.255 that were never normalised"):
            call()
    samples = [TinyScenes(n=2)[i] for i in range(2)]
    samples[1] = {**samples[1], "id": "img-9", "image": samples[1]["image"].abs() * 100}
    with pytest.raises(SampleError, match=r"img-9.*'image' holds values from [\d.]+ to [\d.]+, "
                                          r"beyond ±50.*never normalised"):
        collate_samples(samples)
    with pytest.raises(SampleError, match="never normalised"):                 # in training too
        GainTrainer(_model(), TrainConfig(mode="classifier", epochs=1, batch_size=2,
                                          progress=False, device="cpu")).fit(samples)
    edge = _batch()
    edge["image"] = edge["image"].clamp(-IMAGE_VALUE_LIMIT, IMAGE_VALUE_LIMIT)
    model.stream_losses(edge)                                   # normalised images pass


# -- attention under inference_mode ------------------------------------------------------------

def test_attention_works_under_inference_mode():
    model, batch = _model().eval(), _batch()
    with torch.no_grad():
        expected = model.attention(batch["image"], labels=batch["labels"])
    with torch.inference_mode():                 # "element 0 of tensors does not require grad"
        got = model.attention(batch["image"], labels=batch["labels"])
        images = batch["image"].clone()          # an inference tensor
        again = model.attention(images, labels=batch["labels"])
    assert torch.equal(got.maps, expected.maps) and torch.equal(again.maps, expected.maps)


# -- the builders --------------------------------------------------------------------------------

def test_weights_given_as_a_folder_are_named_as_a_folder(tmp_path):
    torch.save(SmallCNN(3).state_dict(), tmp_path / "model.pth")
    with pytest.raises(IsADirectoryError, match=rf"weights {tmp_path} is a folder, not a "
                                                r"state-dict file; pass the file, e\.g\. one of "
                                                r"\['model.pth'\]"):
        build_classifier("small_cnn", 3, weights=tmp_path)
    build_classifier("small_cnn", 3, weights=tmp_path / "model.pth")


@pytest.mark.parametrize("num_classes, error", [("4", TypeError), (4.0, TypeError),
                                                (True, TypeError), (0, ValueError)])
def test_num_classes_must_be_an_int(num_classes, error):
    for build in (lambda: build_classifier("small_cnn", num_classes),
                  lambda: GAIN.from_name("small_cnn", num_classes),
                  lambda: SmallCNN(num_classes)):
        with pytest.raises(error, match=r"num_classes must be (an int|>= 1)"):
            build()
    assert GAIN.from_name("small_cnn", np.int64(4)).classifier.num_classes == 4


# -- one seed makes a run reproducible from the public API --------------------------------------

def _readme_lines() -> str:
    block = re.search(r"```python\n(import gainlib\n.*?)```", (ROOT / "README.md").read_text(),
                      re.S).group(1)
    return block


class _Tiny:
    """gainlib as the README's lines see it, scaled down: the small CNN for its network (with
    its weights argument ignored: no download), one short epoch, no checkpoint folder."""

    GainTrainer = GainTrainer

    class GAIN:
        @staticmethod
        def from_name(name, num_classes, weights=None, **kwargs):
            return GAIN.from_name("small_cnn", 3, **kwargs)

    @staticmethod
    def TrainConfig(**kwargs):
        return TrainConfig(**{**kwargs, "epochs": 1, "batch_size": 4, "checkpoint_dir": None,
                              "progress": False, "device": "cpu", "eval_attention": False})


def test_the_readmes_three_lines_run_twice_give_the_same_network():
    code = _readme_lines().replace("import gainlib\n", "")
    data = TinyScenes(n=8, pixel=(0, 1))
    networks = []
    for _ in range(2):
        scope = {"gainlib": _Tiny, "train_set": data, "val_set": TinyScenes(n=4, seed=1)}
        exec(compile(code, "README.md", "exec"), scope)
        networks.append(scope["model"].state_dict())
        torch.randn(100)                         # the global random state moves on between runs
    assert all(torch.equal(a, b) for a, b in zip(networks[0].values(), networks[1].values()))
    assert gainlib.TrainConfig.__doc__.count("GAIN.from_name(..., seed=seed)") == 1


def test_a_seeded_build_leaves_the_global_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    one, _ = build_classifier("small_cnn", 3, seed=1)
    assert torch.equal(torch.rand(3), expected)
    two, _ = build_classifier("small_cnn", 3, seed=1)
    three, _ = build_classifier("small_cnn", 3, seed=2)
    assert torch.equal(one.classifier[-1].weight, two.classifier[-1].weight)
    assert not torch.equal(one.classifier[-1].weight, three.classifier[-1].weight)
