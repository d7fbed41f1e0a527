"""Reading the bias family's record (:mod:`gainbook.bias_family`): its preconditions, paired
comparisons, the test of a mechanism across scenarios, and the figure.

Nothing here trains or scores a model: the functions read the per-run records and compute
every interval from them (:func:`gainbook.stats.compare_records`), so a change to how the
family is shown never invalidates what was measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gainbook.bias_family import FILLS, PROTOCOLS
from gainbook.formatting import significant

__all__ = ["HALVES", "DECISION", "COMPARED", "MEMBER_METRICS", "SLICE_METRICS", "family_records",
           "family_checks", "decidable_members", "family_comparisons", "family_verdicts",
           "family_score", "family_table", "mechanism_test", "family_figure", "member_table",
           "members_table", "slice_agreement", "RECORD", "fill_comparisons",
           "fill_recommendation", "what_moves", "family_summary", "effect_contrast"]

#: The two counterfactual halves of Table 7, as the records name them: accuracies of the boat
#: decision at probability one half, as the paper counts them.
HALVES = ("boat without water", "water without boat")
#: The decision without the threshold of one half, which a model can cross by becoming less
#: sure of every boat: the AUC of boats without water against water without boats, and both
#: halves at the threshold that balances the errors on ``val`` (calibrated where the model
#: trained, never on the test). The family's verdicts are read off these.
DECISION = ("AUC", "boat w/o water, val threshold", "water w/o boat, val threshold")
#: Every comparison the family's table shows.
COMPARED = (*DECISION, *HALVES, "attention IoU", "val")
#: A member's own table: the comparisons and the hole detector's rise.
MEMBER_METRICS = (*COMPARED, "hole rise")
#: What a slice of the family is checked against the record on.
SLICE_METRICS = (*HALVES, "AUC", "attention IoU")


def _fill(fill: str | None) -> str:
    """``fill``, or gainlib's default fill (:class:`gainlib.gain.GainConfig`) for ``None``."""
    from gainlib.gain import GainConfig

    return GainConfig().fill if fill is None else fill


def family_records(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run of every member of a record, in the record's order."""
    return [r for member in record["members"].values() for r in member["records"]]


def family_checks(record: Mapping[str, Any]) -> Any:
    """The preconditions of every member as a table: one row per (member, check) with value,
    threshold and whether it passed."""
    import pandas as pd

    rows = []
    for name, member in record["members"].items():
        for check in member["checks"]:
            rows.append({"scenario": name, "check": check["precondition"],
                         "value": significant(check["value"]), "threshold": check["threshold"],
                         "passed": "✓" if check["passed"] else "✗"})
    return pd.DataFrame(rows).set_index(["scenario", "check"])


def decidable_members(record: Mapping[str, Any]) -> dict[str, bool]:
    """Whether each member's comparison can fail: its oracle separates the halves and its
    classifier took the bias (the first two checks of
    :func:`gainbook.bias_family.scenario_checks`)."""
    return {name: all(c["passed"] for c in member["checks"]
                      if c["precondition"].startswith(("oracle", "bias taken")))
            for name, member in record["members"].items()}


def family_comparisons(records: Sequence[Mapping[str, Any]],
                       metrics: Sequence[str] = COMPARED) -> list[dict[str, Any]]:
    """GAIN and GAIN_ext^p against the classifier trained as long (from scratch: the
    classifier; fine-tuned: the classifier continued), and GAIN_ext^p against GAIN, for every
    scenario, protocol, fill and metric: rows of :func:`gainbook.stats.compare_records` with
    ``scenario``, ``protocol`` and ``fill``, and the verdict of
    :func:`gainbook.stats.decided_verdict`."""
    from gainbook.stats import compare_records, decided_verdict

    rows = []
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        ours = [r for r in records if r["scenario"] == scenario and r["method"] != "oracle"]
        for protocol in PROTOCOLS:
            mine = [r for r in ours if r["protocol"] == protocol]
            if not any(r["method"] == "classifier" for r in mine):
                continue
            fills = [f for f in FILLS if any(r["fill"] == f for r in mine)]
            for fill in fills:
                keyed = [r for r in mine if r["fill"] in ("", fill)]
                for method, against in (("GAIN", "classifier"), ("GAIN_ext^p", "classifier"),
                                        ("GAIN_ext^p", "GAIN")):
                    for metric in metrics:
                        row = compare_records(keyed, metric, method, against)
                        rows.append({"scenario": scenario, "protocol": protocol, "fill": fill,
                                     **row, "verdict": decided_verdict(row)})
    return rows


def family_table(rows: Sequence[Mapping[str, Any]], method: str = "GAIN_ext^p",
                 baseline: str = "classifier", metrics: Sequence[str] = COMPARED,
                 testable: Mapping[str, bool] | None = None) -> Any:
    """One line per (scenario, protocol, fill): ``method - baseline`` on each metric in points
    with its interval (:func:`gainbook.stats.format_difference`); scenarios whose
    preconditions fail (``testable``) read "not testable here"."""
    import pandas as pd

    from gainbook.stats import format_difference

    table: dict[tuple, dict[str, str]] = {}
    for row in rows:
        if row["method"] != method or row["baseline"] != baseline or row["metric"] not in metrics:
            continue
        key = (row["scenario"], row["protocol"], row["fill"])
        cell = format_difference(row)
        if (row["metric"] in (*DECISION, *HALVES) and testable is not None
                and not testable.get(row["scenario"], True)):
            cell = f"{cell}, not testable here"
        table.setdefault(key, {})[f"{row['metric']} (points)"] = cell
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["scenario", "protocol", "fill"])
    return frame[[f"{m} (points)" for m in metrics if f"{m} (points)" in frame.columns]]


