"""Tests for gainlib.segmentation: cues, SEC's losses, the dense CRF, the networks, mIoU.

Hand-made tiny tensors with values worked out in the comments; torchmetrics for mIoU.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

import gainlib.segmentation as seg
from gainlib.gain import GAIN
from gainlib.losses import segmentation_loss
from tiny import TinyNet


def _crf_available() -> None:
    """Skip without pydensecrf locally; under CI=true its absence is a failure."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError as error:
        reason = f"pydensecrf2 is not installed ({error}); pip install -e '.[crf]'"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required in CI: the `test` extra includes `crf`)")
        pytest.skip(reason)


def _grid(rows: str) -> torch.Tensor:
    """'x..x/....' -> bool [H, W] ('x' marks True)."""
    return torch.tensor([[ch == "x" for ch in row] for row in rows.split("/")])


# --------------------------------------------------------------------------- localization cues


def _cue_batch():
    maps = torch.zeros(2, 2, 4, 4)
    # image 0, slot 0 = class 0, peak 0.5: cue where > 0.1; the 0.10 pixel is not (strict >)
    maps[0, 0] = torch.tensor([[0.50, 0.25, 0.05, 0.00],
                               [0.15, 0.10, 0.00, 0.00],
                               [0.00, 0.00, 0.00, 0.00],
                               [0.00, 0.00, 0.00, 0.00]])
    # image 0, slot 1 = class 2, peak 2.0: cue where > 0.4; also claims (1, 0) with class 0
    maps[0, 1] = torch.tensor([[0.0, 0.0, 0.0, 0.0],
                               [1.0, 0.0, 0.0, 0.0],
                               [0.0, 0.0, 0.3, 0.5],
                               [0.0, 0.0, 0.5, 2.0]])
    # image 1, slot 0 = class 1, peak 4.0: cue where > 0.8; slot 1 is padding (ignored)
    maps[1, 0] = torch.tensor([[4.0, 0.8, 0.4, 0.0],
                               [1.0, 0.6, 0.2, 0.0],
                               [0.0, 0.0, 0.0, 0.0],
                               [0.0, 0.0, 0.0, 0.0]])
    maps[1, 1] = 1.0
    classes = torch.tensor([[0, 2], [1, 0]])
    valid = torch.tensor([[True, True], [True, False]])
    return maps, classes, valid


def test_localization_cues_hand_made_with_saliency():
    maps, classes, valid = _cue_batch()
    saliency = torch.zeros(2, 4, 4)
    saliency[0] = torch.tensor([[0.0, 0.0, 0.05, 0.05],
                                [0.0, 0.5, 0.50, 0.09],
                                [0.2, 0.1, 0.50, 0.00],
                                [0.0, 0.0, 0.00, 0.00]])
    cues = seg.localization_cues(maps, classes, valid, num_classes=3, saliency=saliency)
    assert cues.shape == (2, 4, 4, 4) and cues.dtype == torch.bool
    # image 0: saliency < 0.1 except where a class claims the pixel; (2, 1) = 0.1 is not < 0.1
    assert torch.equal(cues[0, 0], _grid("..xx/...x/..../xx.."))
    assert torch.equal(cues[0, 1], _grid("xx../x.../..../...."))  # class 0
    assert not cues[0, 2].any()                                     # class 1: not in the image
    assert torch.equal(cues[0, 3], _grid("..../x.../...x/..xx"))  # class 2
    unlabelled = ~cues[0].any(0)
    assert torch.equal(unlabelled, _grid("..../.xx./xxx./...."))
    # image 1: saliency 0 everywhere -> background wherever class 1 does not claim the pixel;
    # the padded slot (all ones, "class 0") gives no cue
    assert torch.equal(cues[1, 2], _grid("x.../x.../..../...."))
    assert torch.equal(cues[1, 0], ~cues[1, 2])
    assert not cues[1, 1].any() and not cues[1, 3].any()


