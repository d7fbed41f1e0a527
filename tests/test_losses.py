"""Eq. 3-12 against direct re-computations on small tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from gainlib.data.protocol import boxes_to_masks
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
from gainlib.masking import fill_image, gaussian_blur, masked_image, soft_mask


def test_soft_mask_is_eq4():
    a = torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0])
    expected = torch.tensor([1 / (1 + math.exp(-10 * (v - 0.5))) for v in a.tolist()])
    torch.testing.assert_close(soft_mask(a, sigma=0.5, omega=10), expected)
    assert soft_mask(torch.tensor(0.5), 0.5, 10) == 0.5
    with pytest.raises(ValueError, match="omega"):
        soft_mask(a, 0.5, 0)


def test_masked_image_is_eq3():
    images = torch.randn(2, 3, 4, 4)
    masks = torch.rand(2, 3, 4, 4)
    out = masked_image(images, masks)
    assert out.shape == (2, 3, 3, 4, 4)
    for b in range(2):
        for k in range(3):
            torch.testing.assert_close(out[b, k], images[b] - masks[b, k] * images[b])
    with pytest.raises(ValueError, match="mask must be"):
        masked_image(images, torch.rand(2, 3, 5, 5))


def test_classification_loss_is_multilabel_soft_margin():
    logits, labels = torch.randn(4, 5), (torch.rand(4, 5) > 0.5).float()
    expected = -(labels * F.logsigmoid(logits) + (1 - labels) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(classification_loss(logits, labels), expected)
    with pytest.raises(ValueError, match="do not match the model's logits"):
        classification_loss(logits, labels[:, :3])


def test_attention_mining_loss_is_eq5_mean_over_classes_then_images():
    masked_logits = torch.randn(3, 2, 4)
    classes = torch.tensor([[1, 3], [2, 0], [0, 0]])
    valid = torch.tensor([[True, True], [True, False], [False, False]])
    s = torch.sigmoid(masked_logits)
    per_image = [(s[0, 0, 1] + s[0, 1, 3]) / 2, s[1, 0, 2]]   # image 2 has no class
    expected = sum(per_image) / 2
    torch.testing.assert_close(attention_mining_loss(masked_logits, classes, valid), expected)
    logit = attention_mining_loss(masked_logits, classes, valid, score="logit")
    torch.testing.assert_close(logit, ((masked_logits[0, 0, 1] + masked_logits[0, 1, 3]) / 2
                                       + masked_logits[1, 0, 2]) / 2)
    softmax = attention_mining_loss(masked_logits, classes, valid, score="softmax")
    p = torch.softmax(masked_logits, -1)
    torch.testing.assert_close(softmax, ((p[0, 0, 1] + p[0, 1, 3]) / 2 + p[1, 0, 2]) / 2)


def test_losses_of_batches_without_classes_are_zero_not_nan():
    masked_logits = torch.randn(2, 0, 4, requires_grad=True)
    empty = torch.zeros(2, 0, dtype=torch.long)
    loss = attention_mining_loss(masked_logits, empty, empty.bool())
    assert loss.item() == 0.0
    loss.backward()


def test_self_guidance_and_extra_supervision_combine_as_eq6_eq8():
    cl, am, e = torch.tensor(0.7), torch.tensor(0.2), torch.tensor(0.05)
    assert self_guidance_loss(cl, am, alpha=1.0) == cl + am
    torch.testing.assert_close(extra_supervision_loss(cl, am, e, alpha=1.0, omega=10.0), cl + am + 10 * e)


def test_pixel_attention_loss_is_eq7_with_ignored_pixels():
    mask = torch.tensor([[[0, 1, 1], [2, 255, 1], [0, 0, 2]]])           # [1, 3, 3]
    classes, valid = torch.tensor([[0, 1]]), torch.tensor([[True, True]])  # labels 0 and 1 -> values 1, 2
    targets, pixel_valid = class_targets_from_mask(mask, classes)
    assert targets[0, 0].tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    assert targets[0, 1].tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 1]]
    maps = torch.rand(1, 2, 3, 3)
    keep = mask[0] != 255
    expected = sum(((maps[0, k] - targets[0, k])[keep] ** 2).mean() for k in range(2)) / 2
    torch.testing.assert_close(pixel_attention_loss(maps, targets, valid, pixel_valid), expected)


def test_bbox_attention_loss_is_eq9():
    maps = torch.rand(1, 1, 6, 6)
    box = boxes_to_masks(torch.tensor([[1.0, 2.0, 4.0, 5.0]]), torch.tensor([0]), 1, 6, 6)
    assert box.sum() == 9 and box[0, 2:5, 1:4].all()
    saliency = torch.rand(1, 6, 6)
    b, a, s = box[0], maps[0, 0], saliency[0]
    ones, zeros = torch.ones_like(b), torch.zeros_like(b)
    expected = (((ones - b) * a - zeros) ** 2 + (b * (a - s)) ** 2).mean()
    torch.testing.assert_close(
        bbox_attention_loss(maps, box[None], saliency, torch.tensor([[True]])), expected)


def test_segmentation_losses_are_eq11_eq12():
    seg_logits = torch.randn(2, 3, 4, 4)
    cues = torch.zeros(2, 3, 4, 4)
    cues[0, 0, 0, 0] = cues[0, 1, 1, 1] = cues[1, 2, 2, 2] = cues[1, 0, 2, 2] = 1
    logp = torch.log_softmax(seg_logits, 1)
    expected = -(logp[0, 0, 0, 0] + logp[0, 1, 1, 1] + logp[1, 2, 2, 2] + logp[1, 0, 2, 2]) / 4
    torch.testing.assert_close(segmentation_loss(seg_logits, cues), expected)
    labels = torch.tensor([[1, 0.], [0, 1.]])
    expected_ws = classification_loss(seg_logits[:, 1:].mean((2, 3)), labels) + expected
    torch.testing.assert_close(weakly_supervised_segmentation_loss(seg_logits, cues, labels), expected_ws)
    assert segmentation_loss(seg_logits, torch.zeros_like(cues)) == 0


def test_max_softmax_is_the_largest_probability_of_any_class():
    # ngxbac/GAIN's F.softmax(outputs_am).max(dim=1): not class c's score.
    masked_logits = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]]])     # [B=1, K=2, C=3]
    classes, valid = torch.tensor([[0, 2]]), torch.tensor([[True, True]])
    p = torch.softmax(masked_logits, dim=-1)
    expected = (p[0, 0, 1] + 1 / 3) / 2          # slot 0's largest is class 1, not its class 0
    torch.testing.assert_close(attention_mining_loss(masked_logits, classes, valid, "max_softmax"), expected)
    own_class = (p[0, 0, 0] + p[0, 1, 2]) / 2
    torch.testing.assert_close(attention_mining_loss(masked_logits, classes, valid, "softmax"), own_class)
    assert not torch.isclose(expected, own_class)
    with pytest.raises(ValueError, match="max_softmax"):
        attention_mining_loss(masked_logits, classes, valid, "argmax")


def test_zero_fill_is_normalised_black_where_t_is_1_and_the_image_where_t_is_0():
    images = torch.randn(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.25]]]])
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    out = masked_image(images, mask, "zero", mean=mean, std=std)[0, 0]
    black = torch.tensor([-0.5 / 0.2, -0.4 / 0.25, -0.3 / 0.5])
    torch.testing.assert_close(out[:, 0, 0], black)                         # T = 1
    torch.testing.assert_close(out[:, 0, 1], images[0, :, 0, 1])            # T = 0
    torch.testing.assert_close(out[:, 1, 1], 0.75 * images[0, :, 1, 1] + 0.25 * black)
    with pytest.raises(ValueError, match="one value per channel"):
        masked_image(images, mask, "zero", mean=(0.5, 0.5), std=std)


def test_mean_fill_is_eq3_exactly_and_each_fill_blends_with_its_image():
    torch.manual_seed(0)
    images, mask = torch.randn(2, 3, 8, 8), torch.rand(2, 2, 8, 8)
    assert torch.equal(masked_image(images, mask, "mean"),
                       images[:, None] - mask[:, :, None] * images[:, None])
    blurred = gaussian_blur(images, 0.25 * 8)[:, None]
    torch.testing.assert_close(masked_image(images, mask, "blur", blur_sigma=0.25),
                               (1 - mask[:, :, None]) * images[:, None] + mask[:, :, None] * blurred)
    with pytest.raises(ValueError, match="fill must be one of"):
        masked_image(images, mask, "grey")


def test_blur_fill_keeps_flat_images_and_smooths_edges():
    flat = torch.full((1, 3, 9, 9), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)              # edges replicated
    step = torch.zeros(1, 1, 1, 9)
    step[..., 5:] = 1.0
    out = gaussian_blur(step.expand(1, 1, 9, 9).contiguous(), 1.0)[0, 0, 4]
    assert (out.diff() >= 0).all() and 0 < out[4] < 0.5 < out[5] < 1       # a ramp, not a step
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[..., 7, 7] = 1.0
    kernel = gaussian_blur(impulse, 1.5)[0, 0]
    torch.testing.assert_close(kernel.sum(), torch.tensor(1.0))
    torch.testing.assert_close(kernel, kernel.t())
    with pytest.raises(ValueError, match="blur sigma"):
        gaussian_blur(flat, 0.0)


def test_noise_fill_is_unit_gaussian_per_masked_copy_from_the_torch_rng():
    images, mask = torch.zeros(2, 3, 64, 64), torch.ones(2, 2, 64, 64)
    torch.manual_seed(3)
    out = masked_image(images, mask, "noise")
    assert abs(out.mean().item()) < 0.02 and abs(out.std().item() - 1) < 0.02
    assert not torch.equal(out[:, 0], out[:, 1])          # each class slot its own draw
    torch.manual_seed(3)
    assert torch.equal(masked_image(images, mask, "noise"), out)
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(fill_image(images, "noise", copies=2, generator=generator), out)
    keep = torch.zeros(2, 1, 64, 64)
    assert torch.equal(masked_image(images + 1, keep, "noise")[:, 0], images + 1)   # T = 0
