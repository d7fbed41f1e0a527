"""The scorecard's verdicts: computed from intervals and preconditions, never from tallies."""

import math

import pytest

from gainbook.preconditions import Precondition, orientation_checks
from gainbook.scorecard import (OURS_COLUMN, VERDICT_CATEGORIES, VERDICT_COLOURS, Claim, not_run,
                                paired_metrics, parse_ours, score, scorecard, scorecard_figure,
                                verdict_category)
from gainbook.stats import compare_records, decided_verdict, format_difference

CLAIM = Claim("Table 7", "GAIN_ext^p beats GAIN", "84 vs 48 %", 5)


def _records(gap: float, seeds: int = 5, draws: int = 2) -> list[dict]:
    return [{"method": m, "seed": s, "draw": d,
             "acc": 0.5 + (gap if m == "ext" else 0.0) + 0.01 * ((s * 7 + d * 3) % 5)}
            for m in ("ext", "gain") for s in range(seeds) for d in range(draws)]


def _row(gap: float, **kw) -> dict:
    return compare_records(_records(gap, **kw), "acc", "ext", "gain")


def test_a_clear_gain_over_five_seeds_and_two_draws_reproduces():
    row = score(CLAIM, [_row(0.2)])
    assert row["verdict"] == "reproduces"
    assert row["ours: difference in points [95 % interval]"].startswith("acc: +20.0 [")


def test_a_clear_loss_does_not_reproduce_and_a_mix_partly_does():
    assert score(CLAIM, [_row(-0.2)])["verdict"] == "does not reproduce (reversed: acc)"
    assert score(CLAIM, [_row(0.2), _row(-0.2)])["verdict"] == (
        "partly reproduces (reversed: acc)")


def test_a_reversal_is_named_and_a_difference_too_small_to_count_is_not_one():
    reversed_row = {**_row(-0.2), "metric": "boats"}
    assert score(CLAIM, [_row(0.2), reversed_row])["verdict"] == (
        "partly reproduces (reversed: boats)")
    # A difference that is positive but smaller than the claim's margin is not a reversal.
    small = compare_records(_records(0.002), "acc", "ext", "gain", margin=0.05)
    assert small["verdict"] == "does not hold" and small["low"] > 0
    assert score(CLAIM, [small])["verdict"] == "does not reproduce"
    inconclusive = {**_row(0.2), "pairs": 3, "groups": 1}
    assert score(CLAIM, [reversed_row, inconclusive])["verdict"] == (
        "does not reproduce where decided (reversed: boats; the rest inconclusive)")


def test_a_less_claim_is_reversed_when_its_interval_lies_above_zero():
    # "follows the lamp less": the method's share minus the baseline's should be below zero.
    more = compare_records(_records(0.2), "acc", "ext", "gain", direction="less")
    assert more["direction"] == "less" and more["low"] > 0
    assert score(CLAIM, [more])["verdict"] == "does not reproduce (reversed: acc)"
    less = compare_records(_records(-0.2), "acc", "ext", "gain", direction="less")
    assert score(CLAIM, [less])["verdict"] == "reproduces"
    # Falling short of a margin on the claimed side is not a reversal.
    short = compare_records(_records(-0.002), "acc", "ext", "gain", direction="less",
                            margin=0.05)
    assert short["verdict"] == "does not hold" and short["high"] < 0
    assert score(CLAIM, [short])["verdict"] == "does not reproduce"
    # Rows without a direction (older records) are read as "greater" claims.
    legacy = {k: v for k, v in _row(-0.2).items() if k != "direction"}
    assert score(CLAIM, [legacy])["verdict"] == "does not reproduce (reversed: acc)"


