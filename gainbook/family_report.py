"""Reading the bias family's record (:mod:`gainbook.bias_family`): its preconditions, paired
comparisons, the test of a mechanism across scenarios, and the figure.

Nothing here trains or scores a model: the functions read the per-run records and compute
every interval from them (:func:`gainbook.stats.compare_records`), so a change to how the
family is shown never invalidates what was measured.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from gainbook.bias_family import FILLS, PROTOCOLS

__all__ = ["HALVES", "family_records", "family_checks", "testable_members", "family_comparisons",
           "family_table", "mechanism_test", "family_figure", "member_table"]

#: The two counterfactual halves of Table 7, as the records name them.
HALVES = ("boat without water", "water without boat")


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
            rows.append({"scenario": name, "check": check["name"], "value": check["value"],
                         "threshold": check["threshold"],
                         "passed": "✓" if check["passed"] else "✗"})
    return pd.DataFrame(rows).set_index(["scenario", "check"])


def testable_members(record: Mapping[str, Any]) -> dict[str, bool]:
    """Whether each member's comparison can fail: its oracle separates the halves and its
    classifier took the bias (the first two checks of
    :func:`gainbook.bias_family.scenario_checks`)."""
    return {name: all(c["passed"] for c in member["checks"]
                      if c["name"].startswith(("oracle", "bias taken")))
            for name, member in record["members"].items()}


def family_comparisons(records: Sequence[Mapping[str, Any]],
                       metrics: Sequence[str] = (*HALVES, "AUC", "attention IoU"),
                       ) -> list[dict[str, Any]]:
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
                 baseline: str = "classifier",
                 metrics: Sequence[str] = (*HALVES, "AUC", "attention IoU"),
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
        if row["metric"] in HALVES and testable is not None and not testable.get(row["scenario"], True):
            cell = f"{cell}, not testable here"
        table.setdefault(key, {})[f"{row['metric']} (points)"] = cell
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["scenario", "protocol", "fill"])
    return frame[[f"{m} (points)" for m in metrics if f"{m} (points)" in frame.columns]]


def member_table(records: Sequence[Mapping[str, Any]],
                 metrics: Sequence[str] = (*HALVES, "AUC", "attention IoU", "hole rise")) -> Any:
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


def mechanism_test(records: Sequence[Mapping[str, Any]], *, method: str = "GAIN_ext^p",
                   n_perm: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Does the hole detector predict the "water without boat" half? Over every (scenario,
    protocol, fill) cell of ``method``: the Spearman correlation between the models' mean
    hole rise (:func:`gainbook.bias_family.hole_scores`: how far erasing a region lowers a
    boat-free image's boat probability, so negative for a hole detector) and their mean gain on
    water without boats over the classifier trained as long; and the one-sided permutation
    p-value of "the more a model reads holes, the less it gains" (a positive correlation).

    >>> rows = [{"scenario": s, "protocol": "scratch", "method": m, "fill": f, "seed": 0,
    ...          "draw": 0, "hole rise": h, "water without boat": w}
    ...         for s, (h, w) in enumerate([(-0.4, 0.1), (-0.1, 0.5), (0.0, 0.8), (-0.3, 0.2)])
    ...         for m, f, h, w in (("classifier", "", 0.0, 0.0), ("GAIN_ext^p", "mean", h, w))]
    >>> result = mechanism_test(rows, n_perm=2000)
    >>> result["cells"], round(result["spearman"], 2)
    (4, 1.0)
    """
    from scipy.stats import spearmanr

    baseline = {(r["scenario"], r["protocol"], r["seed"], r["draw"]): r["water without boat"]
                for r in records if r["method"] == "classifier"}
    cells: dict[tuple, dict[str, list[float]]] = {}
    for r in records:
        if r["method"] != method:
            continue
        cell = cells.setdefault((r["scenario"], r["protocol"], r["fill"]), {"rise": [], "gain": []})
        cell["rise"].append(r["hole rise"])
        cell["gain"].append(r["water without boat"]
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
    fill, ``method - baseline`` on the attention and on each counterfactual half, in points
    with its interval, coloured by its verdict (green: above zero, red: not above, grey:
    inconclusive); scenarios whose preconditions fail are marked "not testable"."""
    import matplotlib.pyplot as plt

    panels = ("attention IoU", *HALVES)
    chosen = [r for r in rows if r["method"] == method and r["baseline"] == baseline
              and r["metric"] in panels]
    scenarios = list(dict.fromkeys(r["scenario"] for r in chosen))
    variants = [(p, f) for p in PROTOCOLS for f in FILLS
                if any(r["protocol"] == p and r["fill"] == f for r in chosen)]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 0.5 + 0.9 * len(scenarios)),
                                sharey=True, squeeze=False)
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
        ax.set_title(f"{panel}\n{method} − {baseline} (points)", fontsize=9)
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