def test_localization_cues_without_saliency_use_the_attention():
    maps, classes, valid = _cue_batch()
    cues = seg.localization_cues(maps, classes, valid, num_classes=3)
    # image 1: prior = class 1's map / 4 = [[1, .2, .1, 0], [.25, .15, .05, 0], 0, 0];
    # background where < 0.1 and unclaimed; (0, 2) = 0.1 is not < 0.1
    assert torch.equal(cues[1, 0], _grid("...x/..xx/xxxx/xxxx"))
    assert torch.equal(~cues[1].any(0), _grid(".xx./.x../..../...."))
    # image 0: prior = max of both normalised maps: (0, 2) = 0.05 / 0.5 = 0.1 and (1, 1) = 0.2
    # are no background, nor is (2, 2) = 0.3 / 2
    assert torch.equal(cues[0, 0], _grid("...x/..xx/xx../xx.."))
    # thresholds are parameters
    loose = seg.localization_cues(maps, classes, valid, 3, fg_threshold=0.0, bg_threshold=0.0)
    assert torch.equal(loose[1, 2], maps[1, 0] > 0) and not loose[:, 0].any()


def test_localization_cues_resize_and_checks():
    maps, classes, valid = _cue_batch()
    cues = seg.localization_cues(maps, classes, valid, 3, size=(8, 8))
    assert cues.shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="label indices"):
        seg.localization_cues(maps, classes, valid, num_classes=2)
    with pytest.raises(ValueError, match="saliency"):
        seg.localization_cues(maps, classes, valid, 3, saliency=torch.zeros(1, 4, 4))


def test_cues_from_model_match_the_model_attention_and_run_a_saliency_prior():
    torch.manual_seed(0)
    model = GAIN(TinyNet(num_classes=3), "features").eval()
    images = torch.randn(2, 3, 16, 16)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model.attention(images, labels=labels)
    expected = seg.localization_cues(out.maps, out.classes, out.valid, 3)
    assert torch.equal(seg.cues_from_model(model, images, labels), expected)
    seen = []

    def prior(pixels: np.ndarray) -> np.ndarray:
        seen.append(pixels)
        return np.zeros(pixels.shape[:-1], np.float32)

    cues = seg.cues_from_model(model, images, labels, saliency=prior)
    assert seen[0].shape == (2, 16, 16, 3) and seen[0].dtype == np.uint8
    assert torch.equal(cues[:, 1:], expected[:, 1:])
    assert torch.equal(cues[:, 0], ~expected[:, 1:].any(1))  # saliency 0: every free pixel


def test_to_uint8_images_round_trips_and_shrinks():
    pixels = torch.randint(0, 256, (2, 6, 8, 3), dtype=torch.uint8)
    assert np.array_equal(seg.to_uint8_images(pixels), pixels.numpy())
    unit = pixels.permute(0, 3, 1, 2).float() / 255
    assert np.array_equal(seg.to_uint8_images(unit, mean=None), pixels.numpy())
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    normalised = (unit - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert np.abs(seg.to_uint8_images(normalised, mean, std).astype(int) - pixels.numpy()).max() <= 1
    assert seg.to_uint8_images(pixels, size=(3, 4)).shape == (2, 3, 4, 3)


# --------------------------------------------------------------------------- seeding


def test_seeding_loss_hand_computed():
    # pixel 0: f = (0.5, 0.25, 0.25), cues background and class 0 (a pixel with two cues)
    # pixel 1: f = (0.1, 0.6, 0.3), cue class 1
    probs = torch.tensor([[0.5, 0.1], [0.25, 0.6], [0.25, 0.3]]).view(1, 3, 1, 2)
    cues = torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.bool).view(1, 3, 1, 2)
    expected = -(math.log(0.5) + math.log(0.25) + math.log(0.3)) / 3
    torch.testing.assert_close(seg.seeding_loss(probs.log(), cues), torch.tensor(expected))
    assert seg.seeding_loss(probs.log(), cues) == segmentation_loss(probs.log(), cues)
    # two images, 3 and 1 cues: the batch form divides by 4, SEC's per-image form averages
    logits = torch.cat([probs.log(), probs.log()])
    cues2 = torch.cat([cues, torch.zeros_like(cues)])
    cues2[1, 2, 0, 1] = True                                      # -log 0.3
    batch = -(math.log(0.5) + math.log(0.25) + 2 * math.log(0.3)) / 4
    per_image = (expected - math.log(0.3)) / 2
    torch.testing.assert_close(seg.seeding_loss(logits, cues2), torch.tensor(batch))
    torch.testing.assert_close(seg.seeding_loss(logits, cues2, per_image=True), torch.tensor(per_image))


