"""No silent nonsense in: samples and boxes (items 1-2), label and class shapes at the attention
entry points (items 3-4), GainConfig (item 5) and the VOC download script (item 6)."""

from __future__ import annotations

import http.server
import io
import stat
import tarfile
import threading
import urllib.request
from pathlib import Path

import pytest
import torch
from test_data_scripts import get_voc, payload  # noqa: F401  (payload: a fixture)
from tiny import TinyNet, TinyScenes

from gainlib.attention import GradCAM
from gainlib.data.protocol import SampleError, collate_samples, validate_sample
from gainlib.data.voc_layout import DataFileError
from gainlib.gain import GAIN, GainConfig


def _sample(**overrides):
    sample = {"image": torch.zeros(3, 8, 8), "labels": torch.tensor([0.0, 1.0, 0.0]),
              "boxes": torch.tensor([[1.0, 1.0, 5.0, 6.0]]), "box_labels": torch.tensor([1]),
              "saliency": torch.full((8, 8), 0.5), "use_boxes": True, "id": "img-7"}
    sample.update(overrides)
    return sample


def _refused(samples, message, culprit="img-9"):
    """Collating ``samples`` raises a SampleError that matches ``message`` and names ``culprit``."""
    with pytest.raises(SampleError, match=message) as info:
        collate_samples(samples)
    assert culprit in str(info.value)


# --- item 1: box supervision that makes no sense ------------------------------------------------

def test_item1_use_boxes_without_saliency_is_refused_with_a_hint():
    bad = _sample(id="img-9", saliency=None)
    with pytest.raises(SampleError, match="img-9.*no 'saliency'.*spectral_residual_saliency"):
        validate_sample(bad)
    _refused([_sample(), bad], "spectral_residual_saliency")
    collate_samples([_sample(), _sample(saliency=None, use_boxes=False)])   # boxes for evaluation only


@pytest.mark.parametrize("box,problem", [
    ([1.0, 1.0, 9.0, 6.0], "outside the 8x8 image"),
    ([-1.0, 1.0, 5.0, 6.0], "outside the 8x8 image"),
    ([1.0, 1.0, 5.0, 8.5], "outside the 8x8 image"),
    ([5.0, 1.0, 1.0, 6.0], "inverted"),
    ([1.0, 6.0, 5.0, 6.0], "inverted"),
    ([1.0, float("nan"), 5.0, 6.0], "not finite"),
    ([1.0, 1.0, float("inf"), 6.0], "not finite"),
], ids=["x2>W", "x1<0", "y2>H", "x2<x1", "y2=y1", "nan", "inf"])
def test_item1_nonsense_boxes_are_refused(box, problem):
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], box])
    bad = _sample(id="img-9", boxes=boxes, box_labels=torch.tensor([1, 1]))
    with pytest.raises(SampleError, match=f"img-9.*box 1 .*{problem}"):
        validate_sample(bad)
    _refused([_sample(), bad, _sample()], problem)                       # the culprit is named
    _refused([_sample(), {**bad, "use_boxes": False}], problem)         # nonsense even unused


def test_item1_a_positive_label_without_a_box_is_refused():
    bad = _sample(id="img-9", labels=torch.tensor([0.0, 1.0, 1.0]))    # class 2 has no box
    with pytest.raises(SampleError, match=r"img-9.*label\(s\) \[2\] have no box"):
        validate_sample(bad)
    _refused([_sample(), bad], "have no box")
    # Without use_boxes the boxes only serve evaluation: a missing one is no supervision error.
    batch = collate_samples([_sample(), {**bad, "use_boxes": False}])
    assert batch["box_masks"][1, 2].sum() == 0


def test_item1_good_box_batches_still_collate():
    batch = collate_samples([_sample(), _sample(boxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]]))])
    assert batch["box_masks"][0, 1].sum() == 4 * 5 and batch["box_masks"][1, 1].sum() == 64


# --- item 2: samples that are not samples -------------------------------------------------------

