"""The scorecard: each claim of the paper, the paper's number, ours with its interval, and a
verdict computed from the interval and from the claim's measured preconditions.

A chapter builds its rows with :func:`score` from :func:`gainbook.stats.compare_records`
rows and :class:`gainbook.preconditions.Precondition` checks, and glues
:func:`scorecard` of them; the results page shows every chapter's table.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from gainbook.stats import coverage_text, decided_verdict, format_difference

__all__ = ["Claim", "score", "not_run", "scorecard", "paired_metrics", "OURS_COLUMN"]

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
