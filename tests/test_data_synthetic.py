"""The synthetic GAIN benchmark: determinism, protocol, and splits that really are what they
claim (statistics measured on the rendered pixels)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from gainlib.data import (
    DecoyShapes,
    SyntheticOrientation,
    SyntheticScenes,
    collate_samples,
    mark_extra_labels,
    per_image,
    pick_subset,
    spectral_residual_saliency,
    synthetic_splits,
    uniform_saliency,
    validate_sample,
)
from gainlib.data.render_orientation import ORIENTATION_DESIGNS, OrientationDesign
from gainlib.data.render_scenes import (CLASSES, NEUTRAL_GREY, SCENE_DESIGNS, SceneDesign, plan_scene,
                                        scene_design)


@pytest.fixture(scope="module")
def scenes():
    return synthetic_splits("scenes", sizes={"train": 400, "val": 100, "unbiased": 300, "no_context": 150,
                                             "context_only": 150, "biased_boat": 40})


@pytest.fixture(scope="module")
def camera():
    return synthetic_splits("camera", sizes={"train": 200, "test_same": 40, "test_shifted": 200})


def _digest(dataset) -> str:
    h = hashlib.sha256()
    for array in (dataset.images, dataset.masks, dataset.labels, dataset.saliency):
        h.update(np.ascontiguousarray(array).tobytes())
    for boxes in dataset.boxes:
        h.update(boxes.tobytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = SyntheticScenes("train", 30, seed=7)
    b = SyntheticScenes("train", 30, seed=7)
    c = SyntheticScenes("train", 30, seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(3))
    o1 = SyntheticOrientation("test_shifted", 12, variant="workpiece", seed=7)
    o2 = SyntheticOrientation("test_shifted", 12, variant="workpiece", seed=7)
    assert _digest(o1) == _digest(o2)


def test_a_longer_split_extends_a_shorter_one():
    short, long = SyntheticScenes("val", 10), SyntheticScenes("val", 25)
    assert np.array_equal(short.images, long.images[:10]) and short.ids == long.ids[:10]


def test_splits_never_share_an_image(scenes, camera):
    seen: dict[bytes, str] = {}
    for group in (scenes, camera):
        for name, dataset in group.items():
            for image, sample_id in zip(dataset.images, dataset.ids):
                key = hashlib.sha1(image.tobytes()).digest()
                assert key not in seen, f"{sample_id} repeats {seen.get(key)}"
                seen[key] = sample_id
    all_ids = [i for group in (scenes, camera) for d in group.values() for i in d.ids]
    assert len(all_ids) == len(set(all_ids))


@pytest.mark.parametrize("size", [64, 96, 128])
def test_samples_follow_the_protocol(size):
    dataset = SyntheticScenes("train", 6, image_size=size)
    for i in range(len(dataset)):
        sample = dataset[i]
        validate_sample(sample, num_classes=4)
        assert sample["image"].shape == (3, size, size) and sample["saliency"].shape == (size, size)
        assert torch.equal(sample["labels"] > 0, torch.from_numpy(dataset.masks_present()[i]))
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    assert batch["box_masks"].shape == (6, 4, size, size)
    orientation = SyntheticOrientation("train", 4, variant="workpiece", image_size=size)
    for i in range(4):
        validate_sample(orientation[i], num_classes=4)


def test_boxes_are_tight_around_each_object(scenes):
    dataset = scenes["val"]
    for i in range(len(dataset)):
        boxes, box_labels = dataset.boxes[i], dataset.box_labels[i]
        assert sorted(box_labels.tolist()) == sorted(np.flatnonzero(dataset.labels[i]).tolist())
        for (x1, y1, x2, y2), c in zip(boxes.astype(int), box_labels):
            ys, xs = np.nonzero(dataset.masks[i] == c + 1)   # one object per class at most
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)


def test_parts_are_small_and_inside_their_objects(scenes):
    dataset = scenes["train"]
    assert not (dataset.part_masks & (dataset.masks == 0)).any()      # decoys have no labelled parts
    stats = dataset.statistics()
    for name in CLASSES:
        assert 0.04 < stats["classes"][name]["part_fraction"] < 0.25, (name, stats["classes"][name])


def test_in_distribution_splits_have_the_requested_context_bias(scenes):
    stats = scenes["train"].statistics()
    for name in CLASSES:
        c = stats["classes"][name]
        assert c["p_on_context"] > 0.9 and c["p_context_given_object"] > 0.9
        assert c["p_context_given_no_object"] < 0.08
    unbiased = scenes["unbiased"].statistics()
    for name in CLASSES:
        c = unbiased["classes"][name]
        assert 0.3 < c["p_on_context"] < 0.7
        assert abs(c["p_context_given_object"] - c["p_context_given_no_object"]) < 0.25


def test_counterfactual_splits_are_counterfactual(scenes):
    no_context = scenes["no_context"]
    assert no_context.labels.sum(1).min() >= 1                        # every image has an object ...
    assert not no_context.context_maps.any()                          # ... and no context anywhere
    context_only = scenes["context_only"]
    assert context_only.labels.sum() == 0 and not (context_only.masks > 0).any()
    assert context_only.context_maps.reshape(len(context_only), -1).max(1).min() >= 1
    boat, water = CLASSES.index("boat"), 1 + CLASSES.index("boat")
    biased_boat = scenes["biased_boat"]
    has_boat = biased_boat.labels[:, boat] == 1
    has_water = (biased_boat.context_maps == water).any(axis=(1, 2))
    assert has_boat.sum() == len(biased_boat) // 2
    assert not (has_boat & has_water).any() and (has_boat | has_water).all()
    assert biased_boat.labels[:, [c for c in range(4) if c != boat]].sum() == 0


def test_context_bias_parameter_is_respected():
    stats = SyntheticScenes("train", 300, context_bias=0.7, saliency=None).statistics()
    on_context = np.mean([stats["classes"][n]["p_on_context"] for n in CLASSES])
    assert 0.6 < on_context < 0.8
    with pytest.raises(ValueError):
        SyntheticScenes("train", 1, context_bias=1.5)
    with pytest.raises(KeyError, match="unknown scenes split"):
        SyntheticScenes("test", 1)


# sha256 of SyntheticScenes train and biased_boat (24 images each, 48 px, seed 0, no prior):
# images, masks, part masks and context maps, as rendered before SceneDesign existed.
V1_DIGEST = "969c3f999c11a48bc4907cec661daf1f9aff974dfbc66206114225c6c2157476"


def test_the_v1_design_renders_the_published_scenes_byte_for_byte():
    h = hashlib.sha256()
    for split in ("train", "biased_boat"):
        d = SyntheticScenes(split, 24, image_size=48, saliency=None)
        for array in (d.images, d.masks, d.part_masks, d.context_maps):
            h.update(np.ascontiguousarray(array).tobytes())
    assert h.hexdigest() == V1_DIGEST
    default = SyntheticScenes("val", 3, image_size=48, saliency=None)
    assert default.design == SCENE_DESIGNS["v1"] == SceneDesign()
    assert default.mean == (0.485, 0.456, 0.406)           # ImageNet's, as before


@pytest.fixture(scope="module")
def designs():
    """The train split of each design, 48 px, same seed."""
    return {name: SyntheticScenes("train", 400, image_size=48, design=name, saliency=None)
            for name in SCENE_DESIGNS}


def test_v2_objects_and_parts_are_larger_and_context_comparable_in_size(designs):
    v1, v2 = designs["v1"].statistics(), designs["v2"].statistics()
    for name in CLASSES:
        a, b = v1["classes"][name], v2["classes"][name]
        assert b["object_fraction"] > 1.6 * a["object_fraction"], name
        assert b["part_fraction"] > a["part_fraction"], name       # part_scale enlarges the part only
        assert b["context_per_object"] < 0.6 * a["context_per_object"], name
        assert b["context_per_object"] < 3.5, name                  # context ~ 2-3 times the object
    boat = designs["v2"].classes.index("boat")
    flag_px = (designs["v2"].part_masks & (designs["v2"].masks == boat + 1)).sum(axis=(1, 2))
    assert np.median(flag_px[flag_px > 0]) >= 12                    # v1's flag: about 6 px at 48 px


@pytest.mark.parametrize("context_bias", [0.98, 0.5])
def test_v2_decoys_stand_on_context_as_often_as_objects(context_bias):
    # v1's decoys always stood on plain ground: a flagless boat on ground was a common negative
    # that duplicated the "boat without water" counterfactual; v2's stand where objects do.
    def decoys(design: str, kind: str) -> list:
        rng = np.random.default_rng(5)
        plans = [plan_scene(rng, kind, context_bias, i, SCENE_DESIGNS[design]) for i in range(3000)]
        return [slot for plan in plans for slot in plan.slots if slot is not None and slot.kind == "decoy"]

    v1, v2 = decoys("v1", "biased"), decoys("v2", "biased")
    assert not any(slot.on_context for slot in v1)
    assert len(v2) / 3000 == pytest.approx(SCENE_DESIGNS["v2"].decoy_rate, abs=0.03)
    assert np.mean([slot.on_context for slot in v2]) == pytest.approx(context_bias, abs=0.05)
    for kind in ("no_context", "context_only", "biased_boat"):     # counterfactuals stay so
        assert not any(slot.on_context for slot in decoys("v2", kind))


def test_v2_erased_value_is_a_grey_that_no_palette_uses(designs):
    v1, v2 = designs["v1"], designs["v2"]
    assert v2.mean == NEUTRAL_GREY and v2.std == SCENE_DESIGNS["v2"].std
    assert v1.statistics()["near_erased_value"] > 0.05       # ImageNet's mean lies in v1's ground
    assert v2.statistics()["near_erased_value"] < 0.001
    sample = v2[0]["image"]                                   # normalised with the design's own mean
    std = torch.tensor(SCENE_DESIGNS["v2"].std).view(3, 1, 1)
    expected = (torch.from_numpy(v2.images[0]).permute(2, 0, 1).float() / 255 - 0.5) / std
    assert torch.allclose(sample, expected, atol=1e-5)
    explicit = SyntheticScenes("val", 2, image_size=48, design="v2", saliency=None, mean=(0.1, 0.2, 0.3),
                               std=(1.0, 1.0, 1.0))
    assert explicit.mean == (0.1, 0.2, 0.3)                   # an explicit normalisation wins


def test_v2_counterfactual_splits_stay_counterfactual():
    boat, water = CLASSES.index("boat"), 1 + CLASSES.index("boat")
    biased_boat = SyntheticScenes("biased_boat", 60, image_size=48, design="v2", saliency=None)
    has_boat = biased_boat.labels[:, boat] == 1
    has_water = (biased_boat.context_maps == water).any(axis=(1, 2))
    assert has_boat.sum() == 30 and not (has_boat & has_water).any() and (has_boat | has_water).all()
    no_context = SyntheticScenes("no_context", 60, image_size=48, design="v2", saliency=None)
    assert not no_context.context_maps.any() and no_context.labels.sum(1).min() >= 1


def test_v3_adds_a_smaller_second_instance_in_the_biased_splits_only():
    # What attention mining needs: the attention may peak on one instance and leave another.
    def instances(kind: str, design: str = "v3") -> list[int]:
        rng = np.random.default_rng(3)
        plans = [plan_scene(rng, kind, 0.98, i, SCENE_DESIGNS[design]) for i in range(2000)]
        counts = []
        for plan in plans:
            objects = [s.cls for s in plan.slots if s is not None and s.kind == "object"]
            counts += [objects.count(c) for c in set(objects)]
        return counts

    counts = instances("biased")
    assert max(counts) == 2 and 0.3 < np.mean(np.array(counts) == 2) < 0.5   # free slots cap it
    assert max(instances("biased", "v2")) == 1
    for kind in ("no_context", "biased_boat"):       # the counterfactual splits stay as in v2
        assert max(instances(kind)) == 1
    scenes = SyntheticScenes("train", 200, image_size=64, design="v3", saliency=None)
    areas = []                                       # each object's pixels, per class and image
    for mask in scenes.masks:
        for c in np.unique(mask)[1:]:
            labelled, n = ndimage.label(mask == c)
            if n == 2:
                small, large = sorted(np.bincount(labelled.ravel())[1:])
                areas.append(small / large)
    assert areas and np.median(areas) < 0.8          # the second instance is the smaller
    with pytest.raises(ValueError, match="second_instance"):
        SceneDesign(second_instance=2.0)
    with pytest.raises(ValueError, match="second_scale"):
        SceneDesign(second_scale=0.2)


def test_scene_designs_are_checked():
    with pytest.raises(KeyError, match="unknown scene design"):
        scene_design("v9")
    with pytest.raises(ValueError, match="object_scale"):
        SceneDesign(object_scale=(0.3, 0.6))
    with pytest.raises(ValueError, match="part_scale"):
        SceneDesign(part_scale=3.0)
    with pytest.raises(ValueError, match="decoy_rate"):
        SceneDesign(decoy_rate=1.5)
    with pytest.raises(ValueError, match="both mean and std"):
        SceneDesign(mean=(0.5, 0.5, 0.5))
    assert SCENE_DESIGNS["v1"].changes() == {}
    assert set(SCENE_DESIGNS["v2"].changes()) == {"object_scale", "part_scale", "decoy_rate",
                                                  "decoys_on_context", "grey_free", "mean", "std"}


def test_orientation_classes_are_balanced_and_marked_by_the_critical_area(camera):
    for name, dataset in camera.items():
        stats = dataset.statistics()
        assert stats["class_counts"][0] == stats["class_counts"][1]
        for i in range(len(dataset)):
            k = int(dataset.labels[i].argmax())
            assert set(np.unique(dataset.masks[i]).tolist()) == {0, k + 1}
            x1, y1, x2, y2 = dataset.boxes[i][0].astype(int)
            ys, xs = np.nonzero(dataset.masks[i])
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
        assert 0.05 < stats["critical_fraction_of_object"] < 0.35


def test_orientation_shortcut_lives_only_in_the_training_domain(camera):
    train, shifted = camera["train"].statistics(), camera["test_shifted"].statistics()
    assert train["p_light_follows_class"] > 0.9
    assert abs(shifted["p_light_follows_class"] - 0.5) < 0.12
    assert shifted["object_fraction"] < 0.7 * train["object_fraction"]      # another scale
    assert camera["test_same"].statistics()["p_light_follows_class"] > 0.85
    four = SyntheticOrientation("train", 80, variant="workpiece", shortcut_strength=0.0, saliency=None)
    assert four.statistics()["p_light_follows_class"] < 0.45                   # chance is 0.25


@pytest.mark.parametrize("variant, quarter_turns", [("camera", 2), ("workpiece", 1)])
def test_orientation_object_is_symmetric_apart_from_its_critical_area(variant, quarter_turns):
    """Rotating the object by one class step maps it onto itself outside the critical areas,
    so the marker and the gap are the only orientation cues on the object."""
    from gainlib.data import drawing
    from gainlib.data.render_orientation import _camera, _workpiece

    draw = _camera if variant == "camera" else _workpiece
    xx, yy = drawing.pixel_centres(64)
    u, v = drawing.Frame(32.0, 32.0, scale=20.0).local(xx, yy)
    canvas = np.zeros((64, 64, 3), np.float32)
    obj, critical = draw(canvas, u, v, np.random.default_rng(0))
    turned_obj, turned_critical = np.rot90(obj, quarter_turns), np.rot90(critical, quarter_turns)
    elsewhere = ~critical & ~turned_critical
    assert obj.sum() > 500
    assert np.array_equal(obj & elsewhere, turned_obj & elsewhere)
    assert not np.array_equal(obj, turned_obj)                       # but the object as a whole is not


def test_mark_extra_labels_counts_fractions_and_nesting():
    dataset = SyntheticScenes("train", 50, saliency=None)
    mark_extra_labels(dataset, pixel=5, boxes=0.2, seed=1)
    assert dataset.use_mask.sum() == 5 and dataset.use_boxes.sum() == 10
    flagged = [i for i in range(len(dataset)) if dataset[i]["use_mask"]]
    assert flagged == np.flatnonzero(dataset.use_mask).tolist()
    assert set(pick_subset(50, 5, 1, "pixel")) <= set(pick_subset(50, 20, 1, "pixel"))
    mark_extra_labels(dataset, pixel=5, seed=1)
    assert dataset.use_mask.sum() == 5 and dataset.use_boxes.sum() == 0
    with pytest.raises(ValueError, match="only 50"):
        mark_extra_labels(dataset, pixel=51)
    batch = collate_samples([dataset[i] for i in flagged])
    assert batch["use_mask"].all()


def test_samples_are_built_once_and_flags_stay_per_copy():
    import copy

    from gainlib.data.sample import build_sample

    dataset = SyntheticScenes("val", 6, image_size=32)
    first = dataset[2]
    assert dataset[2]["image"] is first["image"]            # built once, then reused
    fresh = build_sample(image=dataset.images[2], labels=dataset.labels[2], sample_id=dataset.ids[2],
                         mask=dataset.masks[2], boxes=dataset.boxes[2], box_labels=dataset.box_labels[2],
                         saliency=dataset.saliency[2])
    assert first.keys() == fresh.keys()
    for key, value in fresh.items():
        assert torch.equal(first[key], value) if torch.is_tensor(value) else first[key] == value, key
    assert dataset[-1]["id"] == dataset.ids[5]
    flagged = mark_extra_labels(copy.copy(dataset), pixel=[dataset.ids[2]], boxes=[dataset.ids[4]])
    assert flagged[2]["use_mask"] and not dataset[2]["use_mask"]    # the copy's flags, not the original's
    assert flagged[4]["use_boxes"] and flagged.extra_label_indices() == [2, 4]
    assert dataset.extra_label_indices() == []


def test_joint_transforms_apply_to_synthetic_samples():
    flip = v2.RandomHorizontalFlip(p=1.0)
    plain, flipped = SyntheticScenes("val", 4), SyntheticScenes("val", 4, transforms=flip)
    for i in range(4):
        a, b = plain[i], flipped[i]
        assert torch.equal(a["image"].flip(-1), b["image"]) and torch.equal(a["mask"].flip(-1), b["mask"])
        assert torch.equal(a["saliency"].flip(-1), b["saliency"])
        if len(a["boxes"]):
            assert torch.allclose(b["boxes"][:, 0], 64 - a["boxes"][:, 2])


def test_dataloader_with_workers():
    dataset = SyntheticScenes("val", 8)
    batch = next(iter(DataLoader(dataset, batch_size=8, num_workers=2, collate_fn=collate_samples)))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["id"] == dataset.ids


# --- saliency priors ----------------------------------------------------------------------------

def test_spectral_residual_highlights_a_small_odd_patch():
    image = np.full((60, 80, 3), 120, np.uint8)
    image[::4] = 130                                                    # a regular texture ...
    image[20:30, 50:60] = (240, 30, 30)                                 # ... and one odd patch
    saliency = spectral_residual_saliency(image)
    assert saliency.shape == (60, 80) and saliency.dtype == np.float32
    assert saliency.min() >= 0 and saliency.max() <= 1
    assert saliency[20:30, 50:60].mean() > 3 * saliency[40:, :30].mean()
    batch = spectral_residual_saliency(np.stack([image, image]))
    assert np.allclose(batch[0], saliency, atol=1e-6)


def test_priors_are_pluggable():
    constant = np.zeros((2, 16, 16, 3), np.uint8)
    assert (uniform_saliency(constant) == 1).all()
    assert (spectral_residual_saliency(constant) == 0).all()             # no structure, no saliency
    centre = per_image(lambda img: np.pad(np.ones((4, 4), np.float32), 6))
    assert centre(constant).shape == (2, 16, 16)
    dataset = SyntheticScenes("val", 3, saliency=uniform_saliency)
    assert (dataset[0]["saliency"] == 1).all()
    assert "saliency" not in SyntheticScenes("val", 3, saliency=None)[0]


def test_camera_masks_can_be_the_filled_boxes():
    boxes = SyntheticOrientation("train", 6, variant="camera", image_size=48, mask_from_box=True,
                                 saliency=None)
    pixels = SyntheticOrientation("train", 6, variant="camera", image_size=48, saliency=None)
    for i in range(6):
        x0, y0, x1, y1 = pixels.boxes[i][0].astype(int)
        expected = np.zeros((48, 48), np.uint8)
        expected[y0:y1, x0:x1] = pixels.labels[i].argmax() + 1
        np.testing.assert_array_equal(boxes.masks[i], expected)
        assert (boxes.masks[i][pixels.masks[i] > 0] == pixels.masks[i][pixels.masks[i] > 0]).all()
    np.testing.assert_array_equal(boxes.images, pixels.images)


# sha256 of SyntheticOrientation train and test_shifted (8 images each, 48 px, seed 0, no
# prior, camera then workpiece): images, masks and object masks, as rendered before
# OrientationDesign existed.
ORIENTATION_V1_DIGEST = "48034a6229b69d36df2cf59f848584e8d1255af067b8a6f1a16ede200289ee86"


def test_the_v1_orientation_design_renders_the_published_images_byte_for_byte():
    h = hashlib.sha256()
    for variant in ("camera", "workpiece"):
        for split in ("train", "test_shifted"):
            d = SyntheticOrientation(split, 8, variant=variant, image_size=48, saliency=None)
            for array in (d.images, d.masks, d.object_masks):
                h.update(np.ascontiguousarray(array).tobytes())
    assert h.hexdigest() == ORIENTATION_V1_DIGEST
    assert SyntheticOrientation("train", 1, saliency=None).design == ORIENTATION_DESIGNS["v1"]


# The fields of an OrientationDesign that move the training domain (the rest move the shift).
TRAINING_FIELDS = ("train_background", "marker_scale", "train_rotation", "train_scale")


def test_orientation_designs_move_the_training_domain_only_through_its_fields():
    v1 = OrientationDesign()
    for name, design in ORIENTATION_DESIGNS.items():
        train = {v: SyntheticOrientation("train", 6, variant="workpiece", image_size=48,
                                         saliency=None, design=v) for v in ("v1", name)}
        keeps = all(getattr(design, f) == getattr(v1, f) for f in TRAINING_FIELDS)
        assert np.array_equal(train["v1"].images, train[name].images) == keeps, name
        shifted = SyntheticOrientation("test_shifted", 40, image_size=48, saliency=None,
                                       design=design)
        low, high = design.shifted_scale
        size = shifted.statistics()["object_fraction"]
        assert 1.5 * low ** 2 < size < 4 * high ** 2, (name, size)   # a camera ~ 2.3 s^2
    with pytest.raises(ValueError, match="shifted_scale"):
        OrientationDesign(shifted_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="shifted_squash"):
        OrientationDesign(shifted_squash=(0.5, 1.2))
    with pytest.raises(KeyError, match="unknown orientation design"):
        SyntheticOrientation("train", 1, design="v9")
    assert OrientationDesign(shifted_rotation=0.1).changes() == {"shifted_rotation": 0.1}


@pytest.mark.parametrize("variant", ["camera", "workpiece"])
def test_a_larger_marker_grows_inside_the_critical_area(variant):
    """``marker_scale`` changes the marker's pixels and nothing else, and the critical area
    (the mask and box the extra labels give) grows to hold it."""
    small, large = (SyntheticOrientation("train", 8, variant=variant, image_size=64,
                                         saliency=None, design=OrientationDesign(marker_scale=m))
                    for m in (1.0, 1.8))
    changed = (small.images != large.images).any(-1)
    assert changed.any() and not (changed & (large.masks == 0)).any()
    assert (large.masks > 0).sum() >= (small.masks > 0).sum()
    assert (changed.sum((1, 2)) > 0).all()           # every image's marker grew


def test_the_training_pose_fields_move_the_training_objects():
    wide = OrientationDesign(train_rotation=0.35, train_scale=(0.2, 0.36))
    base, moved = (SyntheticOrientation("train", 20, variant="camera", image_size=48,
                                        saliency=None, design=d) for d in ("v1", wide))
    assert np.array_equal(base.labels, moved.labels)
    sizes = [d.statistics()["object_fraction"] for d in (base, moved)]
    assert sizes[1] < sizes[0]                       # smaller objects on average
    with pytest.raises(ValueError, match="train_rotation"):
        OrientationDesign(train_rotation=1.0)
    with pytest.raises(ValueError, match="marker_scale"):
        OrientationDesign(marker_scale=3.0)


def test_varied_training_backgrounds_change_the_training_domain_and_nothing_else():
    varied = OrientationDesign(train_background="varied")
    for split in ("train", "test_same", "test_lamp"):
        desk = SyntheticOrientation(split, 6, image_size=48, saliency=None)
        other = SyntheticOrientation(split, 6, image_size=48, saliency=None, design=varied)
        assert not np.array_equal(desk.images, other.images)
        assert np.array_equal(desk.labels, other.labels)
    shifted = [SyntheticOrientation("test_shifted", 6, image_size=48, saliency=None, design=d)
               for d in ("v1", varied)]
    assert np.array_equal(shifted[0].images, shifted[1].images)
    # The desk is always warm (more red than blue in a corner); varied backgrounds take any hue.
    desk = SyntheticOrientation("train", 40, image_size=48, saliency=None)
    other = SyntheticOrientation("train", 40, image_size=48, saliency=None, design=varied)
    bluer = [float((data.images[:, :3, :3, 2].astype(int).mean((1, 2))
                    > data.images[:, :3, :3, 0].astype(int).mean((1, 2))).mean())
             for data in (desk, other)]
    assert bluer[0] == 0.0 and bluer[1] > 0.2
    assert varied.changes() == {"train_background": "varied"}
    with pytest.raises(ValueError, match="train_background"):
        OrientationDesign(train_background="beach")


@pytest.mark.parametrize("make", [
    lambda: SyntheticScenes("train", 12, image_size=32, design="v3"),
    lambda: SyntheticOrientation("test_shifted", 8, variant="workpiece", image_size=32,
                                 design="v2-workpiece"),
    lambda: DecoyShapes("test", 8, image_size=32),
], ids=["scenes", "orientation", "decoy"])
def test_a_saved_split_loads_back_as_the_same_samples(make, tmp_path):
    dataset = make()
    dataset.save_arrays(tmp_path / "split.npz")
    again = type(dataset).load_arrays(tmp_path / "split.npz")
    assert vars(again).keys() == vars(dataset).keys() and len(again) == len(dataset)
    for i in range(len(dataset)):
        a, b = dataset[i], again[i]
        assert a.keys() == b.keys()
        for key, value in a.items():
            same = torch.equal(value, b[key]) if torch.is_tensor(value) else value == b[key]
            assert same, (i, key)
    other = DecoyShapes if isinstance(dataset, SyntheticScenes) else SyntheticScenes
    with pytest.raises(ValueError, match=f"not a {other.__name__}"):
        other.load_arrays(tmp_path / "split.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="junk.npz"):
        type(dataset).load_arrays(tmp_path / "junk.npz")
