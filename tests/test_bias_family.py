"""The bias family (gainbook.bias_family) and how it is read (gainbook.family_report)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from gainbook import bias_family as bf
from gainbook import family_report as fr
from gainbook.runs import DataSpec
from gainlib.data import BiasScenario, ContextScenes
from gainlib.gain import GAIN, GainConfig
from gainlib.models import build_classifier


def test_every_member_is_measured_by_the_same_methods():
    member = bf.FAMILY[0]
    kinds = bf.member_methods(member)
    assert len(kinds) == 2 + 2 * len(bf.PROTOCOLS) * len(bf.FILLS)
    assert {(m, p) for m, p, f, _ in kinds if not f} == {("classifier", "scratch"),
                                                          ("classifier", "fine-tuned")}
    for method, protocol, fill, how in kinds:
        if method == "GAIN_ext^p":
            assert how.pixel_labels == round(member.scenario.mask_share * bf._N_TRAIN)
        if fill:
            assert dict(how.gain)["fill"] == fill
            assert how.start == ("scratch" if protocol == "scratch" else "classifier")
    assert len(bf.FAMILY) >= 6
    assert len({m.name for m in bf.FAMILY}) == len(bf.FAMILY)


def test_the_oracle_trains_without_the_bias_and_is_scored_on_the_member():
    member = bf.FAMILY[1]
    oracle = bf.member_profile(member, unbiased=True).data.design
    assert oracle.context_given_object == oracle.context_given_no_object == 0.5
    assert bf.member_profile(member).data.design == member.scenario


def test_a_context_dataspec_needs_a_scenario_and_counts_its_classes():
    with pytest.raises(TypeError, match="BiasScenario"):
        DataSpec("context")
    assert DataSpec("context", design=BiasScenario()).num_classes == 1
    assert DataSpec("context", design=BiasScenario(multi_label=True)).num_classes == 4


def _tiny_model(fill: str = "mean") -> GAIN:
    torch.manual_seed(0)
    classifier, layer = build_classifier("small_cnn", 1, widths=(8, 8))
    return GAIN(classifier, layer, GainConfig(fill=fill)).eval()


@pytest.mark.parametrize("fill", ["mean", "blur", "noise"])
def test_hole_scores_and_attention_iou_are_measured_with_the_models_own_fill(fill):
    scenes = ContextScenes("val", 24, image_size=32)
    model = _tiny_model(fill)
    holes = bf.hole_scores(model, scenes)
    assert 0 <= holes["p(boat), boat-free"] <= 1 and 0 <= holes["p(boat), boat-free with a hole"] <= 1
    assert holes["hole rise"] == pytest.approx(holes["p(boat), boat-free with a hole"]
                                               - holes["p(boat), boat-free"])
    assert 0 <= bf.attention_iou(model, scenes) <= 1


def _records(effect: float, seeds=range(5), scenario="a", hole=0.0):
    """Runs where GAIN_ext^p gains ``effect`` over the classifier on every water metric and on
    the AUC, and GAIN gains nothing."""
    rows = []
    rng = np.random.default_rng(0)
    moved = {"water without boat", "water w/o boat, val threshold", "AUC", "attention IoU"}
    for seed in seeds:
        for protocol in bf.PROTOCOLS:
            base = {"scenario": scenario, "seed": seed, "draw": seed % 2, "protocol": protocol}
            noise = rng.normal(0, 0.01)
            plain = {m: 0.2 + noise for m in fr.COMPARED}
            rows.append({**base, "method": "classifier", "fill": "", **plain, "hole rise": 0.0})
            for fill in bf.FILLS:
                for method, gain in (("GAIN", 0.0), ("GAIN_ext^p", effect)):
                    rows.append({**base, "method": method, "fill": fill,
                                 **{m: v + (gain if m in moved else 0.0) for m, v in plain.items()},
                                 "hole rise": hole if method == "GAIN_ext^p" else 0.0})
    return rows


def test_family_comparisons_find_a_known_effect_and_no_effect_where_there_is_none():
    rows = fr.family_comparisons(_records(0.3))
    ext = [r for r in rows if r["method"] == "GAIN_ext^p" and r["baseline"] == "classifier"
           and r["metric"] == "water without boat"]
    assert len(ext) == len(bf.PROTOCOLS) * len(bf.FILLS)
    assert all(r["verdict"] == "holds" and r["difference"] == pytest.approx(0.3) for r in ext)
    none = [r for r in rows if r["method"] == "GAIN_ext^p" and r["metric"] == "boat without water"]
    assert all(r["verdict"] != "holds" for r in none)
    assert fr.family_verdicts(rows, {"a": True}) == {"a": "partly reproduces"}
    assert fr.family_verdicts(rows, {"a": False}) == {"a": "not testable here"}
    row = fr.family_score(rows, {"a": True}, "84 % / 84 %")
    assert row["verdict"] == "partly reproduces (0 of 1 testable scenarios)"
    table = fr.family_table(rows, testable={"a": False})
    assert table.index.names == ["scenario", "protocol", "fill"]
    assert table.loc[("a", "scratch", "mean"), "water without boat (points)"].startswith("+30.0")
    assert "not testable here" in table.loc[("a", "scratch", "mean"), "water without boat (points)"]
    assert "not testable" not in table.loc[("a", "scratch", "mean"), "attention IoU (points)"]


def test_too_few_runs_decide_nothing():
    rows = fr.family_comparisons(_records(0.3, seeds=range(3)))
    assert all(r["verdict"].startswith("inconclusive") for r in rows)


def test_the_mechanism_test_sees_a_rank_correlation_across_cells():
    records = []
    for i, (hole, effect) in enumerate([(-0.4, 0.0), (-0.2, 0.1), (0.0, 0.4), (-0.3, 0.05)]):
        records += _records(effect, scenario=f"s{i}", hole=hole)
    result = fr.mechanism_test(records, methods=("GAIN_ext^p",), n_perm=500)
    assert result["cells"] == 4 * len(bf.PROTOCOLS) * len(bf.FILLS)
    assert result["spearman"] > 0.9 and result["p"] < 0.01
    flat = fr.mechanism_test(_records(0.1, scenario="x", hole=-0.1), methods=("GAIN_ext^p",),
                             n_perm=200)
    assert np.isnan(flat["spearman"]) or flat["p"] > 0.05


def _fake_record(checks_pass: bool):
    check = {"precondition": "oracle: AUC boat without water vs water without boat",
             "value": 0.95, "threshold": ">= 0.9", "passed": checks_pass}
    return {"recorded": "now", "command": "x", "machine": "y", "modules": {},
            "members": {"a": {"checks": [check], "records": _records(0.3)}}}


def test_the_record_is_read_back_with_its_preconditions(tmp_path):
    record = _fake_record(False)
    assert fr.decidable_members(record) == {"a": False}
    assert fr.decidable_members(_fake_record(True)) == {"a": True}
    table = fr.family_checks(record)
    assert table.loc[("a", "oracle: AUC boat without water vs water without boat"), "passed"] == "✗"
    assert len(fr.family_records(record)) == len(_records(0.3))
    path = tmp_path / "family.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a bias-family record"):
        bf.load_family(path)


def test_the_figure_has_a_panel_per_outcome():
    figure = fr.family_figure(fr.family_comparisons(_records(0.3)), testable={"a": True})
    assert len(figure.axes) == 1 + len(fr.DECISION)
    member = fr.member_table(_records(0.3))
    assert "water without boat (%)" in member.columns


def test_a_small_member_trains_scores_and_records(tmp_path, monkeypatch):
    monkeypatch.setenv("GAIN_BOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bf, "_N_TRAIN", 48)
    monkeypatch.setattr(bf, "_N_EVAL", 24)
    monkeypatch.setattr(bf, "_TRAINING", {**bf._TRAINING, "widths": (8, 8), "classifier_epochs": 1,
                                          "finetune_epochs": 1})
    member = replace(bf.FAMILY[0], name="tiny")
    monkeypatch.setattr(bf, "FAMILY", (member,))
    records = bf.scenario_records(member, fills=("mean",), protocols=("scratch",), seeds=(0, 1),
                                  workers=1)
    methods = sorted((r["method"], r["seed"]) for r in records)
    assert methods == [("GAIN", 0), ("GAIN", 1), ("GAIN_ext^p", 0), ("GAIN_ext^p", 1),
                       ("classifier", 0), ("classifier", 1), ("oracle", 0), ("oracle", 1)]
    assert all(set(bf.FAMILY_METRICS) <= set(r) for r in records)


def test_a_record_knows_when_the_code_has_changed_since(tmp_path, monkeypatch):
    monkeypatch.setenv("GAIN_BOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bf, "FILLS", ("mean",))
    monkeypatch.setattr(bf, "PROTOCOLS", ("scratch",))
    member = replace(bf.FAMILY[0], name="tiny")
    monkeypatch.setattr(bf, "FAMILY", (member,))
    small = {"n_train": 48, "n_eval": 24, "widths": (8, 8), "classifier_epochs": 1,
             "finetune_epochs": 1, "seeds": (0, 1)}
    out = tmp_path / "family.json"
    bf.run_family((member,), out=out, workers=1, **small)
    record = bf.load_family(out)
    assert record["settings"]["n_train"] == 48 and set(record["members"]) == {"tiny"}
    assert bf.family_changed_since(record) == []
    monkeypatch.setattr(bf, "FAMILY", (replace(member, scenario=replace(member.scenario,
                                                                         contrast=0.6)),))
    assert bf.family_changed_since(record) == ["the runs of 'tiny'"]
    record["modules"]["gainbook.studies"] = "edited"
    assert "gainbook.studies" in bf.family_changed_since(record)


def test_what_moves_separates_the_map_from_the_decision():
    rows = fr.family_comparisons(_records(0.3) + _records(0.0, scenario="b")
                                 + _records(0.3, scenario="c"))
    moves = fr.what_moves(rows, {"a": True, "b": True, "c": False})
    assert moves == {"a": "map and decision", "b": "neither", "c": "not testable here"}
    only_map = [{**r, "verdict": "inconclusive"} if r["metric"] == "AUC" else r for r in rows]
    assert fr.what_moves(only_map, {"a": True})["a"] == "map only"


def test_the_slice_is_set_beside_the_record_only_when_it_ran_the_records_settings():
    record = _fake_record(True)
    record["settings"] = {"seeds": [0, 1]}
    mine = [dict(r) for r in record["members"]["a"]["records"][:4]]
    mine[0]["AUC"] += 0.05
    assert fr.slice_agreement(mine, record, {"seeds": (0, 1)}) == pytest.approx(0.05)
    assert fr.slice_agreement(mine, record, {"seeds": (0,)}) is None
    assert fr.slice_agreement([{**r, "seed": 99} for r in mine], record, {"seeds": (0, 1)}) is None