# --------------------------------------------------------------------------- expansion


def test_gwrp_hand_computed():
    scores = torch.tensor([[0.2, 0.6], [0.4, 0.1]]).view(1, 1, 2, 2)  # sorted: .6 .4 .2 .1
    # d = 0.5: weights 1, .5, .25, .125 (sum 1.875)
    torch.testing.assert_close(seg.global_weighted_rank_pooling(scores, 0.5),
                               torch.tensor([[(0.6 + 0.2 + 0.05 + 0.0125) / 1.875]]))
    torch.testing.assert_close(seg.global_weighted_rank_pooling(scores, 0.0), torch.tensor([[0.6]]))
    torch.testing.assert_close(seg.global_weighted_rank_pooling(scores, 1.0), torch.tensor([[0.325]]))
    # one decay per channel
    two = torch.cat([scores, scores], dim=1)
    torch.testing.assert_close(seg.global_weighted_rank_pooling(two, torch.tensor([0.0, 1.0])),
                               torch.tensor([[0.6, 0.325]]))
    with pytest.raises(ValueError, match="decays"):
        seg.global_weighted_rank_pooling(scores, 1.5)


def _expansion_probs() -> torch.Tensor:
    # [1, 3, 2, 2] softmax outputs; each pixel sums to 1
    return torch.tensor([[[0.7, 0.1], [0.4, 0.2]],     # background, sorted .7 .4 .2 .1
                         [[0.2, 0.6], [0.4, 0.5]],     # class 0,    sorted .6 .5 .4 .2
                         [[0.1, 0.3], [0.2, 0.3]]],    # class 1,    max .3
                        dtype=torch.float64).unsqueeze(0)


def test_expansion_loss_hand_computed():
    logits = _expansion_probs().log()      # softmax(log p) = p
    labels = torch.tensor([[1.0, 0.0]])    # class 0 present, class 1 absent
    # d_fg = d_bg = 0.5, d_neg = 0 (max): G_0 = .975 / 1.875 = .52, G_1 = .3, G_bg = .9625 / 1.875
    loss = seg.expansion_loss(logits, labels, d_fg=0.5, d_bg=0.5, d_neg=0.0)
    expected = -math.log(0.52) - math.log(1 - 0.3) - math.log(0.9625 / 1.875)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))
    # SEC's decays: weights 0.996^j and 0.999^j over the 4 ranks
    w_fg = [0.996 ** j for j in range(4)]
    w_bg = [0.999 ** j for j in range(4)]
    g_0 = sum(w * p for w, p in zip(w_fg, (0.6, 0.5, 0.4, 0.2))) / sum(w_fg)
    g_bg = sum(w * p for w, p in zip(w_bg, (0.7, 0.4, 0.2, 0.1))) / sum(w_bg)
    expected = -math.log(g_0) - math.log(0.7) - math.log(g_bg)
    torch.testing.assert_close(seg.expansion_loss(logits, labels), torch.tensor(expected, dtype=torch.float64))
    # both classes present: no absent term; the batch value is the mean over images
    both = torch.tensor([[1.0, 1.0]])
    g_1 = sum(w * p for w, p in zip(w_fg, (0.3, 0.3, 0.2, 0.1))) / sum(w_fg)
    expected_both = -(math.log(g_0) + math.log(g_1)) / 2 - math.log(g_bg)
    torch.testing.assert_close(seg.expansion_loss(logits, both), torch.tensor(expected_both, dtype=torch.float64))
    pair = seg.expansion_loss(logits.expand(2, -1, -1, -1), torch.cat([labels, both]))
    torch.testing.assert_close(pair, torch.tensor((expected + expected_both) / 2, dtype=torch.float64))


