"""The sample protocol: validation names the sample and the problem; collation is exact."""

import pytest
import torch

from gainlib.data.protocol import SampleError, boxes_to_masks, collate_samples, denormalize, validate_sample


def _sample(**overrides):
    sample = {"image": torch.zeros(3, 8, 8), "labels": torch.tensor([0.0, 1.0, 0.0]),
              "mask": torch.zeros(8, 8, dtype=torch.long), "id": "img-7"}
    sample.update(overrides)
    return sample


@pytest.mark.parametrize("overrides,message", [
    ({"image": torch.zeros(8, 8)}, "'image' must be a float tensor"),
    ({"image": torch.zeros(3, 8, 8, dtype=torch.uint8)}, "floating point"),
    ({"labels": torch.tensor([0.0, 2.0, 0.0])}, "multi-hot"),
    ({"mask": torch.zeros(7, 8, dtype=torch.long)}, r"'mask' must be \[H, W\] = \[8, 8\]"),
    ({"mask": torch.full((8, 8), 9)}, "'mask' values must be 0..3 or 255"),
    ({"mask": torch.zeros(8, 8)}, "integer class indices"),
    ({"boxes": torch.zeros(2, 3)}, r"'boxes' must be \[N, 4\]"),
    ({"boxes": torch.zeros(1, 4), "box_labels": torch.tensor([5])}, "label indices 0..2"),
    ({"mask": None, "use_mask": True}, "use_mask=True but the sample has no 'mask'"),
    ({"use_boxes": True}, "use_boxes=True but the sample has no 'boxes'"),
    ({"saliency": torch.zeros(4, 4)}, "'saliency' must be"),
])
def test_bad_samples_get_a_clear_error_naming_the_sample(overrides, message):
    with pytest.raises(SampleError, match=message) as info:
        validate_sample(_sample(**overrides))
    assert "img-7" in str(info.value)


def test_label_count_mismatch_and_mixed_sizes_are_caught_when_collating():
    with pytest.raises(SampleError, match="has 2 classes, expected 3"):
        collate_samples([_sample(), _sample(labels=torch.tensor([1.0, 0.0]))])
    with pytest.raises(SampleError, match="different image sizes"):
        collate_samples([_sample(), _sample(image=torch.zeros(3, 9, 9), mask=torch.zeros(9, 9, dtype=torch.long))])
    with pytest.raises(SampleError, match="empty"):
        collate_samples([])


def test_collate_fills_absent_extras_and_builds_box_masks():
    with_boxes = _sample(boxes=torch.tensor([[0.0, 0.0, 4.0, 2.0], [6.0, 6.0, 8.0, 8.0]]),
                         box_labels=torch.tensor([1, 1]), use_boxes=True,
                         saliency=torch.ones(8, 8))
    batch = collate_samples([with_boxes, _sample(mask=None)])
    assert batch["image"].shape == (2, 3, 8, 8) and batch["labels"].shape == (2, 3)
    assert batch["has_mask"].tolist() == [True, False] and (batch["mask"][1] == 255).all()
    assert batch["use_boxes"].tolist() == [True, False] and batch["has_boxes"].tolist() == [True, False]
    expected = torch.zeros(8, 8)
    expected[0:2, 0:4] = 1
    expected[6:8, 6:8] = 1
    assert torch.equal(batch["box_masks"][0, 1], expected)
    assert batch["box_masks"][0, [0, 2]].sum() == 0 and batch["box_masks"][1].sum() == 0
    assert batch["saliency"][0].sum() == 64 and batch["has_saliency"].tolist() == [True, False]
    assert batch["id"] == ["img-7", "img-7"]


def test_a_bad_value_in_a_batch_is_traced_to_its_sample():
    # Collate checks value ranges once for the batch, then searches it only when they fail.
    bad = _sample(id="img-9", mask=torch.full((8, 8), 9))
    with pytest.raises(SampleError, match="img-9.*'mask' values must be 0..3"):
        collate_samples([_sample(), bad, _sample()])
    bad = _sample(id="img-9", boxes=torch.zeros(1, 4), box_labels=torch.tensor([3]))
    with pytest.raises(SampleError, match="img-9.*label indices 0..2"):
        collate_samples([_sample(), bad])
    with pytest.raises(SampleError, match="img-9.*multi-hot"):
        collate_samples([_sample(), _sample(id="img-9", labels=torch.tensor([0.0, 0.5, 0.0]))])


def test_batched_box_masks_equal_each_samples_own():
    generator = torch.Generator().manual_seed(0)
    samples = []
    for i in range(6):
        n = i % 3                                     # 0, 1 or 2 boxes; sample 5 has none at all
        corners = torch.rand(n, 2, 2, generator=generator) * 8
        boxes = torch.cat([corners.min(1).values, corners.max(1).values], 1)
        labels = torch.randint(0, 3, (n,), generator=generator)
        samples.append(_sample(boxes=boxes, box_labels=labels) if i != 5 else _sample())
    batch = collate_samples(samples)
    for i, s in enumerate(samples):
        expected = (boxes_to_masks(s["boxes"], s["box_labels"], 3, 8, 8) if "boxes" in s
                    else torch.zeros(3, 8, 8))
        assert torch.equal(batch["box_masks"][i], expected), i


def test_box_pixels_follow_the_pixel_centre_rule():
    masks = boxes_to_masks(torch.tensor([[0.4, 0.4, 2.5, 1.5]]), torch.tensor([0]), 1, 3, 3)
    assert masks[0].tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_denormalize_inverts_imagenet_normalisation():
    image = torch.rand(3, 4, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(denormalize((image - mean) / std), image)
