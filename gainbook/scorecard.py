"""The scorecard: each claim of the paper, the paper's number, ours with its interval, and a
verdict computed from the interval and from the claim's measured preconditions.

A chapter builds its rows with :func:`score` from :func:`gainbook.stats.compare_records`
rows and :class:`gainbook.preconditions.Precondition` checks, and glues
:func:`scorecard` of them; the results page shows every chapter's table, and under it
:func:`scorecard_figure`: every comparison's difference and interval against zero, read back
from the table's text (:func:`parse_ours`) and coloured by the claim's
:func:`verdict_category`.
"""

from __future__ import annotations

import functools
import math
import re

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from gainbook.stats import coverage_text, decided_verdict, format_difference

__all__ = ["Claim", "score", "not_run", "scorecard", "paired_metrics", "OURS_COLUMN",
           "parse_ours", "verdict_category", "verdict_label", "VERDICT_SYMBOLS",
           "VERDICT_CATEGORIES", "VERDICT_COLOURS", "scorecard_figure"]

#: The column of our numbers; its coverage is the intervals' own (gainbook.stats.CONFIDENCE).
OURS_COLUMN = f"ours: difference in points [{coverage_text()} interval]"


@dataclass(frozen=True)
class Claim:
    """A claim of the paper as the scorecard lists it.

    Attributes:
        source: where the paper makes it, e.g. ``"Table 7"``.
        claim: the claim in words, e.g. ``"GAIN_ext^p rejects water without a boat"``.
        paper: the paper's numbers behind it, e.g. ``"62 % vs 30 %"``.
        chapter: the book chapter that measures it.
    """

    source: str
    claim: str
    paper: str
    chapter: int


def _combined(verdicts: Sequence[str]) -> str:
    decided = [v for v in verdicts if not v.startswith("inconclusive")]
    held = sum(v == "holds" for v in decided)
    if held and held < len(decided):
        return "partly reproduces"
    if decided and len(decided) == len(verdicts):
        return "reproduces" if held else "does not reproduce"
    if held:
        return "partly reproduces (the rest inconclusive)"
    if decided:
        return "does not reproduce where decided (the rest inconclusive)"
    return verdicts[0] if verdicts else "not measured"


def _went_the_other_way(comparison: Mapping[str, Any]) -> bool:
    """Decided against its claim with the whole interval on the other side of zero: below it
    for a "greater" claim (:func:`~gainbook.stats.compare_records`' default), above it for a
    "less" one; an "equivalent" claim has no other way."""
    if decided_verdict(comparison) != "does not hold":
        return False
    direction = comparison.get("direction", "greater")
    if direction == "less":
        return comparison["low"] > 0
    return direction == "greater" and comparison["high"] < 0


def _naming_reversed(verdict: str, comparisons: Sequence[Mapping[str, Any]]) -> str:
    """``verdict`` naming the comparisons that went the other way (:func:`_went_the_other_way`);
    one that only fell short of its margin is not named."""
    reversed_ = [c["metric"] for c in comparisons if _went_the_other_way(c)]
    if not reversed_:
        return verdict
    named = f"reversed: {', '.join(reversed_)}"
    if verdict.endswith(")"):
        head, _, rest = verdict.partition(" (")
        return f"{head} ({named}; {rest}"
    return f"{verdict} ({named})"


#: A difference whose whole interval lies within this of zero is negligible, whatever its sign:
#: one point on the [0, 1] metrics the chapters compare (chapter 7's margin,
#: :data:`gainbook.choices.MARGIN`). A claim that reproduces only by such differences says so.
NEGLIGIBLE = 0.01