def test_expansion_loss_gradcheck():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: seg.expansion_loss(x, labels), (logits,))
    assert torch.autograd.gradcheck(lambda x: seg.expansion_loss(x, labels, d_neg=0.5), (logits,))
    scores = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: seg.global_weighted_rank_pooling(s, 0.9), (scores,))


# --------------------------------------------------------------------------- constrain


def test_constrain_loss_hand_computed():
    # pixel 0: f = (.8, .2), Q = (.5, .5); pixel 1: f = (.5, .5), Q = (1, 0)
    f = torch.tensor([[0.8, 0.5], [0.2, 0.5]], dtype=torch.float64).view(1, 2, 1, 2)
    q = torch.tensor([[0.5, 1.0], [0.5, 0.0]], dtype=torch.float64).view(1, 2, 1, 2)
    kl_0 = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    kl_1 = math.log(1 / 0.5)                                    # 0 log 0 = 0
    torch.testing.assert_close(seg.constrain_loss(f.log(), q), torch.tensor((kl_0 + kl_1) / 2, dtype=torch.float64))
    # Q is a constant: the gradient reaches the logits only
    logits = f.log().requires_grad_()
    q_grad = q.clone().requires_grad_()
    seg.constrain_loss(logits, q_grad).backward()
    assert logits.grad is not None and q_grad.grad is None


def test_constrain_loss_zero_when_the_crf_returns_the_prediction():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    images = torch.randn(2, 3, 16, 20)
    calls = []

    def identity(pixels, probs):
        calls.append(pixels)
        return probs

    def uniform(pixels, probs):
        return torch.full_like(probs, 1 / probs.shape[1])

    q = seg.constrain_targets(logits, images, refine=identity)
    assert calls[0].shape == (2, 4, 5, 3) and calls[0].dtype == np.uint8  # shrunk to the output
    assert not q.requires_grad
    assert seg.constrain_loss(logits, q).abs() < 1e-12
    assert seg.constrain_loss(logits, seg.constrain_targets(logits, images, refine=uniform)) > 0.01
    # sec_loss: with the identity refinement the total is seed + expand
    cues = torch.zeros(2, 3, 4, 5, dtype=torch.bool)
    cues[:, 0, 0] = True
    cues[:, 1, -1] = True
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    out = seg.sec_loss(logits, cues, labels, images, refine=identity)
    assert out.constrain.abs() < 1e-12
    torch.testing.assert_close(out.seed, seg.seeding_loss(logits, cues, per_image=True))
    torch.testing.assert_close(out.expand, seg.expansion_loss(logits, labels))
    torch.testing.assert_close(out.total, out.seed + out.expand + out.constrain)
    out.total.backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="refine returned"):
        seg.constrain_targets(logits, images, refine=lambda pixels, probs: probs[:, :2])


# --------------------------------------------------------------------------- dense CRF