def test_a_gain_that_holds_but_stays_under_a_point_reproduces_in_direction_only():
    tiny = [{"method": m, "seed": s, "draw": d, "acc": 0.5 + (0.004 if m == "ext" else 0.0)
             + 0.0001 * ((s * 7 + d * 3) % 5)}
            for m in ("ext", "gain") for s in range(5) for d in range(2)]
    row = compare_records(tiny, "acc", "ext", "gain")
    assert row["verdict"] == "holds" and row["high"] < 0.01
    assert score(CLAIM, [row])["verdict"] == (
        "reproduces (direction only: every interval within a point of zero)")
    assert score(CLAIM, [row, _row(0.2)])["verdict"] == "reproduces"   # one large enough


def test_three_seeds_of_one_draw_decide_nothing_however_large_the_gap():
    row = _row(0.3, seeds=3, draws=1)
    assert row["verdict"] == "holds"                      # the interval alone would say so
    assert decided_verdict(row).startswith("inconclusive (3 runs of 1 data draw")
    assert score(CLAIM, [row])["verdict"].startswith("inconclusive")


def test_a_failed_precondition_makes_the_claim_not_testable_whatever_the_result():
    oracle = Precondition("oracle AUC", 0.44, 0.95)
    row = score(CLAIM, [_row(0.2)], [oracle, Precondition("mining", 0.3, 0.2)])
    assert row["verdict"] == "not testable here (failed: oracle AUC)"


def test_a_single_run_has_no_interval_and_no_verdict():
    row = _row(0.2, seeds=1, draws=1)
    assert math.isnan(row["low"]) and row["verdict"] == "inconclusive"
    assert format_difference(row) == "+20.0 [no interval]"
    assert "(1 run)" in score(CLAIM, [row])["ours: difference in points [95 % interval]"]


def test_paired_metrics_compares_two_metrics_of_the_same_runs():
    runs = [{"seed": s, "part": 0.9 - 0.01 * s, "body": 0.5} for s in range(6)]
    row = compare_records(paired_metrics(runs, ["part", "body"]), "value", "part", "body",
                          pair=("seed",), group=None)
    assert row["difference"] == pytest.approx(0.375) and row["verdict"] == "holds"


def test_orientation_preconditions_fail_when_the_oracle_is_at_chance():
    rows = [{"method": "oracle", "accuracy, set 2": 0.5, "follows lighting, set 2": 0.5},
            {"method": "classifier", "accuracy, set 2": 0.5, "follows lighting, set 2": 0.97}]
    oracle, follows = orientation_checks(rows, oracle="oracle", classifier="classifier")
    assert not oracle.passed and follows.passed


def test_orientation_shortcut_check_fails_when_the_classifier_reads_the_object():
    """A classifier right more often than it follows the lamp leaves no shortcut to remove."""
    rows = [{"method": "oracle", "accuracy, random lamp": 0.98, "follows lighting, random lamp": 0.3},
            {"method": "classifier", "accuracy, random lamp": 0.8,
             "follows lighting, random lamp": 0.45}]
    oracle, follows = orientation_checks(rows, oracle="oracle", classifier="classifier",
                                         test_set="random lamp")
    assert oracle.passed and not follows.passed
    assert follows.value == pytest.approx(0.45 - 0.8)


def test_scorecard_is_indexed_by_claim():
    pytest.importorskip("pandas")
    table = scorecard([score(CLAIM, [_row(0.2)])])
    assert list(table.index) == ["Table 7: GAIN_ext^p beats GAIN"]
    assert table.loc["Table 7: GAIN_ext^p beats GAIN", "chapter"] == 5


def test_scorecard_shows_long_cells_in_full_and_leaves_pandas_options_alone():
    pd = pytest.importorskip("pandas")
    long_claim = Claim("Table 7", "GAIN_ext^p beats GAIN " + "on boats without water " * 4, "64.1 vs 59.4", 5)
    table = scorecard([score(long_claim, [_row(0.2)])])
    before = pd.get_option("display.max_colwidth")
    html = table._repr_html_()
    assert long_claim.claim.strip() in " ".join(html.split())        # not cut to 50 characters
    assert long_claim.claim.strip()[:60] in repr(table)
    assert pd.get_option("display.max_colwidth") == before == 50      # the default, untouched


