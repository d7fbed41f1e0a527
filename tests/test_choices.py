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
    assert [level for _, level, _ in rows] == ["gainlib", "mean (Eq. 3)"]
    with pytest.raises(KeyError, match="no levels"):
        choice_methods(GAIN, ["fill of the erased region"],
                       levels={"fill of the erased region": ["plaid"]})


def test_bases_run_the_design_on_the_fc_head_and_on_gain_ext():
    import dataclasses

    from gainbook.choices import BASES, OnBackbone, base_method, choice_design
    from gainbook.profiles import book_profile

    settings = book_profile("default")
    gain, fc, ext = (base_method(name, settings.data.n_train) for name in BASES)
    assert gain == GAIN and ext.mode == "gain_ext" and ext.pixel_labels == 138   # 13.8 % of 1,000
    design = choice_design([gain, fc, ext], ["Grad-CAM weights", "extra-supervision weight"])
    assert [(row.base, row.factor, row.level) for row in design] == [
        (gain, "default", "gainlib"), (gain, "Grad-CAM weights", "detached"),
        (fc, "default", "gainlib"), (fc, "Grad-CAM weights", "detached"),
        (ext, "default", "gainlib"), (ext, "Grad-CAM weights", "detached"),
        (ext, "extra-supervision weight", "1"), (ext, "extra-supervision weight", "30")]
    detached_fc = design[3].method
    assert isinstance(detached_fc, OnBackbone) and dict(detached_fc.gain) == {"detach_weights": True}
    spec = detached_fc.spec(settings, 0)
    # the FC head's own classifier, with the profile's widths; the GAP head's runs unchanged
    assert spec.backbone == spec.init.backbone == "small_cnn_fc"
    assert spec.widths == settings.widths and spec.gain.detach_weights
    from gainbook.runs import build_model

    head = build_model(spec).classifier.classifier     # the profile's widths, a 6x6 grid
    assert head[2].in_features == settings.widths[-1] * 36
    assert design[1].method.spec(settings, 0).backbone == "small_cnn"
    assert len({row.method for row in design}) == len(design)
    with pytest.raises(ValueError, match="swaps the small CNN's head"):
        fc.spec(dataclasses.replace(settings, backbone="resnet18"), 0)
    with pytest.raises(KeyError, match="unknown base"):
        base_method("GAIN, VGG head", 1000)


def test_each_level_is_compared_with_its_own_base():
    from gainbook.choices import base_method, choice_design, choice_verdicts

    gain, fc = GAIN, base_method("GAIN, FC head", 1000)
    design = choice_design([gain, fc], ["Grad-CAM weights"])
    # attention: GAIN 0.5, its level +0.1; the FC head 0.2, its level -0.1 (as scored)
    value = {design[0].method: 0.5, design[1].method: 0.6,
             design[2].method: 0.2, design[3].method: 0.1}
    records = [{"method": m, "draw": s % 2, "seed": s, "attention on object": v + 0.001 * s,
                "mAP val": 0.9} for m, v in value.items() for s in range(5)]
    models = {m: {s: object() for s in range(5)} for m in value}
    three = [r for r in records if r["seed"] < 3]      # below 5 runs no verdict is drawn
    assert {r["verdict"] for r in choice_verdicts(design, three, models)} == {
        "inconclusive (3 runs of 2 data draws; a verdict needs 5 runs of 2 draws)"}
    rows = choice_verdicts(design, records, models)
    attention = {r["base"]: r for r in rows if r["metric"] == "attention on object"}
    assert attention["GAIN"]["difference"] == pytest.approx(0.1)
    assert attention["GAIN"]["verdict"] == "holds"
    assert attention["GAIN (FC head)"]["difference"] == pytest.approx(-0.1)
    assert attention["GAIN (FC head)"]["verdict"] == "does not hold"
    models[design[2].method][1] = None      # the FC head's default diverged on seed 1
    rows = choice_verdicts(design, records, models)
    assert [r["verdict"] for r in rows if r["base"] == "GAIN (FC head)"] == ["diverged"] * 2