def member_table(records: Sequence[Mapping[str, Any]],
                 metrics: Sequence[str] = MEMBER_METRICS) -> Any:
    """Mean ± std over runs of every method of every scenario, in percent."""
    import pandas as pd

    frame = pd.DataFrame(records)
    frame["fill"] = frame["fill"].replace("", "–")
    grouped = frame.groupby(["scenario", "protocol", "method", "fill"], sort=False)[list(metrics)]
    mean, std = grouped.mean() * 100, grouped.std().fillna(0) * 100
    out = mean.copy().astype(object)
    for column in metrics:
        out[column] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(mean[column], std[column])]
    out.columns = [f"{c} (%)" for c in metrics]
    return out


def mechanism_test(records: Sequence[Mapping[str, Any]], *,
                   methods: Sequence[str] = ("GAIN", "GAIN_ext^p"),
                   outcome: str = "water w/o boat, val threshold", n_perm: int = 10_000,
                   seed: int = 0) -> dict[str, Any]:
    """Does the hole detector predict the "water without boat" half? Over every (scenario,
    method, protocol, fill) cell of the attention-mining ``methods``: the Spearman correlation
    between the models' mean
    hole rise (:func:`gainbook.bias_family.hole_scores`: how far erasing a region lowers a
    boat-free image's boat probability, so negative for a hole detector) and their mean gain on
    ``outcome`` (water without boats) over the classifier trained as long; and the one-sided
    permutation p-value of "the more a model reads holes, the less it gains" (a positive
    correlation).

    >>> rows = [{"scenario": s, "protocol": "scratch", "method": m, "fill": f, "seed": 0,
    ...          "draw": 0, "hole rise": h, "water w/o boat, val threshold": w}
    ...         for s, (h, w) in enumerate([(-0.4, 0.1), (-0.1, 0.5), (0.0, 0.8), (-0.3, 0.2)])
    ...         for m, f, h, w in (("classifier", "", 0.0, 0.0), ("GAIN_ext^p", "mean", h, w))]
    >>> result = mechanism_test(rows, n_perm=2000)
    >>> result["cells"], round(result["spearman"], 2)
    (4, 1.0)
    """
    from scipy.stats import spearmanr

    baseline = {(r["scenario"], r["protocol"], r["seed"], r["draw"]): r[outcome]
                for r in records if r["method"] == "classifier"}
    cells: dict[tuple, dict[str, list[float]]] = {}
    for r in records:
        if r["method"] not in methods:
            continue
        cell = cells.setdefault((r["scenario"], r["method"], r["protocol"], r["fill"]),
                                {"rise": [], "gain": []})
        cell["rise"].append(r["hole rise"])
        cell["gain"].append(r[outcome]
                            - baseline[(r["scenario"], r["protocol"], r["seed"], r["draw"])])
    rise = np.array([np.mean(c["rise"]) for c in cells.values()])
    gain = np.array([np.mean(c["gain"]) for c in cells.values()])
    if len(cells) < 3 or np.ptp(rise) == 0 or np.ptp(gain) == 0:   # no ranks to correlate
        return {"cells": len(cells), "spearman": float("nan"), "p": float("nan"),
                "rise": rise.tolist(), "gain": gain.tolist(), "keys": list(cells)}
    rho = float(spearmanr(rise, gain).statistic)
    rng = np.random.default_rng(seed)
    null = np.array([spearmanr(rise, rng.permutation(gain)).statistic for _ in range(n_perm)])
    p = float((np.sum(null >= rho) + 1) / (n_perm + 1))
    return {"cells": len(cells), "spearman": rho, "p": p, "rise": rise.tolist(),
            "gain": gain.tolist(), "keys": list(cells)}


