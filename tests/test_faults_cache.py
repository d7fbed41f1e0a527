"""Reliability, round two: a cache that never serves the wrong model. Each test holds one case
of the issue and failed before its fix.

A model stored for another run, a model without its history, symlinks planted in the cache, a
read-only cache, `~` and relative cache paths, and VOC data replaced under the same path.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import gainbook.cache as cache
from gainbook.cache import CacheError, CachedRun, cache_root, load_or_train
from gainbook.profiles import book_profile
from gainbook.runs import DataSpec

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Seeded(CachedRun):
    """A tiny run whose weights depend on its seed only."""

    seed: int = 0
    prefix: ClassVar[str] = "seeded"

    def build(self) -> nn.Module:
        torch.manual_seed(self.seed)
        return nn.Linear(3, 1)

    def fit(self, model: nn.Module, folder: Path, *, device: str, progress: bool,
            cache_dir: Path) -> list[dict[str, Any]]:
        return [{"epoch": 1, "seed": self.seed}]


def _weights(run) -> torch.Tensor:
    return run.model.weight.detach().clone()


# -- a loaded model must match the spec it is loaded for -------------------------------------

def test_a_model_copied_from_another_seeds_folder_is_moved_aside_and_retrained(tmp_path):
    zero, one = (load_or_train(_Seeded(seed), tmp_path, device="cpu") for seed in (0, 1))
    shutil.copyfile(one.path / "model.pt", zero.path / "model.pt")
    with pytest.warns(UserWarning, match=r"model.pt was saved for another run.*seed.*moved it to "
                                         r"model.pt.bad-"):
        again = load_or_train(_Seeded(0), tmp_path, device="cpu")
    assert not again.cached and torch.equal(_weights(again), _weights(zero))
    assert again.history == [{"epoch": 1, "seed": 0}]
    assert list(zero.path.glob("model.pt.bad-*"))
    assert load_or_train(_Seeded(0), tmp_path, device="cpu").cached     # the retrained one loads


def test_a_model_without_its_history_is_moved_aside_and_retrained(tmp_path):
    run = load_or_train(_Seeded(0), tmp_path, device="cpu")
    final = run.path / "model.pt"
    state = torch.load(final, weights_only=True)
    del state["history"]
    torch.save(state, final)
    with pytest.warns(UserWarning, match="model.pt does not load.*history"):
        again = load_or_train(_Seeded(0), tmp_path, device="cpu")    # KeyError on every load before
    assert not again.cached and again.history == [{"epoch": 1, "seed": 0}]
    assert list(run.path.glob("model.pt.bad-*"))


def test_in_a_read_only_cache_the_error_names_why_the_model_does_not_load(tmp_path, monkeypatch):
    run = load_or_train(_Seeded(0), tmp_path, device="cpu")
    (run.path / "model.pt").write_bytes(b"not a model")

    def read_only(source, target):
        raise PermissionError(13, "Read-only file system", str(source))

    monkeypatch.setattr(cache.os, "replace", read_only)
    with pytest.raises(CacheError, match=r"(?s)model.pt does not load \(.*\) and cannot be "
                                         r"moved aside \(.*Read-only file system"):
        load_or_train(_Seeded(0), tmp_path, device="cpu")


# -- symlinks are refused, never followed ---------------------------------------------------

@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_text("precious")
    return folder


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("where", ["spec.json", "lock", "folder", "model.pt", "last.pt"])
def test_a_symlink_planted_in_the_cache_is_refused_and_nothing_outside_is_written(
        tmp_path, outside, where):
    root, spec = tmp_path / "cache", _Seeded(0)
    key = spec.key()
    (root / key).mkdir(parents=True)
    planted = {"lock": root / f"{key}.lock", "folder": root / key}.get(where, root / key / where)
    if where == "folder":
        (root / key).rmdir()
        planted.symlink_to(outside, target_is_directory=True)
    else:
        planted.symlink_to(outside / ("victim.txt" if where != "lock" else "new.lock"))
    before = _tree(outside)
    with pytest.raises(CacheError, match=f"{planted}.*symbolic link"):
        load_or_train(spec, root, device="cpu")
    assert _tree(outside) == before


# -- one absolute cache location ------------------------------------------------------------

def test_the_cache_location_is_expanded_and_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GAIN_BOOK_CACHE", "~/gain-cache")
    assert cache_root() == tmp_path / "home" / "gain-cache"             # not ./~/gain-cache
    assert cache_root("~/other") == tmp_path / "home" / "other"
    # A relative $GAIN_BOOK_CACHE is the repository's: the build (in the repository) and the
    # kernels (in the chapters' folder) use one cache.
    monkeypatch.setenv("GAIN_BOOK_CACHE", "shared-cache")
    seen = set()
    for cwd in (ROOT, tmp_path):
        monkeypatch.chdir(cwd)
        seen.add(cache_root())
    assert seen == {ROOT / "shared-cache"}


# -- the key covers the data on disk --------------------------------------------------------

@pytest.fixture
def voc(tmp_path):
    from voc_fixture import make_fake_voc

    make_fake_voc(tmp_path / "data")
    return tmp_path / "data"


def _voc_spec(voc_root):
    return replace(book_profile("ci").classifier(0),
                   data=DataSpec("voc", image_size=32, voc_root=voc_root))


def test_replacing_the_voc_tree_under_the_same_path_changes_the_key(voc, tmp_path):
    from voc_fixture import make_fake_voc

    before = _voc_spec(str(voc)).key()
    assert "files" in _voc_spec(str(voc)).to_dict()["data"]
    assert "files" not in book_profile("ci").classifier(0).to_dict()["data"]   # generated data
    make_fake_voc(tmp_path / "new")
    image = next((tmp_path / "new" / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))
    image.write_bytes(image.read_bytes() + b"\0")
    shutil.rmtree(voc)
    (tmp_path / "new").rename(voc)                          # another tree, the same path
    changed = _voc_spec(str(voc)).key()
    assert changed != before
    lists = voc / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    ids = (lists / "val.txt").read_text().split()
    (lists / "val.txt").write_text("\n".join(ids[:-1]) + "\n")   # a list edited in place
    assert _voc_spec(str(voc)).key() != changed


def test_two_spellings_of_one_voc_folder_share_one_key_and_paths_serialise(voc, monkeypatch):
    monkeypatch.chdir(voc.parent)
    spellings = [str(voc), f"{voc}/", f"{voc}/../data", "data", Path("data"), voc]
    specs = [_voc_spec(s) for s in spellings]
    assert len({s.key() for s in specs}) == 1
    assert {s.data.voc_root for s in specs} == {str(voc.resolve())}
    json.dumps(specs[-1].to_dict())                             # a Path failed in the encoder
    monkeypatch.setenv("HOME", str(voc.parent))
    assert DataSpec("voc", voc_root="~/data").voc_root == str(voc.resolve())
