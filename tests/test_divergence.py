"""A configuration that blows up is recorded as diverged (chapter 7), not a failed chapter."""

import dataclasses

import pytest

from gainbook.chapters import CONTINUED, DIVERGED_FILE, GAIN, method_runs
from gainbook.profiles import book_profile


@pytest.fixture()
def exploding(tmp_path, monkeypatch):
    monkeypatch.setenv("GAIN_BOOK_CACHE", str(tmp_path))
    # SGD at lr 1e8: the weights are inf after the first steps; the trainer's guard stops it.
    return dataclasses.replace(book_profile("ci"), finetune_lr=1e8), tmp_path


def test_a_diverged_run_is_none_and_marked_and_never_trained_again(exploding):
    settings, cache = exploding
    runs = method_runs(settings, [GAIN, CONTINUED], log=False, diverged="record")
    assert runs[GAIN][0] is None and runs[CONTINUED][0] is None
    marker = cache / GAIN.spec(settings, 0).key() / DIVERGED_FILE
    assert "NonFiniteLossError" in marker.read_text()
    again = method_runs(settings, [GAIN], log=False, diverged="record")
    assert again[GAIN][0] is None     # read from the marker
    # a sound run beside them trains and loads as usual
    sound = method_runs(book_profile("ci"), [GAIN], log=False, diverged="record")
    assert sound[GAIN][0] is not None


def test_by_default_a_divergence_stops_the_chapter(exploding):
    settings, _ = exploding
    with pytest.raises(Exception, match="non-finite"):
        method_runs(settings, [GAIN], log=False)


class _Spec:
    def __init__(self, name):
        self.name = name

    def key(self):
        return f"gain-{self.name}"


def test_after_a_divergence_the_other_runs_still_train_side_by_side(tmp_path, monkeypatch):
    # The pool stops at the first failure and names the run: that run is marked, the others
    # are handed to the pool again together, not trained one by one in this process.
    import gainbook.chapters as chapters
    from gainlib.trainer import NonFiniteLossError

    monkeypatch.setenv("GAIN_BOOK_CACHE", str(tmp_path))
    specs = [_Spec(name) for name in ("a", "b", "bad", "c", "d")]
    calls = []

    def train_runs(batch, device="cpu", progress=True):
        calls.append(([s.name for s in batch], progress))
        for spec in batch:
            if spec.name == "bad":
                raise RuntimeError(f"training {len(batch)} runs: run {spec.key()} failed in a "
                                   "worker process") from NonFiniteLossError("loss is nan")
        return [spec.name for spec in batch]

    monkeypatch.setattr(chapters, "train_runs", train_runs)
    got = chapters._train_recording_divergence(specs, "cpu")
    assert got == ["a", "b", None, "c", "d"]
    assert calls[:2] == [(["a", "b", "bad", "c", "d"], True), (["a", "b", "c", "d"], True)]
    assert all(not progress and len(batch) == 1 for batch, progress in calls[2:])   # loads
    assert "NonFiniteLossError: loss is nan" in (tmp_path / "gain-bad" / DIVERGED_FILE).read_text()