_VERDICT_COLOURS = {"holds": "tab:green", "does not hold": "tab:red", "inconclusive": "tab:grey"}


def family_figure(rows: Sequence[Mapping[str, Any]], method: str = "GAIN_ext^p",
                  baseline: str = "classifier", testable: Mapping[str, bool] | None = None) -> Any:
    """Where guiding the map changes the decision: for each scenario (rows), protocol and
    fill, ``method - baseline`` on the attention and on the decision (:data:`DECISION`), in points
    with its interval, coloured by its verdict (green: above zero, red: not above, grey:
    inconclusive); scenarios whose preconditions fail are marked "not testable"."""
    from matplotlib.figure import Figure

    panels = ("attention IoU", *DECISION)
    chosen = [r for r in rows if r["method"] == method and r["baseline"] == baseline
              and r["metric"] in panels]
    scenarios = list(dict.fromkeys(r["scenario"] for r in chosen))
    variants = [(p, f) for p in PROTOCOLS for f in FILLS
                if any(r["protocol"] == p and r["fill"] == f for r in chosen)]
    # A Figure without pyplot: the notebook shows the returned figure once, not twice.
    figure = Figure(figsize=(3.2 * len(panels), 0.5 + 0.9 * len(scenarios)))
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)
    step = 0.8 / max(len(variants), 1)
    for ax, panel in zip(axes[0], panels):
        ax.axvline(0, color="black", lw=0.8)
        for r in chosen:
            if r["metric"] != panel:
                continue
            y = scenarios.index(r["scenario"]) - 0.4 + step * (variants.index((r["protocol"], r["fill"])) + 0.5)
            colour = _VERDICT_COLOURS.get(r["verdict"].split(" (")[0], "tab:grey")
            marker = "o" if r["protocol"] == "scratch" else "s"
            ax.errorbar(100 * r["difference"], y, xerr=[[100 * (r["difference"] - r["low"])],
                                                        [100 * (r["high"] - r["difference"])]],
                        fmt=marker, color=colour, ms=4, lw=1)
        title = panel.replace(", val threshold", ",\nval threshold")
        ax.set_title(f"{title}\n{method} − {baseline} (points)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    labels = [f"{s}{'' if testable is None or testable.get(s, True) else ' (not testable)'}"
              for s in scenarios]
    axes[0][0].set_yticks(range(len(scenarios)), labels)
    axes[0][0].invert_yaxis()
    order = ", ".join(f"{p} {f}" for p, f in variants)
    figure.text(0.5, -0.02, f"within a scenario, top to bottom: {order}; "
                "circles from scratch, squares fine-tuned", ha="center", fontsize=8)
    figure.tight_layout()
    return figure


