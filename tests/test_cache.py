"""The one run cache: keys from the code the training imports, safe loading, locking."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from gainbook.cache import CachedRun, fill, load_or_train, train_all, training_modules
from gainbook.profiles import book_profile
from gainbook.runs import RunSpec
from gainbook.segmentation_runs import SegmentationSpec, segmentation_spec

ROOT = Path(__file__).resolve().parents[1]


def test_the_training_modules_are_found_by_following_imports():
    attention = set(training_modules(RunSpec))
    segmentation = set(training_modules(SegmentationSpec))
    for modules in (attention, segmentation):
        # the scene renderer is reached through gainlib.data, never listed by hand
        assert {"gainlib.trainer", "gainlib.gain", "gainlib.data.render_scenes",
                "gainlib.attention"} <= modules
        assert not {"gainbook.viz", "gainbook.explorer", "gainbook.paper"} & modules
    assert {"gainlib.segmentation", "gainbook.runs"} <= segmentation
    # every submodule of the segmentation package, whichever of them segmentation_runs names
    package = ROOT / "gainlib" / "segmentation"
    assert {f"gainlib.segmentation.{p.stem}" for p in package.glob("[!_]*.py")} <= segmentation


_KEYS = textwrap.dedent("""
    from gainbook.profiles import book_profile
    from gainbook.segmentation_runs import segmentation_spec
    p = book_profile("ci")
    specs = [p.classifier(0), p.finetuned(0, "gain"),
             segmentation_spec("ci", p.data, "supervised"),
             segmentation_spec("ci", p.data, "gain", p.finetuned(0, "gain"))]
    print(" ".join(s.key() for s in specs))
""")


def _keys(tree: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _KEYS], cwd=tree, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
    return out.stdout.split()


@pytest.mark.slow
def test_editing_any_module_the_training_imports_changes_every_affected_key(tmp_path):
    tree = tmp_path / "tree"
    for package in ("gainlib", "gainbook"):
        shutil.copytree(ROOT / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    before = _keys(tree)

    def edit(relative: str, line: str) -> list[str]:
        with open(tree / relative, "a") as handle:
            handle.write(f"\n{line}\n")
        return _keys(tree)

    assert edit("gainlib/viz_free_comment.py", "# a new file nobody imports") == before
    assert edit("gainbook/viz.py", "_UNUSED = 1") == before            # not training code
    assert edit("gainlib/data/render_scenes.py", "# only a comment") == before
    changed = edit("gainlib/data/render_scenes.py", "_RENDER_VERSION = 2")
    # every key changes, the supervised segmentation network's included (it was not before)
    assert all(a != b for a, b in zip(before, changed))
    again = edit("gainlib/segmentation/crf.py", "_SEG_VERSION = 2")
    assert again[:2] == changed[:2] and again[2:] != changed[2:]


@dataclass(frozen=True)
class _Linear(CachedRun):
    """A tiny run for the cache's own tests."""

    width: int = 3
    prefix: ClassVar[str] = "linear"

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Linear(self.width, 1)

    def fit(self, model: nn.Module, folder: Path, *, device: str, progress: bool,
            cache_dir: Path) -> list[dict[str, Any]]:
        with torch.no_grad():
            model.weight.fill_(float(self.width))
        return [{"epoch": 1, "loss": 0.0}]


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_cached_model_that_does_not_load_is_retrained_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _Linear()
    first = load_or_train(spec, tmp_path, device="cpu")
    assert not first.cached and float(first.model.weight[0, 0]) == 3.0
    assert load_or_train(spec, tmp_path, device="cpu").cached
    final = first.path / "model.pt"
    with open(final, "wb") as handle:                   # a malicious pickle in place of the model
        pickle.dump({"model": _Boom(), "history": []}, handle)
    with pytest.warns(UserWarning, match="does not load"):
        again = load_or_train(spec, tmp_path, device="cpu")
    assert not (tmp_path / "pwned").exists()
    assert not again.cached and float(again.model.weight[0, 0]) == 3.0
    final.write_bytes(final.read_bytes()[:20])           # truncated
    with pytest.warns(UserWarning, match=str(final.name)):
        assert not load_or_train(spec, tmp_path, device="cpu").cached
    assert list(first.path.glob("model.pt.bad-*"))      # kept aside for inspection


@dataclass(frozen=True)
class _SlowLinear(_Linear):
    def fit(self, model: nn.Module, folder: Path, **kwargs: Any) -> list[dict[str, Any]]:
        time.sleep(1.0)         # long enough for the second build to find the run locked
        return super().fit(model, folder, **kwargs)


_TWO_BUILDS = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    import test_cache
    from gainbook.cache import load_or_train

    run = load_or_train(test_cache._SlowLinear(), sys.argv[1], device="cpu")
    print("cached" if run.cached else "trained")
""")


@pytest.mark.slow
def test_two_builds_on_one_cache_train_a_run_once(tmp_path):
    tests = str(Path(__file__).parent)
    builds = [subprocess.Popen([sys.executable, "-c", _TWO_BUILDS, str(tmp_path), tests],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
              for _ in range(2)]
    outcomes = []
    for build in builds:
        out, err = build.communicate(timeout=120)
        assert build.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["cached", "trained"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_dependencies_are_trained_first_and_keys_name_them():
    profile = book_profile("ci")
    tuned = profile.finetuned(0, "gain")
    assert tuned.dependencies() == [profile.classifier(0)]
    assert tuned.to_dict()["init"] == profile.classifier(0).key()
    seg = segmentation_spec("ci", profile.data, "sec", tuned)
    assert seg.dependencies() == [tuned] and seg.key().startswith("seg-sec-")
    assert tuned.key().startswith("gain-") and tuned.key() != profile.finetuned(1, "gain").key()


def test_train_all_returns_runs_in_order(tmp_path):
    specs = [_Linear(4), _Linear(2), _Linear(4)]
    runs = train_all(specs, tmp_path, device="cpu", progress=False)
    assert [float(r.model.weight[0, 0]) for r in runs] == [4.0, 2.0, 4.0]
    assert [r.cached for r in runs] == [False, False, False]


def test_fill_starts_the_longest_chains_of_work_first(tmp_path, monkeypatch):
    # a classifier with a GAIN run after it (3.7 times a classifier's epoch), listed after
    # two classifiers that nothing waits on: the chain's first link goes first
    profile = book_profile("ci")
    classifiers = [profile.classifier(seed) for seed in (1, 2)]
    tuned = profile.finetuned(0, "gain")
    seen = {}

    def record(function, items, **kwargs):
        seen["keys"] = [item[0].key() for item in items]
        seen["priority"] = kwargs["priority"]
        return [(None, 0.0)] * len(items)

    monkeypatch.setattr("gainbook.pool.run_in_processes", record)
    fill([*classifiers, tuned], tmp_path, progress=False)
    priority = dict(zip(seen["keys"], seen["priority"]))
    base = profile.classifier(0)
    assert priority[base.key()] == pytest.approx(base.cost() + tuned.cost())
    assert priority[tuned.key()] == tuned.cost()
    assert priority[base.key()] > priority[tuned.key()] > priority[classifiers[0].key()]
    assert tuned.cost() == pytest.approx(3.7 * tuned.train.epochs / base.train.epochs * base.cost())
