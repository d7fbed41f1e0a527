"""Intervals and verdicts for the book's claims: a difference with its bootstrap interval,
and a verdict read off that interval alone.

"GAIN beat the classifier in 3 of 3 seeds" does not say by how much, nor whether another
3 seeds would agree. The chapters instead report the mean difference of paired values (the
same seed, data draw or test image under the two models) with a percentile bootstrap
interval (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13), and
:func:`verdict` turns the interval into "holds" / "does not hold" / "inconclusive".

Values from several data draws x several seeds are not independent: seeds trained on one
draw share its quirks. ``groups=`` resamples hierarchically -- first the groups (draws) with
replacement, then the members (seeds) within each chosen group -- so the interval carries
the between-draw variation too (Davison & Hinkley, *Bootstrap Methods and their
Application*, 1997, Sec. 3.8). The same holds for per-image values grouped by seed.

Caveat: with few values (fewer than about 10 seeds or groups) the percentile interval is
too narrow -- it covers the true difference less often than ``ci`` says. With 3 values it
can take only a handful of distinct resamples. Read such an interval as optimistic, and
say how many values it rests on (:attr:`Interval.n`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np

__all__ = ["CONFIDENCE", "coverage_text", "format_difference", "Interval", "bootstrap_mean", "paired_bootstrap", "verdict", "Verdict", "Direction",
           "compare_records", "MIN_RUNS", "MIN_DRAWS", "decided_verdict"]

Verdict = Literal["holds", "does not hold", "inconclusive"]
Direction = Literal["greater", "less", "equivalent"]

#: The coverage of every interval the book reports: the default ``ci`` of
#: :func:`bootstrap_mean` and :func:`paired_bootstrap`, hence of :func:`compare_records`. The
#: chapters' text quotes it through the ``{stats}`coverage``` role (book/_ext/paper_numbers.py),
#: never as a typed "95 %".
CONFIDENCE = 0.95

#: The fewest paired runs, and data draws, a verdict may rest on. Below them a comparison is
#: "inconclusive" whatever its interval: a percentile interval over 3 values is far too narrow
#: (see the module notes), and one draw cannot show the between-draw variation.
MIN_RUNS = 5
MIN_DRAWS = 2

# Replicates x values drawn at once in a grouped resample (memory: 8 bytes each).
_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class Interval:
    """A bootstrap estimate: the statistic on the data and its percentile interval.

    Attributes:
        estimate: the mean (of the differences, for :func:`paired_bootstrap`); with groups,
            the mean of the group means.
        low, high: the ``ci`` percentile interval.
        ci: its nominal coverage, e.g. 0.95.
        n: how many independent units were resampled (values, or groups with ``groups=``).
        n_boot: bootstrap replicates.
        grouped: whether the resample was hierarchical.
    """

    estimate: float
    low: float
    high: float
    ci: float
    n: int
    n_boot: int
    grouped: bool = False

    def __str__(self) -> str:
        unit = "groups" if self.grouped else "values"
        return (f"{self.estimate:+.4g} [{self.low:+.4g}, {self.high:+.4g}] "
                f"({self.ci:.0%} CI, {self.n} {unit})")


def _as_values(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{name} has non-finite values at positions {bad[:5].tolist()}; "
                         "drop those pairs (and say so) before bootstrapping")
    return values


def _flat_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    n = len(values)
    means = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(1)
    return means


def _grouped_means(values: np.ndarray, groups: np.ndarray, n_boot: int,
                   rng: np.random.Generator) -> tuple[float, np.ndarray, int]:
    """Mean of group means on the data, its hierarchical bootstrap replicates, #groups."""
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    ordered = values[order]
    sizes = np.bincount(inverse)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_groups, largest = len(sizes), int(sizes.max())
    estimate = float(np.mean(np.add.reduceat(ordered, offsets) / sizes))
    means = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // (n_groups * largest))
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        chosen = rng.integers(0, n_groups, size=(stop - start, n_groups))   # groups, with replacement
        size = sizes[chosen][..., None]
        # members within each chosen group, with replacement: floor(u * size) < size
        within = np.minimum((rng.random((stop - start, n_groups, largest)) * size).astype(np.int64),
                            size - 1)
        picked = ordered[offsets[chosen][..., None] + within]
        keep = np.arange(largest) < size         # a smaller group uses only its first `size` draws
        means[start:stop] = ((picked * keep).sum(-1) / size[..., 0]).mean(1)
    return estimate, means, n_groups