def family_verdicts(rows: Sequence[Mapping[str, Any]], testable: Mapping[str, bool], *,
                    protocol: str = "scratch", fill: str | None = None,
                    method: str = "GAIN_ext^p", baseline: str = "classifier") -> dict[str, str]:
    """Each scenario's verdict on "``method`` beats ``baseline`` on both counterfactual
    halves", read off the decision without the threshold of one half (:data:`DECISION`), for
    one protocol and fill (``None``: gainlib's default; :func:`gainbook.scorecard.score`'s
    categories: a scenario whose preconditions fail is "not testable here")."""
    from gainbook.scorecard import Claim, score
    fill = _fill(fill)

    claim = Claim("Table 7", f"{method} beats the {baseline} on both halves", "", 5)
    verdicts = {}
    for scenario, can_fail in testable.items():
        mine = [r for r in rows if r["scenario"] == scenario and r["protocol"] == protocol
                and r["fill"] == fill and r["method"] == method and r["baseline"] == baseline
                and r["metric"] in DECISION]
        if not mine:
            continue
        verdicts[scenario] = ("not testable here" if not can_fail
                              else score(claim, mine)["verdict"].split(" (")[0])
    return verdicts


def family_score(rows: Sequence[Mapping[str, Any]], testable: Mapping[str, bool],
                 paper: str, *, protocol: str = "scratch", fill: str | None = None,
                 conditions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The scorecard's row for Table 7 across the family: the verdict of every scenario
    (:func:`family_verdicts`), grouped: where the claim reproduces, where it does not, where it
    is not testable; ``conditions`` names what each scenario changes."""
    from gainbook.scorecard import OURS_COLUMN
    fill = _fill(fill)
    verdicts = family_verdicts(rows, testable, protocol=protocol, fill=fill)
    conditions = conditions or {}

    def named(which: str) -> str:
        found = [f"{s} ({conditions[s]})" if s in conditions else s
                 for s, v in verdicts.items() if v == which]
        return "; ".join(found) or "–"

    groups = {v: named(v) for v in dict.fromkeys(verdicts.values())}
    held = [s for s, v in verdicts.items() if v == "reproduces"]
    decided = [s for s, v in verdicts.items() if v != "not testable here"]
    partly = [s for s in decided if verdicts[s].startswith("partly")]
    overall = ("reproduces" if decided and len(held) == len(decided) else
               "does not reproduce" if decided and not (held or partly) else
               "partly reproduces" if decided else "not testable here")
    return {"claim": f"Table 7 across the bias family: GAIN_ext^p beats the classifier on both "
                     f"halves ({protocol}, fill {fill})",
            "paper": paper,
            OURS_COLUMN: " | ".join(f"{v}: {g}" for v, g in groups.items()),
            "verdict": f"{overall} ({len(held)} of {len(decided)} testable scenarios)",
            "chapter": 5}


#: Where the family's record is kept (``python -m gainbook.bias_family --out`` writes it).
RECORD = Path(__file__).resolve().parents[1] / "book" / "family" / "bias_family.json"


def members_table(members: Sequence[Any]) -> Any:
    """What each member of the family (:data:`gainbook.bias_family.FAMILY`) is: the property
    it changes and its generator's settings."""
    import pandas as pd

    rows = [{"scenario": m.name, "changes": m.varies,
             "labels": "4 classes" if m.scenario.multi_label else "boat only",
             "P(water | boat)": m.scenario.context_given_object,
             "P(water | no boat)": m.scenario.context_given_no_object,
             "boat size (share of side)": m.scenario.object_scale,
             "contrast": m.scenario.contrast, "image (px)": m.image_size,
             "masks (share of training images)": m.scenario.mask_share} for m in members]
    return pd.DataFrame(rows).set_index("scenario")


def slice_agreement(slice_records: Sequence[Mapping[str, Any]],
                    record: Mapping[str, Any], settings: Mapping[str, Any],
                    metrics: Sequence[str] = SLICE_METRICS) -> float | None:
    """The largest absolute difference, over the runs this build trained with ``settings``
    (:func:`gainbook.bias_family.member_profile`'s overrides) and the record holds too (the
    same scenario, method, protocol, fill, seed and draw), of any of ``metrics``; ``None``
    when the build's settings are not the record's, or they share no run."""
    def plain(found: Mapping[str, Any]) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in found.items()}

    if plain(settings) != plain(record.get("settings", {})):
        return None
    key = ("scenario", "method", "protocol", "fill", "seed", "draw")
    stored = {tuple(r[k] for k in key): r for r in family_records(record)}
    gaps = [abs(float(r[m]) - float(stored[k][m])) for r in slice_records
            if (k := tuple(r[k] for k in key)) in stored for m in metrics]
    return max(gaps) if gaps else None