def test_item2_a_none_sample_is_named_by_its_position():
    with pytest.raises(SampleError, match="position 1 of the batch is NoneType.*__getitem__"):
        collate_samples([_sample(), None])
    with pytest.raises(SampleError, match="position 0 of the batch is NoneType"):
        collate_samples([None, _sample()])
    with pytest.raises(SampleError, match="NoneType, not a dict"):
        validate_sample(None)


def test_item2_labels_given_as_a_list_are_named():
    bad = _sample(id="img-9", labels=[0.0, 1.0, 0.0])
    for samples in ([bad, _sample()], [_sample(), bad]):
        _refused(samples, r"'labels' must be a multi-hot tensor \[C\], got a list; convert it")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_item2_a_non_finite_image_is_traced_to_its_sample(value):
    image = torch.zeros(3, 8, 8)
    image[1, 2, 3] = value
    bad = _sample(id="img-9", image=image)
    with pytest.raises(SampleError, match="img-9.*NaN or infinite"):
        validate_sample(bad)
    _refused([_sample(), _sample(), bad], "NaN or infinite")


def test_item2_saliency_outside_0_1_is_refused():
    _refused([_sample(), _sample(id="img-9", saliency=torch.full((8, 8), float("nan")))], "saliency")
    _refused([_sample(id="img-9", saliency=torch.full((8, 8), 255.0))], r"\[0, 1\]")


# --- item 3: labels wider than the logits -------------------------------------------------------

def _wide_batch():
    """Protocol batch with 4 label classes, for a model with 3 outputs."""
    batch = collate_samples([TinyScenes(n=4, num_classes=4, seed=1, pixel=(0, 1), box=(2, 3))[i] for i in range(4)])
    assert batch["labels"][:, 3].any()                 # a positive label beyond the logits
    return batch


@pytest.mark.parametrize("stream", ["gain", "classifier", "ext", "attention"])
def test_item3_labels_wider_than_the_logits_name_both_sizes(stream):
    torch.manual_seed(0)
    model = GAIN(TinyNet(num_classes=3), "features")
    batch = _wide_batch()
    call = {"gain": lambda: model.stream_losses(batch),
            "classifier": lambda: model.stream_losses(batch, attention_mining=False),
            "ext": lambda: model.extra_supervision(batch),
            "attention": lambda: model.attention(batch["image"], labels=batch["labels"])}[stream]
    with pytest.raises(ValueError, match=r"labels \[4, 4\] do not match the model's logits \[4, 3\]: "
                                         r"4 label classes for a model with 3 outputs"):
        call()


# --- item 4: GradCAM classes of the wrong batch size or dtype -----------------------------------

def test_item4_gradcam_classes_must_be_integers_for_every_image():
    images = torch.randn(2, 3, 32, 32)
    with GradCAM(TinyNet(), "features") as cam:
        assert cam(images, classes=torch.tensor([0, 2])).maps.shape == (2, 1, 32, 32)
        assert cam(images, classes=[[0, 1], [2, 0]]).maps.shape == (2, 2, 32, 32)
        for wrong in (torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2]), torch.tensor([[0], [1], [2]]),
                      torch.tensor(1)):
            with pytest.raises(ValueError, match=r"\[B\] or \[B, K\] with B = 2 images"):
                cam(images, classes=wrong)
        for wrong in (torch.tensor([0.7, 2.3]), torch.tensor([True, False])):
            with pytest.raises(TypeError, match="integer label indices"):
                cam(images, classes=wrong)


# --- item 5: GainConfig validates every field ---------------------------------------------------