def score(claim: Claim, comparisons: Sequence[Mapping[str, Any]],
          preconditions: Sequence[Any] = ()) -> dict[str, Any]:
    """One scorecard row: ``claim`` judged on the :func:`~gainbook.stats.compare_records` rows
    ``comparisons`` (each read by :func:`~gainbook.stats.decided_verdict`).

    The verdict is "not testable here (...)" when a precondition failed (naming it),
    "reproduces" when every comparison holds, "does not reproduce" when none does, "partly
    reproduces" when some do, and "inconclusive (...)" when none is decided; a "partly" or "does
    not" names the comparisons that went the other way ("reversed: ..."). "Reproduces" on
    differences whose intervals all lie within :data:`NEGLIGIBLE` of zero adds "(direction
    only: every interval within a point of zero)": the sign is the paper's, the size is not.

    >>> row = {"metric": "iou", "difference": 0.05, "low": 0.02, "high": 0.08, "pairs": 10,
    ...        "groups": 2, "verdict": "holds"}
    >>> claim = Claim("Table 1", "GAIN's attention beats CAM's", "55.3 vs 50.7", 2)
    >>> score(claim, [row])["verdict"]
    'reproduces'
    >>> score(claim, [{**row, "difference": 0.002, "low": 0.001, "high": 0.004}])["verdict"]
    'reproduces (direction only: every interval within a point of zero)'
    """
    failed = [p.name for p in preconditions if not p.passed]
    ours = "; ".join(f"{c['metric']}: {format_difference(c)} ({c['pairs']} run{'s' * (c['pairs'] != 1)})"
                     for c in comparisons)
    if failed:
        verdict = f"not testable here (failed: {'; '.join(failed)})"
    else:
        verdict = _combined([decided_verdict(c) for c in comparisons])
        if verdict == "reproduces" and all(
                max(abs(c["low"]), abs(c["high"])) < NEGLIGIBLE for c in comparisons):
            verdict += " (direction only: every interval within a point of zero)"
        verdict = _naming_reversed(verdict, comparisons)
    return {"claim": f"{claim.source}: {claim.claim}", "paper": claim.paper,
            OURS_COLUMN: ours or "–", "verdict": verdict,
            "chapter": claim.chapter}


def not_run(claim: Claim, how: str) -> dict[str, Any]:
    """A scorecard row for a claim this profile does not measure, saying ``how`` to measure it
    (e.g. the chapter parameter that adds the runs), so the card still lists every claim.

    >>> not_run(Claim("Table 3", "more boxes help", "61.1 -> 62.6", 3), "box_counts")["verdict"]
    'not run on this profile (box_counts)'
    """
    return {"claim": f"{claim.source}: {claim.claim}", "paper": claim.paper,
            OURS_COLUMN: "–", "verdict": f"not run on this profile ({how})", "chapter": claim.chapter}


def scorecard(rows: Sequence[Mapping[str, Any]]) -> Any:
    """The rows of :func:`score` as a pandas DataFrame indexed by claim.

    Its HTML and text show every cell in full: a claim, an interval or a verdict cut to 50
    characters and "..." (pandas' default, in the HTML too) loses what it says. pandas'
    options stay as they are for every other table."""
    import pandas as pd

    return _full_text_frame()(pd.DataFrame(list(rows)).set_index("claim"))


@functools.cache
def _full_text_frame() -> type:
    import pandas as pd

    class FullTextFrame(pd.DataFrame):
        """A DataFrame shown without cutting its cells (``display.max_colwidth``)."""

        def _repr_html_(self) -> str | None:
            with pd.option_context("display.max_colwidth", None):
                return super()._repr_html_()

        def __repr__(self) -> str:
            with pd.option_context("display.max_colwidth", None):
                return super().__repr__()

    return FullTextFrame


def paired_metrics(records: Sequence[Mapping[str, Any]], metrics: Sequence[str], *,
                   keys: Sequence[str] = ("draw", "seed")) -> list[dict[str, Any]]:
    """Records of one model with several metrics, turned into one record per metric (its name
    under ``"method"``, its value under ``"value"``), so that two metrics of the same runs
    can be compared like two methods (e.g. part against body coverage). ``keys`` (those a
    record has) identify the run.

    >>> paired_metrics([{"seed": 0, "part": 0.9, "body": 0.5}], ["part", "body"])
    [{'seed': 0, 'method': 'part', 'value': 0.9}, {'seed': 0, 'method': 'body', 'value': 0.5}]
    """
    return [{**{k: r[k] for k in keys if k in r}, "method": m, "value": r[m]}
            for r in records for m in metrics]


# -- the scorecard at a glance ----------------------------------------------------------------

