"""data_scripts/: list building, extra subsets, checksums and resumable downloads (against
file:// URLs and a fake HTTP opener -- never the network), and the synthetic VOC-layout writer."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from gainlib.data import SyntheticOrientation, SyntheticScenes, VOCDataset, read_id_list
from gainlib.data.voc_layout import read_mask
from voc_fixture import make_fake_voc

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


get_voc = _load("get_voc")
make_synthetic = _load("make_synthetic")


# --- lists and subsets --------------------------------------------------------------------------

def test_train_aug_is_sbd_plus_voc_train_minus_voc_val(tmp_path):
    fake = make_fake_voc(tmp_path)
    lists = get_voc.build_lists(fake.voc, fake.sbd)
    voc_val = set(fake.lists["val"])
    assert fake.lists["val"][0] in fake.lists["sbd_train"]           # the fixture puts a val image in SBD
    assert not voc_val & set(lists["train_aug"])
    assert set(lists["train_aug"]) == (set(fake.lists["sbd_train"]) | set(fake.lists["sbd_val"])
                                       | set(fake.lists["train"])) - voc_val
    assert lists["train_aug"] == sorted(lists["train_aug"]) and lists["val"] == fake.lists["val"]
    with pytest.raises(SystemExit, match=f"train_aug: {len(lists['train_aug'])} ids, expected 10582"):
        get_voc.check_counts(lists)


def test_extra_subsets_are_seeded_nested_and_written(tmp_path):
    pool = [f"img{i:04d}" for i in range(1464)]
    subsets = get_voc.write_extra_subsets(tmp_path, pool, seeds=(0, 1))
    for seed in (0, 1):
        sizes = [len(subsets[(n, seed)]) for n in get_voc.EXTRA_SIZES]
        assert sizes == [200, 400, 900, 1464]
        for small, large in zip(get_voc.EXTRA_SIZES, get_voc.EXTRA_SIZES[1:]):
            assert set(subsets[(small, seed)]) <= set(subsets[(large, seed)])
        written = read_id_list(tmp_path / "ImageSets" / "Segmentation" / f"extra_200_seed{seed}.txt")
        assert written == subsets[(200, seed)]
    assert subsets[(200, 0)] != subsets[(200, 1)]
    again = get_voc.write_extra_subsets(tmp_path / "again", list(reversed(pool)), seeds=(0,))
    assert again[(200, 0)] == subsets[(200, 0)]                        # independent of list order


def test_prepare_offline_builds_lists_masks_and_subsets(tmp_path):
    fake = make_fake_voc(tmp_path)
    lists = get_voc.prepare(tmp_path, skip_download=True, seeds=(0,), expected=None, progress=False)
    seg = fake.voc / "ImageSets" / "Segmentation"
    assert read_id_list(seg / "train_aug.txt") == lists["train_aug"]
    assert read_id_list(seg / "extra_200_seed0.txt") == sorted(fake.lists["train"])   # pool smaller than 200
    for sample_id in lists["train_aug"] + lists["val"]:
        aug = read_mask(fake.voc / "SegmentationClassAug" / f"{sample_id}.png")
        own = fake.voc / "SegmentationClass" / f"{sample_id}.png"
        expected = read_mask(own) if own.is_file() else read_mask(fake.sbd / "cls" / f"{sample_id}.mat")
        assert np.array_equal(aug, expected)                           # VOC's own mask wins
    dataset = VOCDataset(fake.voc, "train_aug")
    assert dataset.mask_dir.name == "SegmentationClassAug" and len(dataset) == len(lists["train_aug"])
    assert get_voc.main(["--root", str(tmp_path), "--skip-download", "--no-count-check", "--seeds", "0"]) == 0


def test_prepare_without_data_explains_what_is_missing(tmp_path, capsys):
    assert get_voc.main(["--root", str(tmp_path), "--skip-download"]) == 1
    assert "download the archives first" in capsys.readouterr().err


# --- downloads ----------------------------------------------------------------------------------

@pytest.fixture()
def payload(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    source = tmp_path / "remote" / "archive.tar"
    source.parent.mkdir()
    source.write_bytes(data)
    return source, data, hashlib.md5(data).hexdigest()


def test_download_resumes_a_partial_file(payload, tmp_path):
    source, data, md5 = payload
    target = tmp_path / "downloads" / "archive.tar"
    target.parent.mkdir()
    (target.parent / "archive.tar.part").write_bytes(data[:123_456])
    get_voc.download(source.as_uri(), target, md5, progress=False, chunk=10_000)
    assert target.read_bytes() == data and not (target.parent / "archive.tar.part").exists()
    assert get_voc.md5sum(target) == md5


def test_download_skips_a_verified_file_and_rejects_a_bad_checksum(payload, tmp_path):
    source, data, md5 = payload
    target = tmp_path / "archive.tar"
    target.write_bytes(data)

    def no_network(*args, **kwargs):
        raise AssertionError("a verified file must not be downloaded again")

    get_voc.download("http://example.invalid/archive.tar", target, md5, opener=no_network, progress=False)
    (tmp_path / "bad.tar.part").write_bytes(b"garbage" * 10)           # a corrupt partial file
    with pytest.raises(get_voc.ChecksumError, match="expected"):
        get_voc.download(source.as_uri(), tmp_path / "bad.tar", md5, progress=False)
    assert not (tmp_path / "bad.tar").exists()


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, status: int):
        super().__init__(body)
        self.status = status
        self.headers = {"Content-Length": str(len(body))}


class FakeServer:
    """An opener that honours (or, with ``ranges=False``, ignores) HTTP Range requests."""

    def __init__(self, data: bytes, ranges: bool = True):
        self.data, self.ranges, self.requests = data, ranges, []

    def __call__(self, request, timeout=None):
        header = request.get_header("Range")
        self.requests.append(header)
        if header and self.ranges:
            start = int(header.split("=")[1].rstrip("-"))
            if start >= len(self.data):
                raise urllib.error.HTTPError(request.full_url, 416, "Range Not Satisfiable", {}, None)
            return FakeResponse(self.data[start:], 206)
        return FakeResponse(self.data, 200)


@pytest.mark.parametrize("ranges", [True, False], ids=["server-resumes", "server-ignores-range"])
def test_http_resume_and_restart(payload, tmp_path, ranges):
    _, data, md5 = payload
    partial = tmp_path / "archive.tar.part"
    partial.write_bytes(data[:50_000])
    server = FakeServer(data, ranges=ranges)
    get_voc.download("http://voc.example/archive.tar", tmp_path / "archive.tar", md5, opener=server, progress=False)
    assert server.requests == ["bytes=50000-"]
    assert (tmp_path / "archive.tar").read_bytes() == data


def test_http_complete_partial_file_is_finished(payload, tmp_path):
    _, data, md5 = payload
    (tmp_path / "archive.tar.part").write_bytes(data)
    get_voc.download("http://voc.example/archive.tar", tmp_path / "archive.tar", md5,
                     opener=FakeServer(data), progress=False)
    assert get_voc.md5sum(tmp_path / "archive.tar") == md5


def test_offline_gives_a_clear_message(tmp_path):
    def offline(request, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(get_voc.OfflineError) as caught:
        get_voc.fetch(get_voc.VOC2012, tmp_path, opener=offline, progress=False)
    message = str(caught.value)
    assert "offline" in message and get_voc.VOC2012.urls[0] in message and get_voc.VOC2012.md5 in message
    assert all(url in message for url in get_voc.VOC2012.urls)


def test_fetch_falls_back_to_the_mirror(payload, tmp_path):
    _, data, md5 = payload
    archive = get_voc.Archive("archive.tar", ("http://down.example/a.tar", "http://mirror.example/a.tar"), md5)
    server = FakeServer(data)

    def opener(request, timeout=None):
        if "down.example" in request.full_url:
            raise urllib.error.URLError("connection refused")
        return server(request, timeout)

    assert get_voc.fetch(archive, tmp_path, opener=opener, progress=False).read_bytes() == data


# --- synthetic set in VOC layout ----------------------------------------------------------------

def test_make_synthetic_round_trips_through_the_voc_loader(tmp_path):
    out = tmp_path / "scenes"
    assert make_synthetic.main(["--out", str(out), "--splits", "val", "biased_boat", "--n", "12"]) == 0
    assert (out / "statistics.json").is_file() and (out / "classes.txt").read_text().split() == list(SyntheticScenes.classes)
    memory = SyntheticScenes("val", 12)
    disk = VOCDataset(out, "val", mask_dir="SegmentationClass", allow_empty=True)
    assert disk.classes == memory.classes and disk.ids == memory.ids
    for i in range(12):
        a, b = memory[i], disk[i]
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["labels"], b["labels"])
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["box_labels"], b["box_labels"])
        assert (a["image"] - b["image"]).abs().mean() < 0.15          # JPEG
    assert len(VOCDataset(out, "biased_boat", mask_dir="SegmentationClass", allow_empty=True)) == 12


def test_make_synthetic_orientation(tmp_path):
    out = tmp_path / "workpiece"
    make_synthetic.main(["--out", str(out), "--dataset", "workpiece", "--splits", "test_shifted", "--n", "8"])
    disk = VOCDataset(out, "test_shifted", mask_dir="SegmentationClass")
    memory = SyntheticOrientation("test_shifted", 8, variant="workpiece")
    assert disk.classes == ("rot0", "rot90", "rot180", "rot270")
    assert all(torch.equal(disk[i]["labels"], memory[i]["labels"]) for i in range(8))
