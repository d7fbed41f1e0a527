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