_NUMBER = r"[+-]?\d+(?:\.\d+)?"
#: One comparison as :func:`score` writes it: ``metric: +d [+lo, +hi] (n runs)``.
_COMPARISON = re.compile(
    rf"(?P<metric>[^;|]+?):\s*(?P<difference>{_NUMBER})\s*"
    rf"\[(?:(?P<low>{_NUMBER}),\s*(?P<high>{_NUMBER})|no interval)\]\s*\((?P<runs>\d+) runs?\)")


def parse_ours(text: str) -> list[dict[str, Any]]:
    """The comparisons of one "ours" cell (:data:`OURS_COLUMN`, as :func:`score` writes it):
    ``metric``, ``difference``, ``low`` and ``high`` in points (NaN for "no interval") and
    ``runs``. Text that is not a comparison is left out: "–", or the free text of a row that
    groups scenarios by verdict (``"reproduces: a; b | not testable here: c"``).

    >>> parse_ours("iou: +1.6 [+0.5, +2.8] (5 runs); body: 0.0 [-2.0, +1.3] (5 runs)")[1]
    {'metric': 'body', 'difference': 0.0, 'low': -2.0, 'high': 1.3, 'runs': 5}
    >>> parse_ours("acc: +20.0 [no interval] (1 run)")[0]["low"]
    nan
    >>> parse_ours("–"), parse_ours("reproduces: water (5 %) | not testable here: lamp")
    ([], [])
    """
    found = []
    for piece in re.split(r"[;|]", text):
        match = _COMPARISON.fullmatch(piece.strip())
        if match is None:
            continue
        low, high = (math.nan if match[k] is None else float(match[k]) for k in ("low", "high"))
        found.append({"metric": match["metric"].strip(), "difference": float(match["difference"]),
                      "low": low, "high": high, "runs": int(match["runs"])})
    return found


#: The verdicts' categories, in the order the figure's legend lists them.
VERDICT_CATEGORIES = ("reproduces", "partly reproduces", "inconclusive", "does not reproduce",
                      "not testable here", "not run")
#: A colour per category (Okabe and Ito's colour-blind safe palette, and grey).
VERDICT_COLOURS = {"reproduces": "#009E73", "partly reproduces": "#0072B2",
                   "inconclusive": "#999999", "does not reproduce": "#D55E00",
                   "not testable here": "#CC79A7", "not run": "#E69F00"}
#: A symbol per category, shown before the verdict on the results page (read with its words:
#: the symbol only lets the eye find the rows of a kind).
VERDICT_SYMBOLS = {"reproduces": "✓", "partly reproduces": "◐", "inconclusive": "?",
                   "does not reproduce": "✗", "not testable here": "⊘", "not run": "–"}
# Longest prefix first: "does not reproduce" and "partly reproduces" before "reproduces".
_CATEGORY_OF_PREFIX = (("not testable here", "not testable here"), ("not run", "not run"),
                       ("not measured", "not run"), ("does not reproduce", "does not reproduce"),
                       ("partly reproduces", "partly reproduces"), ("reproduces", "reproduces"),
                       ("inconclusive", "inconclusive"))


def verdict_category(verdict: str) -> str:
    """The category of one of :func:`score`'s (or :func:`not_run`'s) verdicts, one of
    :data:`VERDICT_CATEGORIES`: what it says before its parenthesis. "Does not reproduce
    where decided" is "does not reproduce"; "not measured" (a claim with no comparison) is
    "not run". Any other verdict is a ValueError, never a guess.

    >>> verdict_category("partly reproduces (the rest inconclusive)")
    'partly reproduces'
    >>> verdict_category("does not reproduce (reversed: iou)")
    'does not reproduce'
    """
    text = verdict.strip().lower()
    for prefix, category in _CATEGORY_OF_PREFIX:
        if text.startswith(prefix):
            return category
    raise ValueError(f"not a scorecard verdict: {verdict!r}")


