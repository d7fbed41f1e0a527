"""The family of Biased Boat scenes: the measured bias follows the scenario, the counterfactual
halves are what they say, masks mark the boat only where the labels do, contrast and size do
what they claim, seeded determinism, the save/load round trip and the sample protocol."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gainlib.data import (CONTEXT_SPLITS, BiasScenario, ContextScenes, collate_samples, mark_extra_labels,
                          validate_sample)
from gainlib.data.render_scenes import CLASSES

MULTI = BiasScenario("multi", multi_label=True)


@pytest.fixture(scope="module")
def train() -> ContextScenes:
    return ContextScenes("train", 1000, seed=1)


def test_determinism_and_prefix_extension():
    a, b = ContextScenes("val", 20, seed=5), ContextScenes("val", 20, seed=5)
    for name in ("images", "masks", "labels", "context_present", "object_present", "distractor_masks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    longer = ContextScenes("val", 30, seed=5)                    # a longer split extends a shorter one
    np.testing.assert_array_equal(longer.images[:20], a.images)
    np.testing.assert_array_equal(longer.masks[:20], a.masks)
    assert not np.array_equal(ContextScenes("val", 20, seed=6).images, a.images)
    assert not np.array_equal(ContextScenes("train", 20, seed=5).images, a.images)   # independent splits
    big = ContextScenes("val", 6, seed=5, image_size=64)
    assert big.images.shape == (6, 64, 64, 3) and big.images.dtype == np.uint8
    np.testing.assert_array_equal(big.images, ContextScenes("val", 6, seed=5, image_size=64).images)


def test_label_shapes_single_and_multi_label():
    single = ContextScenes("train", 40)
    assert single.classes == ("boat",) and single.num_classes == 1
    assert single.labels.shape == (40, 1) and single.labels.dtype == np.float32
    np.testing.assert_array_equal(single.labels[:, 0], np.arange(40) % 2 == 0)
    multi = ContextScenes("train", 400, scenario=MULTI)
    assert multi.classes == CLASSES and multi.num_classes == 4 and multi.labels.shape == (400, 4)
    np.testing.assert_array_equal(multi.labels[:, 0], multi.object_present)
    share = multi.labels[:, 1:].mean(0)           # each other class with P = 0.35 (sd 0.024)
    assert (np.abs(share - 0.35) < 0.1).all(), share
    # ... independently of the boat
    for c in range(1, 4):
        with_boat, without = multi.labels[multi.object_present, c].mean(), multi.labels[~multi.object_present, c].mean()
        assert abs(with_boat - without) < 0.15, (CLASSES[c], with_boat, without)
    assert ContextScenes("train", 0).labels.shape == (0, 1)


def test_measured_bias_follows_the_scenario(train):
    stats = train.statistics()
    assert stats["images"] == 1000 and stats["object_share"] == 0.5
    assert abs(stats["p_context_given_object"] - 0.98) < 0.05
    assert abs(stats["p_context_given_no_object"] - 0.02) < 0.05
    conjunctive = ContextScenes("train", 1000, seed=1, scenario=BiasScenario(
        "conjunctive", context_given_object=0.9, context_given_no_object=0.7)).statistics()
    assert abs(conjunctive["p_context_given_object"] - 0.9) < 0.05
    assert abs(conjunctive["p_context_given_no_object"] - 0.7) < 0.05
    unbiased = ContextScenes("unbiased", 1000, seed=1).statistics()
    assert abs(unbiased["p_context_given_object"] - 0.5) < 0.05
    assert abs(unbiased["p_context_given_no_object"] - 0.5) < 0.05
    assert set(CONTEXT_SPLITS) == {"train", "val", "unbiased", "unbiased_val", "counterfactual"}


def test_unbiased_scenario():
    scenario = BiasScenario("small", object_scale=0.15, contrast=0.5).unbiased()
    assert scenario == BiasScenario("small-unbiased", object_scale=0.15, contrast=0.5,
                                    context_given_object=0.5, context_given_no_object=0.5)


@pytest.mark.parametrize("scenario", [BiasScenario(), MULTI])
def test_counterfactual_halves(scenario):
    ds = ContextScenes("counterfactual", 41, scenario=scenario, seed=2)
    first = np.arange(41) < 20
    np.testing.assert_array_equal(ds.object_present, first)      # a boat on land ...
    np.testing.assert_array_equal(ds.context_present, ~first)    # ... or water without a boat
    np.testing.assert_array_equal(ds.labels[:, 0], first)
    assert not ds.context_masks()[first].any()
    assert ds.context_masks()[~first].sum(axis=(1, 2)).min() > 0.5 * 32 * 32


@pytest.mark.parametrize("scenario", [BiasScenario(), MULTI])
def test_masks_cover_the_boat_only_where_labels_say_boat(scenario):
    ds = ContextScenes("unbiased", 200, scenario=scenario, seed=4)
    boat = ds.masks == 1
    np.testing.assert_array_equal(boat.any(axis=(1, 2)), ds.labels[:, 0] > 0)
    np.testing.assert_array_equal(ds.labels[:, 0] > 0, ds.object_present)
    assert boat.sum(axis=(1, 2))[ds.object_present].min() > 10
    assert set(np.unique(ds.masks)) <= set(range(len(ds.classes) + 1))
    for c in range(len(ds.classes)):                             # labels are the visible classes
        np.testing.assert_array_equal((ds.masks == c + 1).any(axis=(1, 2)), ds.labels[:, c] > 0)
    for i in range(len(ds)):                                     # one box per visible object
        np.testing.assert_array_equal(ds.box_labels[i], np.flatnonzero(ds.labels[i]))
        for box, c in zip(ds.boxes[i], ds.box_labels[i]):
            ys, xs = np.nonzero(ds.masks[i] == c + 1)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    # the context is the visible water: never an object or a distractor
    context = ds.context_masks()
    assert not (context & (ds.masks > 0)).any() and not (context & ds.distractor_masks).any()
    assert (context.any(axis=(1, 2)) == ds.context_present).all()


def test_the_boat_stays_inside_the_image_at_the_largest_scale():
    for size in (32, 64):
        ds = ContextScenes("train", 40, scenario=BiasScenario(object_scale=0.45), image_size=size)
        area = (ds.masks == 1).sum(axis=(1, 2))[ds.object_present] / size ** 2
        assert area.min() > 0.2                     # large, and drawn whole (not cut at a border)


def test_lower_contrast_brings_the_boat_towards_its_background():
    full = ContextScenes("train", 60, seed=3)
    faint = ContextScenes("train", 60, seed=3, scenario=BiasScenario(contrast=0.3))
    np.testing.assert_array_equal(full.masks, faint.masks)      # contrast changes no random draw
    boat = full.masks == 1
    off = ~boat
    np.testing.assert_array_equal(full.images[off], faint.images[off])
    # the background under the boat: the median of each image's other pixels
    gaps = []
    for ds in (full, faint):
        image = ds.images.astype(np.float32)
        gap = [np.abs(image[i][boat[i]] - np.median(image[i][off[i]], axis=0)).mean()
               for i in np.flatnonzero(ds.object_present)]
        gaps.append(np.array(gap))
    assert (gaps[1] < gaps[0] + 1).all() and gaps[1].mean() < 0.5 * gaps[0].mean()


def test_object_scale_changes_the_boat_area():
    areas = [ContextScenes("train", 100, scenario=BiasScenario(object_scale=scale)).statistics()["object_area"]
             for scale in (0.12, 0.25, 0.4)]
    assert areas[0] < areas[1] < areas[2]
    assert 2.5 < areas[1] / areas[0] < 6          # roughly the square of the scale ratio (4.3)


def test_save_and_load_round_trip(tmp_path):
    for scenario in (BiasScenario(contrast=0.7), MULTI):
        ds = ContextScenes("counterfactual", 12, scenario=scenario, seed=7)
        ds.save_arrays(tmp_path / "split.npz")
        back = ContextScenes.load_arrays(tmp_path / "split.npz")
        assert back.scenario == scenario and isinstance(back.scenario, BiasScenario)
        assert back.classes == ds.classes and back.split == ds.split and back.kind == ds.kind
        assert back.ids == ds.ids and back.saliency is None
        for name in ("images", "masks", "labels", "context_present", "object_present", "distractor_masks"):
            np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
            assert getattr(back, name).dtype == getattr(ds, name).dtype
        for a, b in zip(back.boxes, ds.boxes):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(back.context_masks(), ds.context_masks())
        assert back.statistics() == ds.statistics()


def test_samples_follow_the_protocol():
    ds = mark_extra_labels(ContextScenes("train", 40, scenario=MULTI), pixel=0.1, seed=0)
    for i in range(len(ds)):
        sample = ds[i]
        validate_sample(sample, num_classes=4)
        assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
        assert sample["labels"][0] == float(i % 2 == 0)
    batch = collate_samples([ds[i] for i in range(8)])
    assert batch["image"].shape == (8, 3, 32, 32)
    single = ContextScenes("counterfactual", 6, image_size=64)
    for i in range(6):
        validate_sample(single[i], num_classes=1)


def test_bad_arguments_are_named():
    with pytest.raises(KeyError, match="unknown context split 'test'.*counterfactual"):
        ContextScenes("test", 4)
    with pytest.raises(ValueError, match="n must be"):
        ContextScenes("train", -1)
    with pytest.raises(ValueError, match="image_size"):
        ContextScenes("train", 4, image_size=8)
    with pytest.raises(ValueError, match="object_scale"):
        ContextScenes("train", 4, scenario=BiasScenario(object_scale=0.05), image_size=32)
    with pytest.raises(ValueError, match="seed"):
        ContextScenes("train", 4, seed=-1)
    with pytest.raises(TypeError, match="BiasScenario"):
        ContextScenes("train", 4, scenario={"name": "x"})
    for field, value in (("context_given_object", 1.5), ("context_given_no_object", -0.1),
                         ("context_given_object", float("nan")), ("object_scale", 0.0),
                         ("object_scale", 0.5), ("contrast", 0.0), ("contrast", 1.2),
                         ("mask_share", 2.0), ("multi_label", "yes"), ("name", "")):
        with pytest.raises(ValueError, match=field):
            BiasScenario(**{field: value})
    with pytest.raises(ValueError, match="contrast"):
        dataclasses.replace(BiasScenario(), contrast=-1.0)
