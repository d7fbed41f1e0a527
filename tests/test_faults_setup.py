"""Reliability, round two: the book's entry points check seeds, sizes and counts. Each test holds
one case of the issue and failed before its fix.

`gainbook.chapters.setup()` and `DataSpec` with seeds given as a string or none at all, image
sizes as a string, zero or a fraction (IndexError, ZeroDivisionError or string-formatting errors
before), and paths and numpy scalars (which failed in the JSON encoder of the run's key).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gainbook.chapters import setup
from gainbook.profiles import book_profile
from gainbook.runs import DataSpec


@pytest.mark.parametrize("overrides, error, message", [
    ({"seeds": "0,1"}, TypeError, r"BookProfile\.seeds must be a sequence of ints, got '0,1'"),
    ({"seeds": []}, ValueError, r"BookProfile\.seeds must hold at least one seed"),
    ({"seeds": [0, -1]}, ValueError, r"BookProfile\.seeds\[1\] must be >= 0, got -1"),
    ({"seeds": [0, 0]}, ValueError, r"BookProfile\.seeds holds seed 0 twice"),
    ({"seeds": [0.5]}, TypeError, r"BookProfile\.seeds\[0\] must be an int, got 0.5"),
    ({"image_size": "32"}, TypeError, r"DataSpec\.image_size must be an int, got '32'"),
    ({"image_size": 0}, ValueError, r"DataSpec\.image_size must be >= 1, got 0"),
    ({"image_size": 31.5}, TypeError, r"DataSpec\.image_size must be an int, got 31.5"),
    ({"n_train": 0}, ValueError, r"DataSpec\.n_train must be >= 1"),
    ({"n_eval": -5}, ValueError, r"DataSpec\.n_eval must be >= 1"),
    ({"context_bias": 1.5}, ValueError, r"DataSpec\.context_bias must be a finite number >= 0.0 "
                                        r"and <= 1.0, got 1.5"),
    ({"dataset": "mnist"}, ValueError, r"DataSpec\.dataset must be one of 'synthetic'"),
    ({"voc_root": 3}, TypeError, r"DataSpec\.voc_root must be a path or None"),
])
def test_setup_refuses_bad_seeds_sizes_and_counts_naming_them(overrides, error, message, capsys):
    with pytest.raises(error, match=message):
        setup("ci", **overrides)
    assert capsys.readouterr().out == ""          # nothing printed as if it would run


def test_setup_accepts_numpy_scalars_and_lists_and_keys_stay_plain(capsys):
    settings = setup("ci", seeds=np.arange(2), image_size=np.int64(32), n_train=np.int32(96))
    assert settings.seeds == (0, 1) and all(type(s) is int for s in settings.seeds)
    assert type(settings.data.image_size) is int and type(settings.data.n_train) is int
    assert settings.data == book_profile("ci").data       # the same data, so the same runs
    assert settings.classifier(1).key() == book_profile("ci", seeds=[0, 1]).classifier(1).key()
    json.dumps(settings.classifier(1).to_dict())           # numpy ints failed in the encoder
    assert "seeds [0, 1]" in capsys.readouterr().out


def test_a_dataspec_takes_a_path_as_voc_root(tmp_path):
    data = DataSpec("voc", voc_root=tmp_path)             # failed in the JSON encoder
    assert data.voc_root == str(tmp_path.resolve())
    spec = replace(book_profile("ci").classifier(0), data=data)
    assert json.loads(json.dumps(spec.to_dict()))["data"]["voc_root"] == str(tmp_path)
    assert isinstance(Path(data.voc_root), Path)