def fill_comparisons(records: Sequence[Mapping[str, Any]], *, against: str = "mean",
                     methods: Sequence[str] = ("GAIN", "GAIN_ext^p"),
                     metrics: Sequence[str] = DECISION) -> list[dict[str, Any]]:
    """Each fill against ``against`` (gainlib's default), for every scenario, method and
    protocol, on the decision (:data:`DECISION`): rows of
    :func:`gainbook.stats.compare_records` (paired by seed and draw) with ``scenario``,
    ``method``, ``protocol`` and ``fill``."""
    from gainbook.stats import compare_records, decided_verdict

    rows = []
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        for method in methods:
            for protocol in PROTOCOLS:
                mine = [{**r, "level": r["fill"]} for r in records
                        if r["scenario"] == scenario and r["method"] == method
                        and r["protocol"] == protocol]
                if not any(r["fill"] == against for r in mine):
                    continue
                for fill in [f for f in FILLS if f != against and any(r["fill"] == f for r in mine)]:
                    for metric in metrics:
                        row = compare_records(mine, metric, fill, against, by="level")
                        rows.append({**row, "scenario": scenario, "method": method,
                                     "protocol": protocol, "fill": fill,
                                     "verdict": decided_verdict(row)})
    return rows


def fill_recommendation(rows: Sequence[Mapping[str, Any]], decidable: Mapping[str, bool],
                        against: str = "mean") -> Any:
    """Per fill: in how many (testable scenario, method, protocol) cells it decides better than
    ``against`` on some measure of the decision, in how many it decides worse (an interval
    wholly below zero), and the recommendation: the fill, where it is better somewhere and worse
    nowhere; otherwise ``against`` stays."""
    import pandas as pd

    out = []
    for fill in dict.fromkeys(r["fill"] for r in rows):
        cells: dict[tuple, list[Mapping[str, Any]]] = {}
        for r in rows:
            if r["fill"] == fill and decidable.get(r["scenario"], False):
                cells.setdefault((r["scenario"], r["method"], r["protocol"]), []).append(r)
        better = sum(any(r["verdict"] == "holds" for r in c) for c in cells.values())
        worse = sum(any(r["verdict"] == "does not hold" and r["high"] < 0 for r in c)
                    for c in cells.values())
        out.append({"fill": fill, "cells": len(cells), "better on the decision": better,
                    "worse on the decision": worse,
                    "recommendation": fill if better and not worse else f"{against} stays"})
    return pd.DataFrame(out).set_index("fill")