def bootstrap_mean(values: Sequence[float] | np.ndarray, *, groups: Sequence | np.ndarray | None = None,
                   n_boot: int = 10_000, seed: int = 0, ci: float = CONFIDENCE) -> Interval:
    """Percentile bootstrap interval of the mean of ``values``.

    Args:
        values: one number per unit (seed, image, ...).
        groups: optional label per value (e.g. the data draw of each seed); resamples the
            groups, then the values within each chosen group (module notes). The statistic is
            then the mean of the group means (the plain mean when groups are equally large).
        n_boot: bootstrap replicates.
        seed: seeds the resampling; the same seed gives the same interval.
        ci: coverage of the interval, in (0, 1).

    Raises:
        ValueError: fewer than 2 values (or 2 groups), non-finite values, or bad arguments.
    """
    x = _as_values(values, "values")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    if groups is None:
        if len(x) < 2:
            raise ValueError(f"need at least 2 values for an interval, got {len(x)}: one value "
                             "says nothing about how much the result varies")
        estimate, means, n = float(x.mean()), _flat_means(x, n_boot, rng), len(x)
    else:
        g = np.asarray(groups)
        if g.shape != x.shape:
            raise ValueError(f"groups must give one label per value ({len(x)}), got shape {g.shape}")
        if len(np.unique(g)) < 2:
            raise ValueError("need at least 2 groups for a grouped interval (the between-group "
                             "variation cannot be estimated from one); pass groups=None")
        estimate, means, n = _grouped_means(x, g, n_boot, rng)
    tail = (1.0 - ci) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high), ci, n, n_boot, groups is not None)


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                     groups: Sequence | np.ndarray | None = None, n_boot: int = 10_000,
                     seed: int = 0, ci: float = CONFIDENCE) -> Interval:
    """Mean of the paired differences ``a - b`` with its percentile bootstrap interval.

    ``a[i]`` and ``b[i]`` must be measured on the same unit (the same seed and data draw, or
    the same test image): pairing removes the variation the two share. ``groups`` (one label
    per pair, e.g. its data draw) resamples hierarchically, see :func:`bootstrap_mean`.

    >>> paired_bootstrap([0.91, 0.88, 0.93], [0.52, 0.49, 0.55]).low > 0
    True
    """
    x, y = _as_values(a, "a"), _as_values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (the same length), got {len(x)} and {len(y)}")
    return bootstrap_mean(x - y, groups=groups, n_boot=n_boot, seed=seed, ci=ci)


def verdict(interval: Interval | tuple[float, float], direction: Direction,
            margin: float = 0.0) -> Verdict:
    """Whether a claim about a difference holds, read off its interval alone.

    Claims (``d`` the difference, ``m = margin >= 0`` the smallest effect that counts):

    * ``"greater"``: ``d > m``. Holds if the whole interval lies above ``m``; does not hold
      if it lies at or below ``m``; inconclusive if it contains ``m``.
    * ``"less"``: ``d < -m``, the mirror image.
    * ``"equivalent"``: ``|d| < m`` (needs ``m > 0``). Holds if the interval lies inside
      ``(-m, m)``; does not hold if it lies wholly outside it; inconclusive otherwise.

    Never decided by how many seeds went which way: two equal models give "3 of 3 seeds
    better" one time in eight by chance alone.
    """
    low, high = (interval.low, interval.high) if isinstance(interval, Interval) else map(float, interval)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"the interval must be finite, got ({low}, {high})")
    if low > high:
        raise ValueError(f"the interval's low end {low} is above its high end {high}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (the size of the effect that counts), got {margin}")
    if direction == "greater":
        return "holds" if low > margin else "does not hold" if high <= margin else "inconclusive"
    if direction == "less":
        return "holds" if high < -margin else "does not hold" if low >= -margin else "inconclusive"
    if direction == "equivalent":
        if margin <= 0:
            raise ValueError("direction='equivalent' needs a margin > 0: the largest difference "
                             "that still counts as no difference")
        if -margin < low and high < margin:
            return "holds"
        return "does not hold" if high <= -margin or low >= margin else "inconclusive"
    raise ValueError(f"direction must be 'greater', 'less' or 'equivalent', got {direction!r}")