def _two_colour_case(seed: int = 0, size: int = 24):
    """Red left half (class 0), blue right half (class 1); probabilities with the true class
    drawn from U(0.3, 0.8), so about 60 percent of the input argmax is right."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size), dtype=np.int64)
    truth[:, size // 2:] = 1
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[truth == 0] = (200, 40, 40)
    image[truth == 1] = (40, 40, 200)
    p_true = rng.uniform(0.3, 0.8, size=(size, size)).astype(np.float32)
    probs = np.where(truth == 0, p_true, 1 - p_true)[None].repeat(2, 0)
    probs[1] = 1 - probs[0]
    return image, probs, truth


def test_dense_crf_cleans_a_noisy_two_colour_map():
    _crf_available()
    image, probs, truth = _two_colour_case()
    refined = seg.dense_crf(image, probs)
    assert refined.shape == probs.shape and refined.dtype == np.float32
    assert (refined >= 0).all() and np.allclose(refined.sum(0), 1, atol=1e-5)
    before = (probs.argmax(0) == truth).mean()
    after = (refined.argmax(0) == truth).mean()
    assert before < 0.75 and after > 0.98, (before, after)
    with pytest.raises(ValueError, match="same H, W"):
        seg.dense_crf(image, probs[:, :-1])


def test_crf_refine_is_dense_crf_per_image():
    _crf_available()
    cases = [_two_colour_case(seed) for seed in (1, 2)]
    pixels = np.stack([c[0] for c in cases])
    probs = torch.from_numpy(np.stack([c[1] for c in cases])).double()
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255   # float in [0, 1]
    refined = seg.crf_refine(images, probs, mean=None, scale_factor=2.0)
    assert refined.shape == probs.shape and refined.dtype == torch.float64
    for i, (image, p, _) in enumerate(cases):
        np.testing.assert_allclose(refined[i].numpy(), seg.dense_crf(image, p, scale_factor=2.0), atol=1e-6)
    # the default refinement of constrain_targets is this CRF with SEC's scale factor
    logits = probs.log()
    torch.testing.assert_close(seg.constrain_targets(logits, pixels),
                               seg.crf_refine(pixels, torch.softmax(logits, 1), scale_factor=12.0))


def test_missing_pydensecrf_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    image, probs, _ = _two_colour_case()
    with pytest.raises(ImportError, match=r"gainlib\[crf\]"):
        seg.dense_crf(image, probs)


# --------------------------------------------------------------------------- networks


def test_small_fcn_shapes_and_gradient():
    torch.manual_seed(0)
    model = seg.SmallFCN(4)
    x = torch.randn(2, 3, 32, 40)
    out = model(x)
    assert out.shape == (2, 4, 32, 40)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    low = seg.SmallFCN(4, upsample=False).eval()
    assert low(x).shape == (2, 4, 32 // low.output_stride, 40 // low.output_stride)


def test_deeplab_largefov_gives_41_by_41_logits_at_321(monkeypatch):
    _no_download(monkeypatch)
    model = seg.DeepLabLargeFOV(num_classes=4).eval()
    # SEC's geometry: stride 8 with ceil-mode pools, 321 -> 41 (checked on a smaller input that
    # goes through the same arithmetic: 65 -> 33 -> 17 -> 9).
    with torch.no_grad():
        assert model(torch.randn(1, 3, 65, 65)).shape == (1, 4, 9, 9)
    sizes = [321]
    for _ in range(3):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    assert sizes[-1] == 41
    fc6 = model.head[0]
    assert fc6.dilation == (12, 12) and fc6.out_channels == 1024
    dilated = [m for m in model.features if isinstance(m, torch.nn.Conv2d) and m.dilation == (2, 2)]
    assert len(dilated) == 3                      # the conv5 block


def _no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_deeplabv3_builds_offline(monkeypatch):
    _no_download(monkeypatch)
    start = time.perf_counter()
    model = seg.deeplabv3_resnet101(num_classes=4).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 33, 33))
    assert out.shape == (1, 4, 33, 33)
    assert model.model.aux_classifier is None
    assert time.perf_counter() - start < 30


def test_deeplabv3_with_weights_replaces_the_heads(monkeypatch):
    """With full weights (21 VOC classes), other class counts get new last convolutions. A
    tiny DeepLabV3 stands in for torchvision's builder, so nothing is downloaded."""
    from torchvision.models import segmentation
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
    from torchvision.models.segmentation.fcn import FCNHead

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)

        def forward(self, x):
            f = self.conv(x)
            return {"out": f, "aux": f}

    def fake(weights=None, progress=True, **kwargs):
        assert weights == "DEFAULT" and not kwargs
        return DeepLabV3(Backbone(), DeepLabHead(8, 21), FCNHead(8, 21))

    monkeypatch.setattr(segmentation, "deeplabv3_resnet101", fake)
    model = seg.deeplabv3_resnet101(num_classes=5, weights="DEFAULT", aux_loss=True).eval()
    assert model.model.classifier[-1].out_channels == 5
    assert model.model.aux_classifier[-1].out_channels == 5
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5, 32, 32)
    plain = seg.deeplabv3_resnet101(num_classes=21, weights="DEFAULT")
    assert plain.model.classifier[-1].out_channels == 21 and plain.model.aux_classifier is None