def what_moves(rows: Sequence[Mapping[str, Any]], decidable: Mapping[str, bool], *,
               method: str = "GAIN_ext^p", baseline: str = "classifier",
               decision: str = "AUC", protocol: str | None = None,
               fill: str | None = None) -> dict[str, str]:
    """For every scenario: does guiding the map change the decision, or only the map?
    ``"map and decision"`` where ``method`` beats ``baseline`` on the attention's IoU and on
    ``decision`` (the threshold-free AUC: one measure, so that six cells of three measures do
    not offer eighteen chances of a lucky interval) in the same start and fill,
    ``"decision only"``, ``"map only"``, ``"neither"``, or ``"not testable here"``
    (preconditions); ``protocol`` and ``fill`` restrict the cells (``None``: any)."""
    out = {}
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        if not decidable.get(scenario, False):
            out[scenario] = "not testable here"
            continue
        cells: dict[tuple, dict[str, bool]] = {}
        for r in rows:
            if (r["scenario"] != scenario or r["method"] != method or r["baseline"] != baseline
                    or (protocol is not None and r["protocol"] != protocol)
                    or (fill is not None and r["fill"] != fill)):
                continue
            cell = cells.setdefault((r["protocol"], r["fill"]), {"map": False, "decision": False})
            if r["verdict"] == "holds":
                if r["metric"] == "attention IoU":
                    cell["map"] = True
                elif r["metric"] == decision:
                    cell["decision"] = True
        both = any(c["map"] and c["decision"] for c in cells.values())
        decided = any(c["decision"] for c in cells.values())
        moved = any(c["map"] for c in cells.values())
        out[scenario] = ("map and decision" if both else "decision only" if decided
                         else "map only" if moved else "neither")
    return out


def family_summary(record: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                   members: Sequence[Any]) -> Any:
    """One line per scenario: what it changes, which precondition fails (if one does), what
    guiding the map moved (:func:`what_moves`), and the verdict of Table 7's GAIN_ext^p claim
    from scratch with gainlib's default fill (:func:`family_verdicts`)."""
    import pandas as pd

    decidable = decidable_members(record)
    moves = what_moves(rows, decidable)
    verdicts = family_verdicts(rows, decidable)
    changes = {m.name: m.varies for m in members}
    out = []
    for name, member in record["members"].items():
        failed = [f"{c['precondition'].split(':')[0]} {c['value']:.2f}" for c in member["checks"]
                  if not c["passed"] and c["precondition"].startswith(("oracle", "bias taken"))]
        out.append({"scenario": name, "changes": changes.get(name, "–"),
                    "failed precondition": ", ".join(failed) or "–",
                    "guiding the map moved": moves.get(name, "–"),
                    "Table 7 (from scratch, gainlib's fill)": verdicts.get(name, "–")})
    return pd.DataFrame(out).set_index("scenario")


def effect_contrast(records: Sequence[Mapping[str, Any]], scenario: str, reference: str, *,
                    metric: str = "AUC", method: str = "GAIN_ext^p", protocol: str = "scratch",
                    fill: str | None = None, n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """How much larger ``method``'s gain over the classifier trained as long is in
    ``scenario`` than in ``reference`` (two members that differ in one property): the
    difference of the mean paired gains, with a percentile bootstrap interval that resamples
    each scenario's runs (independent runs, so unpaired across the two); ``fill`` ``None`` is
    gainlib's default."""
    fill = _fill(fill)

    def gains(name: str) -> np.ndarray:
        base = {(r["seed"], r["draw"]): r[metric] for r in records
                if r["scenario"] == name and r["method"] == "classifier" and r["protocol"] == protocol}
        return np.array([r[metric] - base[(r["seed"], r["draw"])] for r in records
                         if r["scenario"] == name and r["method"] == method
                         and r["protocol"] == protocol and r["fill"] == fill])

    a, b = gains(scenario), gains(reference)
    if not len(a) or not len(b):
        raise KeyError(f"no {method} runs ({protocol}, fill {fill}) in {scenario!r} or {reference!r}")
    rng = np.random.default_rng(seed)
    boot = (rng.choice(a, (n_boot, len(a))).mean(1) - rng.choice(b, (n_boot, len(b))).mean(1))
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"metric": metric, "scenario": scenario, "reference": reference,
            "difference": float(a.mean() - b.mean()), "low": float(low), "high": float(high),
            "runs": (len(a), len(b))}