def compare_records(records: Sequence[Mapping[str, Any]], metric: str, method: Any,
                    baseline: Any, *, direction: Direction = "greater", margin: float = 0.0,
                    by: str = "method", pair: Sequence[str] = ("draw", "seed"),
                    group: str | None = "draw", n_boot: int = 10_000,
                    seed: int = 0) -> dict[str, Any]:
    """``method`` against ``baseline`` on ``metric``: the paired difference, its interval and
    the verdict on "``method`` - ``baseline`` is ``direction`` than ``margin``".

    Records are paired on the keys ``pair`` (the same data draw and seed) that they have
    (records without a ``"draw"`` are paired by seed); with ``group`` (a key of ``pair``),
    the bootstrap resamples groups first (:func:`bootstrap_mean`).

    Returns:
        ``{"metric", "method", "baseline", "direction", "difference", "low", "high", "pairs",
        "groups", "verdict"}`` — a row of a verdict table. With a single pair the interval is
        NaN and the verdict "inconclusive".
    """
    pair = tuple(k for k in pair if any(k in r for r in records)) or tuple(pair)
    group = group if group in pair else None

    def values(name: Any) -> dict[tuple, float]:
        found = {tuple(r[k] for k in pair): float(r[metric]) for r in records if r[by] == name}
        if not found:
            raise KeyError(f"no records with {by} = {name!r}")
        return found

    ours, theirs = values(method), values(baseline)
    if set(ours) != set(theirs):
        raise ValueError(f"{method!r} and {baseline!r} are not measured on the same "
                         f"{', '.join(pair)}: {sorted(set(ours) ^ set(theirs))[:5]}")
    keys = sorted(ours)
    groups = [k[list(pair).index(group)] for k in keys] if group is not None else None
    row = {"metric": metric, "method": str(method), "baseline": str(baseline),
           "direction": direction, "pairs": len(keys),
           "groups": len(set(groups)) if groups is not None else None}
    if len(keys) < 2:   # one run has no interval (a smoke-test profile): nothing is decided
        difference = float(np.mean([ours[k] - theirs[k] for k in keys]))
        return {**row, "difference": difference, "low": float("nan"), "high": float("nan"),
                "verdict": "inconclusive"}
    # One data draw has no between-draw variation to resample: the seeds alone (and
    # decided_verdict counts the draws).
    resampled = groups if groups is not None and len(set(groups)) > 1 else None
    interval = paired_bootstrap([ours[k] for k in keys], [theirs[k] for k in keys],
                                groups=resampled, n_boot=n_boot, seed=seed)
    return {**row, "difference": interval.estimate, "low": interval.low, "high": interval.high,
            "verdict": verdict(interval, direction, margin)}


def decided_verdict(row: Mapping[str, Any], *, min_runs: int = MIN_RUNS,
                    min_draws: int = MIN_DRAWS) -> str:
    """The verdict of a :func:`compare_records` row, "inconclusive (...)" when it rests on
    fewer than ``min_runs`` pairs or ``min_draws`` data draws (``groups`` ``None``: one draw).

    >>> decided_verdict({"verdict": "holds", "pairs": 3, "groups": None})
    'inconclusive (3 runs of 1 data draw; a verdict needs 5 runs of 2 draws)'
    >>> decided_verdict({"verdict": "holds", "pairs": 10, "groups": 2})
    'holds'
    """
    draws = row.get("groups") or 1
    if row["pairs"] < min_runs or draws < min_draws:
        runs = f"{row['pairs']} run{'s' * (row['pairs'] != 1)}"
        return (f"inconclusive ({runs} of {draws} data draw{'s' * (draws > 1)}; "
                f"a verdict needs {min_runs} runs of {min_draws} draws)")
    return str(row["verdict"])


def coverage_text(ci: float = CONFIDENCE) -> str:
    """An interval's coverage as the text quotes it.

    >>> coverage_text(), coverage_text(0.9)
    ('95 %', '90 %')
    """
    return f"{100 * ci:.0f} %"


def _signed(value: float) -> str:
    """``value`` to 0.1 with its sign; one that rounds to zero is ``"0.0"``, not ``"-0.0"``."""
    text = f"{value:+.1f}"
    return "0.0" if float(text) == 0 else text


def format_difference(row: Mapping[str, Any], scale: float = 100.0) -> str:
    """A :func:`compare_records` row's difference and interval in points, e.g.
    ``"+4.1 [+2.0, +6.3]"`` (``"+4.1 [no interval]"`` for a single pair). A number that
    rounds to zero prints ``"0.0"``, without a sign.

    >>> format_difference({"difference": 0.041, "low": 0.02, "high": 0.063})
    '+4.1 [+2.0, +6.3]'
    >>> format_difference({"difference": -0.0004, "low": -0.0204, "high": 0.0003})
    '0.0 [-2.0, 0.0]'
    """
    low, high = float(row["low"]), float(row["high"])
    interval = ("no interval" if not (np.isfinite(low) and np.isfinite(high))
                else f"{_signed(scale * low)}, {_signed(scale * high)}")
    return f"{_signed(scale * float(row['difference']))} [{interval}]"