# --------------------------------------------------------------------------- mIoU


def test_segmentation_miou_matches_torchmetrics():
    g = torch.Generator().manual_seed(3)
    num_classes, shape = 5, (3, 12, 12)
    # classes 0..3 only: class 4 is absent from prediction and target
    target = torch.randint(0, 4, shape, generator=g)
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, torch.randint(0, 4, shape, generator=g))
    target[torch.rand(shape, generator=g) < 0.15] = 255
    ours = seg.segmentation_miou(pred, target, num_classes)
    reference = MulticlassJaccardIndex(num_classes, ignore_index=255, average="macro")(pred, target)
    torch.testing.assert_close(ours, reference)
    # torchmetrics' per-class IoU reports 0 for the absent class, and its macro mean leaves it
    # out, as ours (NaN IoU, NaN-mean) does: the mean over the 4 present classes
    per_class = MulticlassJaccardIndex(num_classes, ignore_index=255, average=None)(pred, target)
    assert per_class[4] == 0
    torch.testing.assert_close(ours, per_class[:4].mean())
    # logits are argmax-ed (after upsampling when smaller than the target)
    logits = torch.nn.functional.one_hot(pred, num_classes).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(seg.segmentation_miou(logits, target, num_classes), ours)
    small = seg.segmentation_miou(logits[..., ::2, ::2], target, num_classes)
    assert 0 < small.item() < 1


# --------------------------------------------------------------------------- training


def _reference_loop(network, train, cues, loss, epochs, batch_size, lr, lr_step, seed,
                    momentum=0.9, weight_decay=5e-4):
    """The segmentation loop of gainlib.wsss.train_segmentation before it moved onto the shared
    trainer, copied as the independent reference (minus the cache)."""
    from gainlib.data.protocol import IGNORE_INDEX, collate_samples
    from gainlib.losses import weakly_supervised_segmentation_loss

    refine = None
    if loss == "sec":
        import functools
        refine = functools.partial(seg.crf_refine, scale_factor=seg.SEC_CRF_SCALE * 41 / cues.shape[-2],
                                   mean=None, std=None)
    generator = torch.Generator().manual_seed(seed)
    network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = math.ceil(len(train) / batch_size)
    history = []
    network.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=generator).tolist()
        total, count = 0.0, 0
        for step, start in enumerate(range(0, len(order), batch_size)):
            chunk = order[start:start + batch_size]
            batch = collate_samples([train[i] for i in chunk])
            t = epoch + step / steps
            for group in optimizer.param_groups:
                group["lr"] = (lr * 0.1 ** math.floor(t / lr_step) if lr_step is not None
                               else 0.5 * lr * (1 + math.cos(math.pi * t / epochs)))
            logits = network(batch["image"].contiguous(memory_format=torch.channels_last))
            batch_cues = None if cues is None else cues[chunk]
            if loss == "supervised":
                target = batch["mask"]
                if logits.shape[-2:] != target.shape[-2:]:
                    logits = torch.nn.functional.interpolate(logits, size=target.shape[-2:], mode="bilinear",
                                                             align_corners=False)
                value = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
            elif loss == "gain":
                value = weakly_supervised_segmentation_loss(logits, batch_cues, batch["labels"])
            else:
                value = seg.sec_loss(logits, batch_cues, batch["labels"], batch["image"], refine=refine).total
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += value.item() * len(chunk)
            count += len(chunk)
        history.append({"epoch": epoch + 1, "loss": total / count})
    return history