# -- the scorecard at a glance: parse_ours, verdict_category, scorecard_figure -------------------

def test_parse_ours_reads_every_comparison_of_a_cell_in_points():
    text = ("iou: +1.6 [+0.5, +2.8] (5 runs); GAIN's cues, Fig. 4 - SEC: -3.0 [-3.3, -2.6] "
            "(5 runs); body: 0.0 [-2.0, 0.0] (5 runs)")
    parsed = parse_ours(text)
    assert [c["metric"] for c in parsed] == ["iou", "GAIN's cues, Fig. 4 - SEC", "body"]
    assert parsed[0] == {"metric": "iou", "difference": 1.6, "low": 0.5, "high": 2.8, "runs": 5}
    assert (parsed[1]["difference"], parsed[1]["low"], parsed[1]["high"]) == (-3.0, -3.3, -2.6)
    assert (parsed[2]["difference"], parsed[2]["high"]) == (0.0, 0.0)


def test_parse_ours_reads_what_score_writes_and_skips_what_is_not_a_comparison():
    row = score(CLAIM, [_row(0.2), {**_row(0.2, seeds=1, draws=1), "metric": "one run"}])
    single = parse_ours(row[OURS_COLUMN])[1]
    assert single["metric"] == "one run" and single["runs"] == 1
    assert math.isnan(single["low"]) and math.isnan(single["high"])
    assert parse_ours(row[OURS_COLUMN])[0]["difference"] == 20.0
    assert parse_ours("–") == parse_ours(not_run(CLAIM, "box_counts")[OURS_COLUMN]) == []
    family = ("not testable here: disjunctive (water alone predicts the boat); lamp | "
              "does not reproduce: conjunctive (5 %)")
    assert parse_ours(family) == []
    # Free text beside a comparison leaves the comparison.
    mixed = parse_ours(f"{family} | acc: +1.0 [+0.5, +1.5] (6 runs)")
    assert [c["metric"] for c in mixed] == ["acc"]


@pytest.mark.parametrize("verdict, category", [
    ("reproduces", "reproduces"),
    ("reproduces (direction only: every interval within a point of zero)", "reproduces"),
    ("partly reproduces (the rest inconclusive)", "partly reproduces"),
    ("partly reproduces (reversed: boats)", "partly reproduces"),
    ("inconclusive (3 runs of 1 data draw)", "inconclusive"),
    ("does not reproduce (reversed: acc)", "does not reproduce"),
    ("does not reproduce where decided (reversed: boats; the rest inconclusive)",
     "does not reproduce"),
    ("not testable here (failed: oracle AUC)", "not testable here"),
    ("not run on this profile (box_counts)", "not run"),
    ("not measured", "not run"),
    ("partly reproduces (1 of 3 testable scenarios)", "partly reproduces"),
])
def test_verdict_category_reads_the_verdict_before_its_parenthesis(verdict, category):
    assert verdict_category(verdict) == category
    assert category in VERDICT_CATEGORIES


def test_verdict_category_refuses_a_verdict_it_does_not_know():
    with pytest.raises(ValueError, match="not a scorecard verdict: 'holds'"):
        verdict_category("holds")