@pytest.mark.parametrize("kwargs,error,message", [
    ({"sigma": 1.5}, ValueError, r"sigma must lie in \[0, 1\]"),
    ({"sigma": -0.1}, ValueError, r"sigma must lie in \[0, 1\]"),
    ({"sigma": float("nan")}, ValueError, "sigma must be finite"),
    ({"sigma": "0.5"}, TypeError, "sigma must be a number"),
    ({"omega": 0}, ValueError, "omega must be positive"),
    ({"omega": -3.0}, ValueError, "omega must be positive"),
    ({"omega": float("nan")}, ValueError, "omega must be finite"),
    ({"omega": float("inf")}, ValueError, "omega must be finite"),
    ({"alpha": float("nan")}, ValueError, "alpha must be finite"),
    ({"alpha": -1.0}, ValueError, "alpha must be >= 0"),
    ({"alpha": True}, TypeError, "alpha must be a number"),
    ({"ext_weight": float("nan")}, ValueError, "ext_weight must be finite"),
    ({"ext_weight": -10}, ValueError, "ext_weight must be >= 0"),
    ({"ext_weight": None}, TypeError, "ext_weight must be a number"),
    ({"am_score": "probability"}, ValueError, "am_score must be one of 'sigmoid', 'logit', 'softmax'"),
    ({"am_batchnorm": "frozen"}, ValueError, "am_batchnorm must be one of"),
    ({"normalization": "none"}, ValueError, "normalization must be one of 'max', 'minmax'"),
    ({"detach_weights": 1}, TypeError, "detach_weights must be True or False"),
    ({"detach_weights": "no"}, TypeError, "detach_weights must be True or False"),
])
def test_item5_gainconfig_refuses_bad_fields_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        GainConfig(**kwargs)


def test_item5_gainconfig_accepts_the_valid_edges():
    GainConfig(sigma=0, omega=1e5, alpha=0, ext_weight=0.0)
    GainConfig(sigma=1.0, am_score="softmax", am_batchnorm="eval", normalization="minmax",
               detach_weights=True)


# --- item 6: data_scripts/get_voc.py ------------------------------------------------------------

def _tar(path, members, mode="w"):
    """Write a tar archive: ``members`` are ``(TarInfo, bytes or None)`` pairs, built in memory."""
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name, data=None, kind=tarfile.REGTYPE, link="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info, data


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_item6_archives_and_their_md5s():
    assert get_voc.VOC2012.md5 == "6cd6e144f989b92b3379bac3b3de84fd"
    assert get_voc.SBD.md5 == "82b4d87ceb2ed10f6038a1cba92111cb"
    for archive in (get_voc.VOC2012, get_voc.SBD):
        assert archive.urls[0].startswith("https://"), archive.urls   # plain HTTP only as a fallback
    assert all(url.startswith("https://") for url in get_voc.SBD.urls)


def _attacks(outside):
    """Crafted members, each trying to write into (or link to) the folder ``outside``."""
    secret = str(outside / "secret.txt")
    return {
        "dot-dot": [_member("../outside/evil.txt", b"pwned")],
        "absolute": [_member(str(outside / "evil.txt"), b"pwned")],
        "symlink-absolute": [_member("VOCdevkit", kind=tarfile.SYMTYPE, link=str(outside)),
                             _member("VOCdevkit/evil.txt", b"pwned")],
        "symlink-relative": [_member("VOCdevkit", kind=tarfile.SYMTYPE, link="../outside"),
                             _member("VOCdevkit/evil.txt", b"pwned")],
        "symlink-chain": [_member("a", kind=tarfile.DIRTYPE, mode=0o755),
                          _member("a/up", kind=tarfile.SYMTYPE, link=".."),        # inside: allowed
                          _member("a/up/up", kind=tarfile.SYMTYPE, link=".."),     # resolves outside
                          _member("a/up/up/outside/evil.txt", b"pwned")],
        "hardlink-absolute": [_member("secret", kind=tarfile.LNKTYPE, link=secret),
                              _member("secret", b"pwned")],
        "hardlink-relative": [_member("secret", kind=tarfile.LNKTYPE, link="../outside/secret.txt"),
                              _member("secret", b"pwned")],
        "setuid": [_member("tool", b"#!/bin/sh\n", mode=0o4755)],
        "setgid": [_member("tool", b"#!/bin/sh\n", mode=0o2755)],
        "device": [_member("null", kind=tarfile.CHRTYPE)],
        "fifo": [_member("pipe", kind=tarfile.FIFOTYPE)],
    }


FILTERS = [pytest.param(True, id="data-filter", marks=pytest.mark.skipif(
               not get_voc.HAS_DATA_FILTER, reason="this Python's tarfile has no data filter")),
           pytest.param(False, id="explicit-checks")]