def _seg_setup(n=20, dropout=False):
    from tiny import TinyScenes

    data = TinyScenes(n=n)
    torch.manual_seed(0)
    network = seg.SmallFCN(4, (4, 8, 8), upsample=False)
    if dropout:
        network = nn.Sequential(network, nn.Dropout2d(0.3))
    cues = torch.rand(n, 4, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.3
    return data, network, cues


@pytest.mark.parametrize("loss, lr_step", [("gain", None), ("gain", 0.7), ("sec", None), ("supervised", None)])
def test_segmentation_trainer_reproduces_the_plain_loop(loss, lr_step):
    if loss == "sec":
        _crf_available()
    data, reference, cues = _seg_setup()
    cues = None if loss == "supervised" else cues
    settings = dict(epochs=2, batch_size=8, lr=0.05, lr_step=lr_step, seed=5)
    expected = _reference_loop(reference, data, cues, loss, **settings)
    _, network, _ = _seg_setup()
    config = seg.SegmentationConfig(loss=loss, device="cpu", progress=False, **settings)
    history = seg.SegmentationTrainer(network, config).fit(data, cues=cues)
    assert [h["epoch"] for h in history] == [1, 2] and set(history[0]) == {"epoch", "loss",
                                                                        "train_seconds"}
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in expected], abs=1e-6)
    for (name, a), b in zip(reference.state_dict().items(), network.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    conv = next(p for p in network.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_segmentation_trainer_resumes_exactly_dropout_included(tmp_path):
    data, straight, cues = _seg_setup(dropout=True)
    settings = dict(loss="gain", epochs=3, batch_size=8, device="cpu", progress=False)
    seg.SegmentationTrainer(straight, seg.SegmentationConfig(**settings)).fit(data, cues=cues)

    class Interrupting(torch.utils.data.Dataset):
        def __init__(self, inner, after):
            self.inner, self.after, self.reads = inner, after, 0

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            self.reads += 1
            if self.reads > self.after:
                raise KeyboardInterrupt
            return self.inner[i]

    config = seg.SegmentationConfig(checkpoint_dir=str(tmp_path), **settings)
    _, network, _ = _seg_setup(dropout=True)
    with pytest.raises(KeyboardInterrupt):     # in the middle of the third epoch
        seg.SegmentationTrainer(network, config).fit(Interrupting(data, 2 * 20 + 10), cues=cues)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    # Another global RNG state and init: the checkpoint must restore both (dropout draws).
    torch.manual_seed(99)
    resumed = nn.Sequential(seg.SmallFCN(4, (4, 8, 8), upsample=False), nn.Dropout2d(0.3))
    history = seg.SegmentationTrainer(resumed, config).fit(data, cues=cues)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "last.pt"]


def test_segmentation_trainer_stops_on_non_finite_and_checks_its_cues():
    from gainlib.trainer import NonFiniteLossError

    data, network, cues = _seg_setup()
    config = seg.SegmentationConfig(loss="gain", epochs=1, batch_size=8, device="cpu", progress=False)
    with pytest.raises(ValueError, match="needs cues=bool"):
        seg.SegmentationTrainer(network, config).fit(data)
    with pytest.raises(ValueError, match="19 cue maps for 20"):
        seg.SegmentationTrainer(network, config).fit(data, cues=cues[:19])
    with pytest.raises(ValueError, match="pass cues=None"):
        seg.SegmentationTrainer(network, seg.SegmentationConfig(loss="supervised")).fit(data, cues=cues)
    with pytest.raises(ValueError, match="lr_step"):
        seg.SegmentationConfig(lr_step=0)
    with pytest.raises(TypeError, match="epochs"):
        seg.SegmentationConfig(epochs=1.5)
    big = seg.SegmentationConfig(loss="gain", epochs=2, batch_size=8, lr=1e12, device="cpu", progress=False)
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        seg.SegmentationTrainer(network, big).fit(data, cues=cues)