def _figure_rows() -> list[dict]:
    """Rows of every kind, as gainbook.records.scorecard_rows reads them back (``ours``)."""
    def row(claim: str, ours: str, verdict: str, chapter: int = 3) -> dict:
        return {"claim": claim, "paper": "–", "ours": ours, "verdict": verdict,
                "chapter": chapter}
    return [row("Table 1: A",
                "iou: +1.6 [+0.5, +2.8] (5 runs); body: +25.4 [+19.8, +30.0] (5 runs)",
                "reproduces"),
            row("Table 3: B", "iou: +0.1 [-1.4, +1.3] (5 runs)", "inconclusive"),
            row("Table 3: not run", "–", "not run on this profile (box_counts)"),
            row("Table 1: C " + "with a very long claim " * 5, "mIoU: -3.0 [-3.3, -2.6] (5 runs)",
                "does not reproduce (reversed: mIoU)", 4),
            row("Table 7: D",
                "acc: +3.7 [+1.7, +5.5] (5 runs); follows: -2.5 [-8.0, +2.0] (5 runs)",
                "partly reproduces (the rest inconclusive)", 6),
            row("Table 7: E", "acc: +20.0 [no interval] (1 run)",
                "not testable here (failed: x)", 5),
            row("Table 7 family", "reproduces: a | not testable here: b",
                "partly reproduces (1 of 2)", 5)]


def _points(figure) -> dict[str, list[tuple[float, float]]]:
    """The figure's points (difference, line) by the label of the artist that drew them."""
    (ax,) = figure.axes
    return {line.get_label(): list(zip(line.get_xdata(), line.get_ydata()))
            for line in ax.get_lines() if line.get_marker() == "o"}


def test_scorecard_figure_draws_one_line_per_comparison_coloured_by_verdict():
    from matplotlib.colors import to_hex

    figure = scorecard_figure(_figure_rows())
    points = _points(figure)
    assert sum(len(p) for p in points.values()) == 7      # the two rows without numbers left out
    assert points["reproduces"] == [(1.6, 0), (25.4, 1)]
    assert points["inconclusive"] == [(0.1, 2)]
    assert points["does not reproduce"] == [(-3.0, 3)]
    assert points["partly reproduces"] == [(3.7, 4), (-2.5, 5)]
    assert points["not testable here, no interval"] == [(20.0, 6)]   # an open point, no bar
    (ax,) = figure.axes
    for line in ax.get_lines():
        if line.get_marker() == "o":
            category = line.get_label().split(",")[0]
            assert to_hex(line.get_color()) == VERDICT_COLOURS[category].lower()
    bars = {to_hex(c.get_colors()[0]): c.get_segments() for c in ax.collections}
    assert [list(s[:, 0]) for s in bars[VERDICT_COLOURS["reproduces"].lower()]] == [
        [0.5, 2.8], [19.8, 30.0]]
    assert VERDICT_COLOURS["not testable here"].lower() not in bars   # one run: no interval
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())    # the zero line
    assert ax.get_xlabel() == "paired difference (points)"
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["reproduces", "partly reproduces", "inconclusive", "does not reproduce",
                      "not testable here", "no interval (one run)"]


def test_scorecard_figure_labels_are_short_and_leave_no_pyplot_figure_open():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figure = scorecard_figure(_figure_rows())
    assert plt.get_fignums() == before
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels[0] == "ch03 Table 1: A:\niou" and labels[4] == "ch06 Table 7: D:\nacc"
    assert all(len(line) <= 60 for label in labels for line in label.split("\n"))
    assert labels[3].split("\n")[0].endswith("…:")
    with pytest.raises(ValueError, match="no scorecard row has a difference to plot"):
        scorecard_figure([_figure_rows()[2]])


def test_every_verdict_category_has_its_own_symbol_before_the_words():
    from gainbook.scorecard import VERDICT_CATEGORIES, VERDICT_SYMBOLS, verdict_label

    assert set(VERDICT_SYMBOLS) == set(VERDICT_CATEGORIES)
    assert len(set(VERDICT_SYMBOLS.values())) == len(VERDICT_SYMBOLS)
    assert verdict_label("partly reproduces (the rest inconclusive)") == (
        "◐ partly reproduces (the rest inconclusive)")
    assert verdict_label("not testable here (failed: oracle 0.46)").startswith("⊘ not testable")
    with pytest.raises(ValueError):
        verdict_label("looks fine")
