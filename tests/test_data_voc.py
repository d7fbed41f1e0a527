"""The VOC loader on a tiny generated VOC + SBD tree: loading, alignment under joint
augmentation, subsets and every kind of bad data. No test touches the network."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from gainlib.data import (
    DataFileError,
    VOC_CLASSES,
    VOCDataset,
    collate_samples,
    denormalize,
    mark_extra_labels,
    read_id_list,
    spectral_residual_saliency,
    validate_sample,
    voc_transforms,
)
from gainlib.data.transforms import AlignedResize
from gainlib.data.voc_layout import read_mask, write_annotation_xml, write_id_list, write_mask_png
from voc_fixture import make_fake_voc


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture()
def broken(tmp_path):
    """A fresh copy that a test may damage."""
    return make_fake_voc(tmp_path)


def test_loads_images_labels_masks_and_boxes(fake):
    dataset = VOCDataset(fake.voc, "train", mask_dir="SegmentationClass")
    assert dataset.ids == fake.lists["train"]
    assert dataset.num_classes == 20 and dataset.classes == VOC_CLASSES
    for i, sample_id in enumerate(dataset.ids):
        sample = dataset[i]
        validate_sample(sample, num_classes=20)
        objects = fake.objects[sample_id]
        expected = np.zeros(20, np.float32)
        expected[[c for c, _ in objects]] = 1
        assert sample["id"] == sample_id
        assert torch.equal(sample["labels"], torch.from_numpy(expected))
        assert torch.equal(sample["boxes"], torch.tensor([box for _, box in objects], dtype=torch.float32))
        assert sample["box_labels"].tolist() == [c for c, _ in objects]
        mask = sample["mask"]
        assert mask.dtype == torch.int64
        for c, (x1, y1, x2, y2) in objects:
            assert (mask[y1:y2, x1:x2] == c + 1).all()
            assert ((mask == c + 1).sum() == (x2 - x1) * (y2 - y1))
        assert set(mask.unique().tolist()) <= {0, 255, *(c + 1 for c, _ in objects)}
        image = denormalize(sample["image"])
        x1, y1, x2, y2 = objects[0][1]
        assert image[0, y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean() > 0.7        # red object ...
        assert image[1, y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean() < 0.3
        assert sample["use_mask"] is False and sample["use_boxes"] is False


def test_root_may_be_the_devkit_parent_and_labels_may_come_from_masks(fake):
    from_xml = VOCDataset(fake.root, "train", mask_dir="SegmentationClass")
    from_mask = VOCDataset(fake.root, "train", mask_dir="SegmentationClass", labels_from="mask")
    assert from_xml.root == fake.voc
    for i in range(len(from_xml)):
        assert torch.equal(from_xml[i]["labels"], from_mask[i]["labels"])


def test_auto_mask_dir_prefers_the_aug_masks_and_reads_sbd_mat(fake, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(fake.voc, root)
    assert VOCDataset(root, "train").mask_dir.name == "SegmentationClass"
    (root / "SegmentationClassAug").mkdir()
    for sample_id in fake.lists["train_aug"]:
        own = root / "SegmentationClass" / f"{sample_id}.png"
        mask = read_mask(own) if own.is_file() else read_mask(fake.sbd / "cls" / f"{sample_id}.mat")
        write_mask_png(root / "SegmentationClassAug" / f"{sample_id}.png", mask)
    aug = VOCDataset(root, "train_aug")
    assert aug.mask_dir.name == "SegmentationClassAug" and len(aug) == len(fake.lists["train_aug"])
    # SBD .mat masks are read directly when a mask folder holds them
    write_id_list(root / "ImageSets" / "Segmentation" / "sbd_only.txt", fake.lists["sbd_only"])
    sbd = VOCDataset(root, "sbd_only", mask_dir=str(fake.sbd / "cls"))
    sbd_only = fake.lists["sbd_only"][0]
    i = sbd.ids.index(sbd_only)
    c, (x1, y1, x2, y2) = fake.objects[sbd_only][0]
    assert sbd.mask_path(sbd_only).suffix == ".mat"
    assert (sbd[i]["mask"][y1:y2, x1:x2] == c + 1).all()
    assert 255 not in sbd[i]["mask"].unique().tolist()          # SBD has no void band


def test_sbd_mat_and_png_masks_agree(fake):
    sample_id = fake.lists["sbd_only"][0]
    mat = read_mask(fake.sbd / "cls" / f"{sample_id}.mat")
    c, (x1, y1, x2, y2) = fake.objects[sample_id][0]
    assert mat.dtype == np.uint8 and (mat[y1:y2, x1:x2] == c + 1).all()


def test_default_transforms_give_batches_and_saliency(fake):
    dataset = VOCDataset(fake.voc, "train", mask_dir="SegmentationClass", transforms=voc_transforms(train=True, size=40),
                         saliency=spectral_residual_saliency)
    loader = DataLoader(dataset, batch_size=3, collate_fn=collate_samples)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, 40, 40)
    assert batch["mask"].shape == (3, 40, 40) and batch["saliency"].shape == (3, 40, 40)
    assert batch["has_saliency"].all() and batch["has_boxes"].all()
    assert 0 <= batch["saliency"].min() and batch["saliency"].max() <= 1


def test_two_workers_give_the_same_samples(fake):
    dataset = VOCDataset(fake.voc, "val", mask_dir="SegmentationClass", transforms=voc_transforms(train=False, size=32))
    single = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_samples)))
    multi = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_samples, num_workers=2)))
    assert torch.equal(single["image"], multi["image"]) and single["id"] == multi["id"]


def _erode(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    inverted = (~mask).float()[None, None]
    grown = torch.nn.functional.max_pool2d(inverted, 2 * pixels + 1, stride=1, padding=pixels)
    return ~grown[0, 0].bool()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flip_h=st.booleans(), flip_v=st.booleans(), crop_h=st.integers(24, 40), crop_w=st.integers(24, 48),
       height=st.integers(20, 80), width=st.integers(20, 80), seed=st.integers(0, 2**31 - 1),
       index=st.integers(0, 5))
def test_joint_transforms_keep_image_mask_and_boxes_aligned(fake, flip_h, flip_v, crop_h, crop_w, height, width,
                                                            seed, index):
    transform = v2.Compose([
        v2.RandomHorizontalFlip(p=float(flip_h)),
        v2.RandomVerticalFlip(p=float(flip_v)),
        v2.RandomCrop((crop_h, crop_w)),
        AlignedResize((height, width)),
    ])
    dataset = VOCDataset(fake.voc, "train", mask_dir="SegmentationClass", transforms=transform,
                         saliency=spectral_residual_saliency)
    torch.manual_seed(seed)
    sample = dataset[index]
    validate_sample(sample, num_classes=20)
    image, mask, boxes = denormalize(sample["image"]), sample["mask"], sample["boxes"]
    assert image.shape[-2:] == mask.shape == sample["saliency"].shape == (height, width)
    red = (image[0] > 0.6) & (image[1] < 0.35)
    half_red = (image[0] - image[1]) > 0.39         # at least half covered by the red object
    for box, c in zip(boxes, sample["box_labels"]):
        inside = mask == c + 1
        if not inside.any():
            continue
        ys, xs = torch.nonzero(inside, as_tuple=True)
        # the box is the tight frame of the object's mask pixels (1 px for resampling)
        tight = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.allclose(box, tight, atol=1.0), (box, tight)
        # and the image shows the object where the mask says so: the red pixels near the box
        # match the mask, and its core (away from the edges that resampling and JPEG's 2x2
        # chroma subsampling blur) is red
        x1, y1, x2, y2 = (int(v) for v in box)
        near = torch.zeros_like(inside)
        near[max(y1 - 3, 0):y2 + 3, max(x1 - 3, 0):x2 + 3] = True
        if inside.sum() >= 30:
            iou = (half_red & inside).sum() / ((half_red & near) | inside).sum()
            assert iou > 0.75, iou
        core = _erode(inside, 2)
        if core.any():
            assert red[core].float().mean() > 0.95
    background = _erode(mask == 0, 2)
    if background.any():
        assert red[background].float().mean() < 0.02


def test_use_mask_and_use_boxes_flags_from_id_lists(fake, tmp_path):
    dataset = VOCDataset(fake.voc, "train_aug", mask_dir="SegmentationClass", annotation_dir="Annotations",
                         labels_from="annotations", on_error="skip")  # SBD-only ids lack VOC masks
    chosen = dataset.ids[:2]
    write_id_list(tmp_path / "extra.txt", chosen)
    mark_extra_labels(dataset, pixel=read_id_list(tmp_path / "extra.txt"), boxes=1, seed=3)
    flagged = [dataset[i]["id"] for i in range(len(dataset)) if dataset[i]["use_mask"]]
    assert flagged == chosen
    assert sum(dataset[i]["use_boxes"] for i in range(len(dataset))) == 1
    with pytest.raises(KeyError, match="not in the dataset"):
        mark_extra_labels(dataset, pixel=["nope"])


# --- bad data ---------------------------------------------------------------------------------

def _damage_image_truncate(fake, sample_id):
    path = fake.voc / "JPEGImages" / f"{sample_id}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "corrupt or truncated image"


def _damage_image_garbage(fake, sample_id):
    path = fake.voc / "JPEGImages" / f"{sample_id}.jpg"
    path.write_bytes(b"this is not a jpeg" * 10)
    return path, "corrupt or truncated image"


def _damage_mask_value(fake, sample_id):
    path = fake.voc / "SegmentationClass" / f"{sample_id}.png"
    mask = read_mask(path)
    mask[0, 0] = 30
    write_mask_png(path, mask)
    return path, "mask values outside 0..20 and 255: [30]"


def _damage_mask_rgb(fake, sample_id):
    path = fake.voc / "SegmentationClass" / f"{sample_id}.png"
    Image.open(path).convert("RGB").save(path)
    return path, "palette or greyscale PNG"


def _damage_mask_size(fake, sample_id):
    path = fake.voc / "SegmentationClass" / f"{sample_id}.png"
    write_mask_png(path, read_mask(path)[:-3])
    return path, "but the image is"


LAZY_DAMAGE = [_damage_image_truncate, _damage_image_garbage, _damage_mask_value, _damage_mask_rgb, _damage_mask_size]


def _damage_missing_image(fake, sample_id):
    path = fake.voc / "JPEGImages" / f"{sample_id}.jpg"
    path.unlink()
    return path, "missing image file"


def _damage_missing_mask(fake, sample_id):
    path = fake.voc / "SegmentationClass" / f"{sample_id}.png"
    path.unlink()
    return path, "missing mask file"


def _damage_missing_xml(fake, sample_id):
    path = fake.voc / "Annotations" / f"{sample_id}.xml"
    path.unlink()
    return path, "missing annotation file"


def _damage_xml_no_objects(fake, sample_id):
    path = fake.voc / "Annotations" / f"{sample_id}.xml"
    write_annotation_xml(path, f"{sample_id}.jpg", 50, 50, [])
    return path, "no <object>"


def _damage_xml_unknown_class(fake, sample_id):
    path = fake.voc / "Annotations" / f"{sample_id}.xml"
    write_annotation_xml(path, f"{sample_id}.jpg", 50, 50, [("unicorn", (1, 1, 5, 5))])
    return path, "unknown class 'unicorn'"


def _damage_xml_malformed(fake, sample_id):
    path = fake.voc / "Annotations" / f"{sample_id}.xml"
    path.write_text("<annotation><object>")
    return path, "malformed XML"


def _damage_xml_bad_box(fake, sample_id):
    path = fake.voc / "Annotations" / f"{sample_id}.xml"
    path.write_text(path.read_text().replace("<xmax>", "<xmax>x", 1))
    return path, "non-numeric bndbox"


EAGER_DAMAGE = [_damage_missing_image, _damage_missing_mask, _damage_missing_xml, _damage_xml_no_objects,
                _damage_xml_unknown_class, _damage_xml_malformed, _damage_xml_bad_box]


@pytest.mark.parametrize("damage", EAGER_DAMAGE + LAZY_DAMAGE, ids=lambda f: f.__name__[8:])
def test_bad_data_raises_naming_file_and_problem(broken, damage):
    sample_id = broken.lists["train"][1]
    path, problem = damage(broken, sample_id)
    with pytest.raises(DataFileError) as caught:
        dataset = VOCDataset(broken.voc, "train", mask_dir="SegmentationClass")
        for i in range(len(dataset)):
            dataset[i]
    assert str(path) in str(caught.value) and problem in str(caught.value)
    assert caught.value.path == str(path)


@pytest.mark.parametrize("damage", EAGER_DAMAGE, ids=lambda f: f.__name__[8:])
def test_bad_files_found_at_build_time_are_skipped_and_counted(broken, damage, caplog):
    sample_id = broken.lists["train"][1]
    path, problem = damage(broken, sample_id)
    with caplog.at_level(logging.WARNING, logger="gainlib.data.voc"):
        dataset = VOCDataset(broken.voc, "train", mask_dir="SegmentationClass", on_error="skip")
    assert sample_id not in dataset.ids and len(dataset) == len(broken.lists["train"]) - 1
    assert sample_id in dataset.skipped and problem in dataset.skipped[sample_id]
    assert any(str(path) in r.getMessage() for r in caplog.records)
    assert any("skipped 1 of 6 samples" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", LAZY_DAMAGE, ids=lambda f: f.__name__[8:])
def test_bad_contents_are_skipped_when_read_or_when_checked_up_front(broken, damage, caplog):
    sample_id = broken.lists["train"][1]
    path, problem = damage(broken, sample_id)
    dataset = VOCDataset(broken.voc, "train", mask_dir="SegmentationClass", on_error="skip")
    with caplog.at_level(logging.WARNING, logger="gainlib.data.voc"):
        ids = [dataset[i]["id"] for i in range(len(dataset))]
    assert sample_id not in ids                          # replaced by the next good sample
    assert ids[1] == broken.lists["train"][2]
    assert problem in dataset.skipped[sample_id]
    assert any(str(path) in r.getMessage() for r in caplog.records)
    checked = VOCDataset(broken.voc, "train", mask_dir="SegmentationClass", on_error="skip", check_images=True)
    assert sample_id not in checked.ids and len(checked) == len(broken.lists["train"]) - 1


def test_empty_label_set_from_mask(broken):
    sample_id = broken.lists["train"][0]
    path = broken.voc / "SegmentationClass" / f"{sample_id}.png"
    write_mask_png(path, np.zeros_like(read_mask(path)))
    dataset = VOCDataset(broken.voc, "train", mask_dir="SegmentationClass", labels_from="mask")
    with pytest.raises(DataFileError, match="empty label set"):
        dataset[0]
    negatives = VOCDataset(broken.voc, "train", mask_dir="SegmentationClass", labels_from="mask", allow_empty=True)
    assert negatives[0]["labels"].sum() == 0


def test_missing_list_and_root_are_errors(tmp_path):
    with pytest.raises(DataFileError, match="dataset root does not exist"):
        VOCDataset(tmp_path / "nowhere")
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(DataFileError, match="missing id list"):
        VOCDataset(tmp_path, "train")


def test_everything_skipped_is_an_error(broken):
    for sample_id in broken.lists["val"]:
        (broken.voc / "JPEGImages" / f"{sample_id}.jpg").unlink()
    with pytest.raises(DataFileError, match="no usable samples"):
        VOCDataset(broken.voc, "val", mask_dir="SegmentationClass", on_error="skip")


def test_box_outside_the_image_is_an_error(broken):
    sample_id = broken.lists["train"][0]
    path = broken.voc / "Annotations" / f"{sample_id}.xml"
    write_annotation_xml(path, f"{sample_id}.jpg", 50, 50, [("boat", (10, 10, 500, 20))])
    with pytest.raises(DataFileError, match="lies outside"):
        VOCDataset(broken.voc, "train", mask_dir="SegmentationClass")[0]


def test_rejects_bad_arguments(fake):
    with pytest.raises(ValueError, match="on_error"):
        VOCDataset(fake.voc, "train", on_error="ignore")
    with pytest.raises(ValueError, match="annotation_dir"):
        VOCDataset(fake.voc, "train", annotation_dir=None)