@pytest.mark.parametrize("data_filter", FILTERS)
@pytest.mark.parametrize("attack", list(_attacks(Path("/x"))))
def test_item6_crafted_archives_are_refused_and_write_nothing_outside(tmp_path, attack, data_filter):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    archive = _tar(tmp_path / "evil.tar", _attacks(outside)[attack])
    before = _tree(tmp_path)
    target = tmp_path / "target"                     # "../outside" from here is `outside`
    with pytest.raises(DataFileError, match="refused to extract"):
        get_voc.safe_extract(archive, target, data_filter=data_filter)
    assert (outside / "secret.txt").read_text() == "secret"
    assert [p for p in _tree(tmp_path) if p.split("/")[0] != "target"] == before


@pytest.mark.parametrize("data_filter", FILTERS)
def test_item6_a_planted_symlink_is_not_written_through(tmp_path, data_filter):
    outside, target = tmp_path / "outside", tmp_path / "target"
    outside.mkdir()
    target.mkdir()
    (target / "VOCdevkit").symlink_to(outside)      # left in the tree by someone else
    archive = _tar(tmp_path / "voc.tar", [_member("VOCdevkit/evil.txt", b"pwned")])
    with pytest.raises(DataFileError, match="outside the target folder"):
        get_voc.safe_extract(archive, target, data_filter=data_filter)
    assert _tree(outside) == []


@pytest.mark.parametrize("data_filter", FILTERS)
def test_item6_a_sound_archive_extracts(tmp_path, data_filter):
    archive = _tar(tmp_path / "ok.tgz", [
        _member("VOCdevkit", kind=tarfile.DIRTYPE, mode=0o2755),            # setgid folder: harmless
        _member("VOCdevkit/a.txt", b"a"),
        _member("VOCdevkit/link.txt", kind=tarfile.SYMTYPE, link="a.txt"),
        _member("VOCdevkit/hard.txt", kind=tarfile.LNKTYPE, link="VOCdevkit/a.txt")], mode="w:gz")
    get_voc.safe_extract(archive, tmp_path / "target", data_filter=data_filter)
    folder = tmp_path / "target" / "VOCdevkit"
    assert [(folder / n).read_text() for n in ("a.txt", "link.txt", "hard.txt")] == ["a", "a", "a"]
    assert not folder.stat().st_mode & (stat.S_ISUID | stat.S_ISGID) or not data_filter


def _archives_of(fake_root, out):
    """The tiny VOC and SBD trees as a .tar and a .tgz, with VOC's members ordered so that its
    ``SegmentationClass/`` comes last (what an interrupted extraction misses)."""
    voc_files = sorted((fake_root / "VOCdevkit").rglob("*"), key=lambda p: ("SegmentationClass" in p.parts, str(p)))
    out.mkdir()
    with tarfile.open(out / "VOC.tar", "w") as tar:
        for path in voc_files:
            tar.add(path, str(path.relative_to(fake_root)), recursive=False)
    with tarfile.open(out / "SBD.tgz", "w:gz") as tar:
        tar.add(fake_root / "benchmark_RELEASE", "benchmark_RELEASE")
    return voc_files


