"""Reliability, round two: VOC split lists and the masks data_scripts/get_voc.py writes. Each test
holds one case of the issue and failed before its fix.

A duplicated id was kept (the 1,464 subset held 6 distinct ids among 12), a UTF-8 byte-order
mark gave "missing image file" for a file that exists, a ``../`` id loaded files from outside
the root, and after get_voc.py was killed while writing a mask a rerun reported success and
kept the truncated PNG.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from test_data_scripts import get_voc
from voc_fixture import make_fake_voc

from gainlib.data import VOCDataset, read_id_list, write_id_list
from gainlib.data.voc_layout import DataFileError, read_mask


@pytest.fixture
def fake(tmp_path):
    return make_fake_voc(tmp_path / "data")


def _list(fake, name, text, encoding="utf-8"):
    path = fake.voc / "ImageSets" / "Segmentation" / f"{name}.txt"
    path.write_bytes(text.encode(encoding))
    return path


# -- duplicates --------------------------------------------------------------------------------

def test_a_duplicated_id_is_refused_naming_it(fake):
    ids = fake.lists["val"][:3]
    path = _list(fake, "twice", "\n".join([*ids, ids[1]]) + "\n")
    message = rf"twice.txt: id '{ids[1]}' is listed 2 times \(entries \[2, 4\]\)"
    with pytest.raises(DataFileError, match=message):
        read_id_list(path)
    with pytest.raises(DataFileError, match=message):
        VOCDataset(fake.voc, "twice")
    with pytest.raises(DataFileError, match="is listed 2 times"):
        write_id_list(fake.root / "out.txt", [*ids, ids[0]])
    assert not (fake.root / "out.txt").exists()


def test_a_voc_train_list_with_duplicates_makes_no_subset_with_fewer_images_than_its_name(fake):
    seg = fake.voc / "ImageSets" / "Segmentation"
    train = fake.lists["train"][:6]
    (seg / "train.txt").write_text("".join(f"{i}\n" for i in train * 2))   # 12 lines, 6 ids
    with pytest.raises(DataFileError, match=rf"train.txt: id '{train[0]}' is listed 2 times"):
        get_voc.build_lists(fake.voc, fake.sbd)
    with pytest.raises(DataFileError, match="listed 2 times"):
        get_voc.write_extra_subsets(fake.voc, train * 2, sizes=(12,), seeds=(0,))


# -- byte-order marks ----------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_list_with_a_byte_order_mark_reads_its_first_id(fake, encoding):
    ids = fake.lists["val"][:3]
    path = _list(fake, "bom", "\r\n".join(ids) + "\r\n", encoding)
    if encoding == "utf-16":         # not UTF-8: refused naming the list, never a wrong id
        with pytest.raises(DataFileError, match="bom.txt: not UTF-8 text"):
            read_id_list(path)
        return
    assert read_id_list(path) == ids
    assert VOCDataset(fake.voc, "bom").ids == ids               # "missing image file" before


# -- ids confined to the root ------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../../outside/evil", "sub/../../../outside/evil", "/etc/evil",
                                 "..", "a\\..\\evil"])
def test_an_id_that_is_a_path_is_refused(fake, bad):
    outside = fake.voc.parent / "outside"                     # beside the root, not in it
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "evil.jpg")       # what ../../outside/evil would read
    Image.new("L", (8, 8), 1).save(outside / "evil.png")
    path = _list(fake, "escape", f"{fake.lists['val'][0]}\n{bad}\n")
    with pytest.raises(DataFileError, match=f"escape.txt: id {re.escape(repr(bad))} \\(entry 2\\) "
                                            "is not a file name"):
        read_id_list(path)
    with pytest.raises(DataFileError, match="is not a file name"):   # loaded evil.jpg before
        VOCDataset(fake.voc, "escape", annotation_dir=None, labels_from="mask")


# -- masks written atomically; a rerun repairs a truncated one ---------------------------------

def test_a_rerun_of_get_voc_repairs_a_mask_truncated_by_a_killed_run(fake):
    lists = get_voc.prepare(fake.root, skip_download=True, seeds=(0,), expected=None, progress=False)
    aug = fake.voc / "SegmentationClassAug"
    from_sbd = next(i for i in lists["train_aug"] if not (fake.voc / "SegmentationClass" / f"{i}.png").is_file())
    from_voc = lists["val"][0]
    expected = {i: read_mask(aug / f"{i}.png") for i in (from_sbd, from_voc)}
    for sample_id in expected:                                  # killed halfway through writing
        path = aug / f"{sample_id}.png"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(DataFileError, match="corrupt or truncated mask"):
            read_mask(path)
    assert get_voc.build_aug_masks(fake.voc, fake.sbd, lists["train_aug"] + lists["val"],
                                   progress=False) == 2      # 0 before: "success", PNGs kept
    for sample_id, mask in expected.items():
        assert np.array_equal(read_mask(aug / f"{sample_id}.png"), mask)


def test_a_mask_write_that_is_killed_leaves_no_file_under_the_masks_name(fake, monkeypatch):
    lists = get_voc.prepare(fake.root, skip_download=True, seeds=(0,), expected=None, progress=False)
    aug = fake.voc / "SegmentationClassAug"
    victims = [i for i in lists["train_aug"] if not (fake.voc / "SegmentationClass" / f"{i}.png").is_file()]
    (aug / f"{victims[0]}.png").unlink()
    save = Image.Image.save

    def killed(self, fp, *args, **kwargs):
        save(self, fp, *args, **kwargs)
        with open(fp, "r+b") as handle:                         # half of it on disk, then SIGKILL
            handle.truncate(handle.seek(0, 2) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        get_voc.build_aug_masks(fake.voc, fake.sbd, victims, progress=False)
    assert not (aug / f"{victims[0]}.png").exists()
    assert not list(aug.glob(".*.tmp"))
    monkeypatch.setattr(Image.Image, "save", save)
    assert get_voc.build_aug_masks(fake.voc, fake.sbd, victims, progress=False) == 1
    assert get_voc.whole_png(aug / f"{victims[0]}.png")
