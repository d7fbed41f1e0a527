"""The DecoyShapes positive control: a corner patch that predicts the class perfectly in the
shortcut splits and not at all in the others, masks on the object only, seeded determinism and
the sample protocol (including extra-label flags)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from gainlib.data import DecoyShapes, collate_samples, mark_extra_labels, validate_sample
from gainlib.data.decoy import DECOY_SPLITS, PATCH_COLOURS, read_patch_classes
from gainlib.trainer import extra_label_indices

N = 240


@pytest.fixture(scope="module")
def splits() -> dict[str, DecoyShapes]:
    return {name: DecoyShapes(name, N, seed=3) for name in DECOY_SPLITS}


@pytest.mark.parametrize("split", ["train", "val"])
def test_shortcut_is_perfect_in_the_shortcut_splits(splits, split):
    ds = splits[split]
    read = read_patch_classes(ds.images, ds.patch_size)     # from the pixels alone
    np.testing.assert_array_equal(read, ds.labels.argmax(1))
    np.testing.assert_array_equal(read, ds.patch_classes)
    assert ds.statistics()["shortcut_accuracy"] == 1.0


@pytest.mark.parametrize("split", ["test", "no_shortcut"])
def test_shortcut_is_uninformative_in_the_other_splits(splits, split):
    ds = splits[split]
    read = read_patch_classes(ds.images, ds.patch_size)
    np.testing.assert_array_equal(read, ds.patch_classes)
    label = ds.labels.argmax(1)
    assert (read >= 0).all()
    # chance is 1/4; 240 images: standard deviation 0.028
    assert abs((read == label).mean() - 0.25) < 0.1
    table = np.zeros((4, 4))
    np.add.at(table, (label, read), 1)
    assert chi2_contingency(table).pvalue > 0.001     # patch class independent of the label


def test_weaker_shortcut_and_absent_patch():
    ds = DecoyShapes("train", 400, shortcut_strength=0.5, seed=1)
    accuracy = ds.statistics()["shortcut_accuracy"]
    assert 0.4 < accuracy < 0.6
    absent = DecoyShapes("test", 40, unrelated_patch="absent", seed=1)
    assert (absent.patch_classes == -1).all() and not absent.patch_masks().any()
    assert (read_patch_classes(absent.images, absent.patch_size) == -1).all()


def test_masks_cover_the_object_only(splits):
    for ds in splits.values():
        label = ds.labels.argmax(1)
        obj = ds.masks > 0
        assert obj.sum(axis=(1, 2)).min() > 50                     # every image shows its object
        np.testing.assert_array_equal(np.unique(ds.masks[obj] - 1 - label.repeat(obj.sum((1, 2)))), [0])
        assert not (obj & ds.patch_masks()).any()                  # never the patch
        assert ds.statistics()["object_pixels_under_patch"] == 0
        image = ds.images.astype(np.float32) / 255
        ground = ~obj & ~ds.patch_masks()
        for i in range(0, len(ds), 17):
            # off the mask and the patch only the plain ground (its grey noise has sigma 0.025)
            median = np.median(image[i][ground[i]], axis=0)
            off = np.abs(image[i] - median).max(-1)
            assert off[ground[i]].max() < 0.15, ds.ids[i]
            # ... and on the mask only the object's flat paint (a few colours), no noisy ground
            assert len(np.unique(ds.images[i][obj[i]], axis=0)) <= 10, ds.ids[i]


def test_patch_colours_are_never_object_colours(splits):
    # No object or ground pixel takes a patch colour, so the patch is read off exactly.
    ds = splits["test"]
    pixels = ds.images[~ds.patch_masks()].astype(np.int16)
    for colour in PATCH_COLOURS:
        target = np.round(np.asarray(colour) * 255).astype(np.int16)
        assert np.abs(pixels - target).max(-1).min() > 5


def test_determinism_for_a_seed():
    a, b = DecoyShapes("test", 24, seed=5), DecoyShapes("test", 24, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.patch_classes, b.patch_classes)
    longer = DecoyShapes("test", 30, seed=5)                     # a longer split extends a shorter one
    np.testing.assert_array_equal(longer.images[:24], a.images)
    assert not np.array_equal(DecoyShapes("test", 24, seed=6).images, a.images)
    # the splits are independent draws: the oracle never trains on a test image
    assert not np.array_equal(DecoyShapes("no_shortcut", 24, seed=5).images, a.images)


def test_samples_follow_the_protocol_and_take_extra_label_flags(splits):
    ds = mark_extra_labels(DecoyShapes("train", 200, seed=0), pixel=0.05, seed=2)
    flagged = extra_label_indices(ds)
    assert len(flagged) == 10
    for i in (flagged[0], 0, 199):
        sample = ds[i]
        validate_sample(sample, num_classes=4)
        assert sample["use_mask"] == (i in flagged) and not sample["use_boxes"]
        assert sample["image"].shape == (3, 48, 48) and sample["image"].dtype == torch.float32
        assert sample["labels"].sum() == 1 and sample["labels"][i % 4] == 1
        assert set(sample["mask"].unique().tolist()) == {0, i % 4 + 1}
    batch = collate_samples([ds[i] for i in flagged[:4]])
    assert batch["use_mask"].all() and batch["has_mask"].all()
    # the flags are per dataset: another seed picks other images
    assert extra_label_indices(mark_extra_labels(ds, pixel=0.05, seed=3)) != flagged


def test_bad_arguments_are_named():
    with pytest.raises(KeyError, match="unknown decoy split"):
        DecoyShapes("unbiased", 4)
    with pytest.raises(ValueError, match="shortcut_strength"):
        DecoyShapes("train", 4, shortcut_strength=1.5)
    with pytest.raises(ValueError, match="patch_size"):
        DecoyShapes("train", 4, patch_size=20)
    with pytest.raises(ValueError, match="unrelated_patch"):
        DecoyShapes("test", 4, unrelated_patch="grey")