def test_item6_a_rerun_after_an_interrupted_extraction_extracts_again(tmp_path, monkeypatch):
    from voc_fixture import make_fake_voc

    from gainlib.data.voc_layout import read_mask

    fake = make_fake_voc(tmp_path / "source")
    voc_files = _archives_of(tmp_path / "source", tmp_path / "server")
    for name, filename in (("VOC2012", "VOC.tar"), ("SBD", "SBD.tgz")):
        path = tmp_path / "server" / filename
        monkeypatch.setattr(get_voc, name, get_voc.Archive(filename, (path.as_uri(),), get_voc.md5sum(path)))
    root = tmp_path / "root"
    # An extraction interrupted before SegmentationClass/: JPEGImages/ and ImageSets/ are there.
    with tarfile.open(tmp_path / "server" / "VOC.tar") as tar:
        first = [m for m in tar.getmembers() if "SegmentationClass" not in m.name]
        tar.extractall(root, members=first)
    assert (root / "VOCdevkit" / "VOC2012" / "JPEGImages").is_dir()
    assert not (root / "VOCdevkit" / "VOC2012" / "SegmentationClass").exists() and len(first) < len(voc_files)

    lists = get_voc.prepare(root, seeds=(0,), expected=None, progress=False)
    voc = root / "VOCdevkit" / "VOC2012"
    for sample_id in lists["val"]:                     # VOC's own masks, not SBD's
        assert (read_mask(voc / "SegmentationClassAug" / f"{sample_id}.png")
                == read_mask(fake.voc / "SegmentationClass" / f"{sample_id}.png")).all()
    assert get_voc.extraction_marker(root, "VOC.tar").is_file()
    assert get_voc.extraction_marker(root, "SBD.tgz").is_file()

    def no_fetch(*args, **kwargs):
        raise AssertionError("a completely extracted archive must not be fetched again")

    monkeypatch.setattr(get_voc, "fetch", no_fetch)
    assert get_voc.prepare(root, seeds=(0,), expected=None, progress=False) == lists
    (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()      # the tree was damaged later
    with pytest.raises(DataFileError, match="delete that marker and rerun"):
        get_voc.prepare(root, seeds=(0,), expected=None, progress=False)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.data`` at any path; honours Range unless ``server.ranges`` is False and
    drops the connection halfway through the next ``server.drops`` responses."""

    def do_GET(self):
        server, data = self.server, self.server.data
        header = self.headers.get("Range")
        server.requests.append(header)
        start = int(header.split("=")[1].split("-")[0]) if header and server.ranges else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drops:
            server.drops -= 1
            body = body[:len(body) // 2]          # then the handler returns: HTTP/1.0 closes
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def local_http(payload):
    """An HTTP server on 127.0.0.1 in a thread; it stops at the end of the test or, at the
    latest, after a bounded number of idle polls. Returns ``(server, url, opener)``."""
    _, data, _ = payload
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    server.timeout, server.data, server.requests, server.drops, server.ranges = 0.1, data, [], 0, True
    stop = threading.Event()

    def serve():
        for _ in range(600):                        # each poll waits at most server.timeout
            if stop.is_set():
                return
            server.handle_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # no proxy for 127.0.0.1
    try:
        yield server, f"http://127.0.0.1:{server.server_port}/archive.tar", opener.open
    finally:
        stop.set()
        thread.join()
        server.server_close()


@pytest.mark.parametrize("md5", [True, False], ids=["md5", "no-md5"])
def test_item6_a_dropped_connection_is_resumed_with_a_range_request(payload, local_http, tmp_path, md5):
    _, data, checksum = payload
    server, url, opener = local_http
    server.drops = 1
    target = tmp_path / "archive.tar"
    get_voc.download(url, target, checksum if md5 else None, opener=opener, progress=False, chunk=4096)
    assert target.read_bytes() == data and not (tmp_path / "archive.tar.part").exists()
    assert server.requests == [None, f"bytes={len(data) // 2}-"]


def test_item6_without_md5_a_partial_file_is_never_returned_as_whole(payload, local_http, tmp_path):
    _, data, _ = payload
    server, url, opener = local_http
    server.drops = 1
    target = tmp_path / "archive.tar"
    with pytest.raises(get_voc.IncompleteDownloadError, match=f"{len(data) // 2} of {len(data)} bytes"):
        get_voc.download(url, target, None, opener=opener, progress=False, attempts=1)
    assert not target.exists() and (tmp_path / "archive.tar.part").stat().st_size == len(data) // 2
    get_voc.download(url, target, None, opener=opener, progress=False)       # a rerun resumes
    assert target.read_bytes() == data and server.requests[-1] == f"bytes={len(data) // 2}-"


def test_item6_a_server_that_ignores_range_sends_the_file_again(payload, local_http, tmp_path):
    _, data, _ = payload
    server, url, opener = local_http
    server.ranges = False
    (tmp_path / "archive.tar.part").write_bytes(b"stale bytes of another try")
    get_voc.download(url, tmp_path / "archive.tar", None, opener=opener, progress=False)
    assert (tmp_path / "archive.tar").read_bytes() == data
    assert server.requests == ["bytes=26-"]
