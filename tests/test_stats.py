"""gainbook.stats: bootstrap intervals (hand cases, scipy agreement, hierarchical resample)
and verdicts read off an interval."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from gainbook.stats import (CONFIDENCE, Interval, bootstrap_mean, compare_records, coverage_text,
                            format_difference, paired_bootstrap, verdict)


def test_constant_difference_has_a_zero_width_interval():
    a = np.array([0.9, 0.7, 0.8, 0.6])
    r = paired_bootstrap(a, a - 0.25, n_boot=500)
    assert (r.estimate, r.low, r.high) == pytest.approx((0.25, 0.25, 0.25))
    assert r.n == 4 and not r.grouped
    assert verdict(r, "greater") == "holds"
    assert verdict(r, "greater", margin=0.3) == "does not hold"


def test_two_values_hand_computed():
    # Resampling [0, 1] gives means 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4: the 2.5th and
    # 97.5th percentiles are 0 and 1, and the interval straddles nothing but its own ends.
    r = bootstrap_mean([0.0, 1.0], n_boot=20_000, seed=3)
    assert (r.estimate, r.low, r.high) == (0.5, 0.0, 1.0)
    # a 40 % interval lies inside the middle mass at 1/2
    r = bootstrap_mean([0.0, 1.0], n_boot=20_000, seed=3, ci=0.4)
    assert (r.low, r.high) == (0.5, 0.5)


def test_interval_straddles_zero_for_equal_models():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.05, 20), rng.normal(0.8, 0.05, 20)
    r = paired_bootstrap(a, b, seed=1)
    assert r.low < 0 < r.high
    assert verdict(r, "greater") == "inconclusive"
    assert verdict(r, "less") == "inconclusive"


def test_determinism_for_a_seed():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=15), rng.normal(size=15)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a, b, seed=7) != paired_bootstrap(a, b, seed=8)
    groups = np.repeat(np.arange(5), 3)
    assert paired_bootstrap(a, b, groups=groups, seed=7) == paired_bootstrap(a, b, groups=groups, seed=7)


def test_agrees_with_scipy_percentile_bootstrap():
    x = np.random.default_rng(2).normal(1.0, 2.0, 50)
    ours = bootstrap_mean(x, n_boot=40_000, seed=0)
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=40_000, method="percentile",
                                confidence_level=0.95, rng=np.random.default_rng(1))
    tolerance = 0.02 * x.std()   # Monte Carlo error of either end is ~0.003 std
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=tolerance)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=tolerance)
    assert ours.estimate == pytest.approx(x.mean())


def test_grouped_resample_carries_the_between_group_variation():
    # Two data draws, ten seeds each, the draws far apart and the seeds within a draw equal.
    values = np.r_[np.zeros(10), np.ones(10)]
    groups = np.repeat(["draw-a", "draw-b"], 10)
    flat = bootstrap_mean(values, n_boot=20_000)
    grouped = bootstrap_mean(values, groups=groups, n_boot=20_000)
    # Resampling the 2 draws: mean of group means 0, 1/2 or 1 -> interval [0, 1]; the flat
    # resample treats the 20 values as independent and is far narrower.
    assert (grouped.estimate, grouped.low, grouped.high) == (0.5, 0.0, 1.0)
    assert grouped.n == 2 and grouped.grouped
    assert flat.high - flat.low < 0.5
    # one value per group is the flat resample (same distribution, other random stream)
    x = np.random.default_rng(4).normal(size=30)
    one_each = bootstrap_mean(x, groups=np.arange(30), n_boot=40_000)
    plain = bootstrap_mean(x, n_boot=40_000)
    assert one_each.low == pytest.approx(plain.low, abs=0.03)
    assert one_each.high == pytest.approx(plain.high, abs=0.03)


def test_grouped_estimate_is_the_mean_of_group_means():
    values = [1.0, 1.0, 1.0, 4.0]          # group a: three 1s, group b: one 4
    r = bootstrap_mean(values, groups=["a", "a", "a", "b"], n_boot=2000)
    assert r.estimate == pytest.approx(2.5)
    assert (r.low, r.high) == pytest.approx((1.0, 4.0))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 values"):
        bootstrap_mean([1.0])
    with pytest.raises(ValueError, match="at least 2 groups"):
        bootstrap_mean([1.0, 2.0], groups=[0, 0])
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite values at positions \\[1\\]"):
        paired_bootstrap([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="one label per value"):
        bootstrap_mean([1.0, 2.0, 3.0], groups=[0, 1])
    with pytest.raises(ValueError, match="ci"):
        bootstrap_mean([1.0, 2.0], ci=95)


@pytest.mark.parametrize("interval, direction, margin, expected", [
    ((0.1, 0.3), "greater", 0.0, "holds"),
    ((-0.1, 0.3), "greater", 0.0, "inconclusive"),
    ((-0.3, -0.1), "greater", 0.0, "does not hold"),
    ((0.0, 0.0), "greater", 0.0, "does not hold"),      # exactly no difference is not "greater"
    ((0.1, 0.3), "greater", 0.2, "inconclusive"),
    ((0.1, 0.3), "greater", 0.3, "does not hold"),
    ((-0.3, -0.1), "less", 0.0, "holds"),
    ((-0.3, -0.1), "less", 0.2, "inconclusive"),
    ((0.1, 0.3), "less", 0.0, "does not hold"),
    ((-0.01, 0.02), "equivalent", 0.05, "holds"),
    ((-0.01, 0.08), "equivalent", 0.05, "inconclusive"),
    ((0.06, 0.08), "equivalent", 0.05, "does not hold"),
])
def test_verdict_table(interval, direction, margin, expected):
    assert verdict(interval, direction, margin) == expected
    as_interval = Interval(sum(interval) / 2, *interval, ci=0.95, n=5, n_boot=100)
    assert verdict(as_interval, direction, margin) == expected


def test_verdict_errors():
    with pytest.raises(ValueError, match="margin > 0"):
        verdict((0.0, 0.1), "equivalent")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        verdict((0.0, 0.1), "greater", margin=-0.1)
    with pytest.raises(ValueError, match="low end"):
        verdict((0.2, 0.1), "greater")
    with pytest.raises(ValueError, match="finite"):
        verdict((float("nan"), 0.1), "greater")
    with pytest.raises(ValueError, match="direction"):
        verdict((0.0, 0.1), "better")


def test_compare_records_pairs_by_draw_and_seed_and_reads_the_verdict():
    from gainbook.stats import compare_records

    records = [{"method": m, "draw": d, "seed": s, "acc": base + (0.2 if m == "new" else 0.0)}
               for m in ("old", "new") for d in (0, 1) for s, base in zip(range(5), (0.5, 0.6, 0.55, 0.52, 0.58))]
    row = compare_records(records, "acc", "new", "old")
    assert row["difference"] == pytest.approx(0.2) and row["verdict"] == "holds"
    assert row["pairs"] == 10 and row["groups"] == 2
    assert compare_records(records, "acc", "old", "new")["verdict"] == "does not hold"
    with pytest.raises(ValueError, match="same"):
        compare_records(records[:-1], "acc", "new", "old")
    with pytest.raises(KeyError, match="nothing"):
        compare_records(records, "acc", "nothing", "old")


def test_compare_records_without_draws_pairs_by_seed_alone():
    from gainbook.stats import compare_records

    records = [{"method": m, "seed": s, "acc": 0.5 + 0.01 * s + (0.1 if m == "new" else 0.0)}
               for m in ("old", "new") for s in range(5)]
    row = compare_records(records, "acc", "new", "old")
    assert row["pairs"] == 5 and row["groups"] is None
    assert row["difference"] == pytest.approx(0.1)
    # one draw named in the records: still paired, but no between-draw resampling
    drawn = [{**r, "draw": 0} for r in records]
    assert compare_records(drawn, "acc", "new", "old")["groups"] == 1


@pytest.mark.parametrize("row,expected", [
    ({"difference": -0.0004, "low": -0.0004, "high": 0.0004}, "0.0 [0.0, 0.0]"),
    ({"difference": 0.0004, "low": -0.02, "high": -0.0002}, "0.0 [-2.0, 0.0]"),
    ({"difference": -0.0006, "low": -0.0006, "high": 0.0006}, "-0.1 [-0.1, +0.1]"),
    ({"difference": -0.0, "low": float("nan"), "high": float("nan")}, "0.0 [no interval]"),
])
def test_format_difference_prints_no_signed_zero(row, expected):
    assert format_difference(row) == expected


def test_the_quoted_coverage_is_the_intervals_coverage():
    # The text's "{stats}`coverage`" renders coverage_text(); it must be what the intervals use.
    interval = paired_bootstrap([0.9, 0.8, 0.7], [0.5, 0.6, 0.4], n_boot=100)
    assert interval.ci == CONFIDENCE and coverage_text() == f"{100 * interval.ci:.0f} %"
    row = compare_records([{"method": m, "seed": s, "x": v} for m, vs in (("a", (1, 2, 4)), ("b", (0, 0, 1)))
                           for s, v in enumerate(vs)], "x", "a", "b", pair=("seed",), group=None,
                          n_boot=2000)
    inner = paired_bootstrap([1, 2, 4], [0, 0, 1], n_boot=2000, ci=CONFIDENCE)
    assert (row["low"], row["high"]) == (inner.low, inner.high)