def verdict_label(verdict: str) -> str:
    """``verdict`` after its category's symbol (:data:`VERDICT_SYMBOLS`), its words and their
    "why" (the parenthesis) kept.

    >>> verdict_label("does not reproduce (reversed: iou)")
    '✗ does not reproduce (reversed: iou)'
    """
    return f"{VERDICT_SYMBOLS[verdict_category(verdict)]} {verdict}"


def _ours_text(row: Mapping[str, Any]) -> str:
    """The "ours" cell of a :func:`score` row (:data:`OURS_COLUMN`) or of a row read back by
    :func:`gainbook.records.scorecard_rows` (``ours``)."""
    return str(row.get(OURS_COLUMN, row.get("ours", "–")))


def _shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis where it was cut."""
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def _label(row: Mapping[str, Any], metric: str, width: int) -> str:
    """``"chNN claim: metric"`` on two lines, each cut to ``width`` characters."""
    claim = f"ch{int(row['chapter']):02d} {row['claim']}"
    return f"{_shorten(claim, width - 1)}:\n{_shorten(metric, width)}"


def scorecard_figure(rows: Sequence[Mapping[str, Any]], *, label_width: int = 60) -> Any:
    """The scorecard at a glance: one line per comparison of every row's "ours" cell
    (:func:`parse_ours`), grouped by claim in the rows' order and labelled
    ``"chNN claim: metric"`` (each line cut to ``label_width`` characters): a point at the
    paired difference and a bar across its interval, in points, against a line at zero,
    coloured by the claim's :func:`verdict_category` (:data:`VERDICT_COLOURS`). A difference
    without an interval (one run) is an open point. Rows with no comparison (not run, or a
    row of free text) are left out; a ValueError when no row has one.

    A :class:`matplotlib.figure.Figure`, not drawn through pyplot: no global figure is left
    open, and any backend can save it.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    lines = [(number, row, comparison, verdict_category(row["verdict"]))
             for number, row in enumerate(rows) for comparison in parse_ours(_ours_text(row))]
    if not lines:
        raise ValueError("no scorecard row has a difference to plot")
    figure = Figure(figsize=(8.5, 1.1 + 0.36 * len(lines)), layout="constrained")
    ax = figure.subplots()
    ax.axvline(0, color="black", lw=0.8, zorder=1)
    claims = list(dict.fromkeys(number for number, _, _, _ in lines))
    for y, (number, _, _, _) in enumerate(lines):       # a band behind every other claim
        if claims.index(number) % 2:
            ax.axhspan(y - 0.5, y + 0.5, color="#f2f2f2", lw=0, zorder=0)
    for category in VERDICT_CATEGORIES:
        colour = VERDICT_COLOURS[category]
        mine = [(y, c) for y, (_, _, c, k) in enumerate(lines) if k == category]
        ranged = [(y, c) for y, c in mine if not math.isnan(c["low"])]
        if ranged:
            ax.hlines([y for y, _ in ranged], [c["low"] for _, c in ranged],
                      [c["high"] for _, c in ranged], color=colour, lw=2, zorder=2)
        single = [(y, c) for y, c in mine if math.isnan(c["low"])]
        for points, face, label in ((ranged, colour, category),
                                    (single, "white", f"{category}, no interval")):
            if points:
                ax.plot([c["difference"] for _, c in points], [y for y, _ in points], "o",
                        color=colour, markerfacecolor=face, ms=5, label=label, zorder=3)
    ax.set_yticks(range(len(lines)), [_label(row, c["metric"], label_width)
                                      for _, row, c, _ in lines], fontsize=7)
    ax.set_ylim(len(lines) - 0.5, -0.5)
    ax.set_xlabel("paired difference (points)")
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="y", length=0)
    shown = {category for _, _, _, category in lines}
    legend = [Line2D([], [], marker="o", color=VERDICT_COLOURS[k], label=k)
              for k in VERDICT_CATEGORIES if k in shown]
    if any(math.isnan(c["low"]) for _, _, c, _ in lines):
        legend.append(Line2D([], [], marker="o", ls="none", color="dimgrey",
                             markerfacecolor="white", label="no interval (one run)"))
    figure.legend(handles=legend, loc="outside upper center", ncols=min(len(legend), 5),
                  fontsize=8, frameon=False)
    return figure
