"""The numbers and phrases a chapter's text quotes, computed from its records and pasted into
the text with MyST-NB's ``glue`` (``{glue:text}`key```), so that the text cannot drift from the
tables (``tests/test_prose_numbers.py``).

Records are the chapters' dicts (``{"method", "draw", "seed", <metric>: value, ...}``). A comparison
that was not run (another profile, a parameter that skips it) reads :data:`NOT_MEASURED`
rather than failing, so a key the text refers to always exists.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from gainbook.stats import compare_records, format_difference

__all__ = ["NOT_MEASURED", "subset", "mean_of", "paired", "pct", "points", "sign", "word",
           "trend", "span", "runs_text", "side", "PlainText", "glue_texts"]

NOT_MEASURED = "not measured here"


def subset(records: Sequence[Mapping[str, Any]], metric: str,
           **where: Any) -> list[Mapping[str, Any]]:
    """The records that have ``metric`` and match every ``key=value`` of ``where``."""
    return [r for r in records if metric in r and all(r.get(k) == v for k, v in where.items())]


def mean_of(records: Sequence[Mapping[str, Any]], metric: str, method: Any,
            **where: Any) -> float | None:
    """The mean of ``metric`` over ``method``'s records (``None`` when there are none).

    >>> mean_of([{"method": "a", "x": 0.2}, {"method": "a", "x": 0.4}], "x", "a")
    0.30000000000000004
    """
    values = [r[metric] for r in subset(records, metric, method=method, **where)]
    return sum(values) / len(values) if values else None


def paired(records: Sequence[Mapping[str, Any]], metric: str, method: Any, baseline: Any,
           **where: Any) -> dict[str, Any] | None:
    """``method - baseline`` on ``metric``, paired by seed and training-set draw
    (:func:`gainbook.stats.compare_records`); ``None`` where either was not run."""
    rows = subset(records, metric, **where)
    if not (subset(rows, metric, method=method) and subset(rows, metric, method=baseline)):
        return None
    return compare_records(rows, metric, method, baseline)


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: ``pct(0.1234) == "12.3 %"``."""
    return NOT_MEASURED if value is None else f"{100 * value:.{digits}f} %"


def points(row: Mapping[str, Any] | None) -> str:
    """A comparison row as ``"+6.6 points [+4.8, +7.9]"``.

    >>> points({"difference": 0.066, "low": 0.048, "high": 0.079})
    '+6.6 points [+4.8, +7.9]'
    """
    if row is None:
        return NOT_MEASURED
    difference, interval = format_difference(row).split(" ", 1)
    return f"{difference} points {interval}"


def sign(row: Mapping[str, Any] | None) -> int | None:
    """The sign of a comparison's difference *as printed* (to 0.1 point), so that a word
    chosen from it matches the number beside it; ``None`` when not run."""
    if row is None:
        return None
    shown = round(100 * row["difference"], 1)
    return (shown > 0) - (shown < 0)


def word(row: Mapping[str, Any] | None, up: str = "rises", down: str = "falls",
         same: str = "stays") -> str:
    """``up``, ``down`` or ``same`` by :func:`sign`.

    >>> word({"difference": -0.02}), word({"difference": 0.0004})
    ('falls', 'stays')
    """
    return {None: NOT_MEASURED, 1: up, -1: down, 0: same}[sign(row)]


def trend(row: Mapping[str, Any], up: str, down: str,
          flat: str = "shows no clear change") -> str:
    """``up`` or ``down`` when a comparison's whole interval lies above or below zero, else
    ``flat`` (also for a single run, whose interval is NaN).

    >>> trend({"low": 0.01, "high": 0.04}, "rises", "falls")
    'rises'
    """
    return up if row["low"] > 0 else down if row["high"] < 0 else flat


def span(values: Sequence[float], unit: str = " %", scale: float = 100.0) -> str:
    """The range of ``values``: ``"12.1–13.8 %"`` (one number when both ends print alike)."""
    low, high = scale * min(values), scale * max(values)
    if f"{low:.1f}" == f"{high:.1f}":
        return f"{low:.1f}{unit}"
    return f"{low:.1f}–{high:.1f}{unit}"


def runs_text(seeds: Sequence[int], draw_of: Callable[[int], int] | None = None,
              what: str = "training-set draws") -> str:
    """The runs behind a chapter's numbers, for its text (``what``: the draws' name).

    >>> runs_text([0, 1, 2, 3, 4], lambda seed: seed % 2)
    '5 runs: seeds 0, 1, 2, 3, 4 on training-set draws 0, 1, 0, 1, 0'
    >>> runs_text([0])
    '1 run: seed 0'
    """
    listed = ", ".join(map(str, seeds))
    text = f"{len(seeds)} run{'s' * (len(seeds) != 1)}: seed{'s' * (len(seeds) != 1)} {listed}"
    drawn = [draw_of(seed) for seed in seeds] if draw_of else []
    if len(set(drawn)) > 1:
        text += f" on {what} {', '.join(map(str, drawn))}"
    return text


def side(row: Mapping[str, Any]) -> str:
    """Where a comparison's interval lies with respect to no difference.

    >>> side({"low": 0.01, "high": 0.05}), side({"low": float("nan"), "high": float("nan")})
    ('lies above zero', 'has no interval (a single run)')
    """
    if not row["low"] <= row["high"]:   # NaN: a single run has no interval
        return "has no interval (a single run)"
    if row["low"] > 0:
        return "lies above zero"
    return "lies below zero" if row["high"] < 0 else "contains zero"


class PlainText(str):
    """A string whose ``repr`` is itself: glued, its ``text/plain`` output has no quotes, so
    the ``{glue}`` role pastes it bare on another page (``{glue}`nb.ipynb::key```; the
    ``{glue:text}`` role strips quotes only on its own page).

    >>> repr(PlainText("holds"))
    'holds'
    """

    def __repr__(self) -> str:
        return str(self)


def glue_texts(texts: Mapping[str, str]) -> None:
    """``glue(key, text, display=False)`` for every item (as :class:`PlainText`): the keys a
    chapter's text quotes."""
    from myst_nb import glue

    for key, text in texts.items():
        glue(key, PlainText(text), display=False)
