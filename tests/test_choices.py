"""The implementation-choice design of chapter 7: one factor at a time against the defaults."""

from __future__ import annotations

import pytest

from gainbook.chapters import GAIN, extra_supervision
from gainbook.choices import FACTORS, PROFILE_FACTORS, choice_methods
from gainlib.gain import GainConfig


def test_each_level_changes_only_its_factor():
    rows = choice_methods(GAIN, ["fill of the erased region", "sigma / omega"])
    assert rows[0] == ("default", "gainlib", GAIN)
    for factor, level, method in rows[1:]:
        fields = dict(FACTORS[factor])[level]
        assert dict(method.gain) == fields and method.mode == "gain"
        config = GainConfig(**dict(method.gain))       # a valid configuration
        assert all(getattr(config, k) == v for k, v in fields.items())
    assert len({method for _, _, method in rows}) == len(rows)    # distinct runs


def test_presets_are_levels_and_the_extra_weight_needs_gain_ext():
    presets = choice_methods(GAIN, ["preset"])[1:]
    assert [level for _, level, _ in presets] == [
        "as alokwhitewolf", "as ilyak93", "as ngxbac", "as austindoolittle"]
    assert dict(presets[2][2].gain)["am_score"] == "max_softmax"
    assert len(choice_methods(GAIN, ["extra-supervision weight"])) == 1
    ext = choice_methods(extra_supervision("p", 10), ["extra-supervision weight"])
    assert [dict(m.gain)["ext_weight"] for _, _, m in ext[1:]] == [1.0, 30.0]
    assert all(m.pixel_labels == 10 for _, _, m in ext)


def test_profiles_name_known_factors_and_unknown_ones_are_refused():
    assert all(set(factors) <= set(FACTORS) for factors in PROFILE_FACTORS.values())
    with pytest.raises(KeyError, match="unknown factors"):
        choice_methods(GAIN, ["colour of the sky"])


def test_a_profile_can_keep_some_levels_of_a_factor():
    from gainbook.choices import PROFILE_LEVELS

    rows = choice_methods(GAIN, ["fill of the erased region"],
                          levels=PROFILE_LEVELS["default"])
    assert [level for _, level, _ in rows] == ["gainlib", "blur"]
    with pytest.raises(KeyError, match="no levels"):
        choice_methods(GAIN, ["fill of the erased region"],
                       levels={"fill of the erased region": ["plaid"]})
