"""Plotting helpers for the book's chapters: attention overlays, Fig.-5-style panels, results tables.

The chapters import these instead of carrying plotting code. matplotlib and pandas (the ``book``
extra) are imported inside the functions that need them, so ``import gainbook.viz`` works without
them; ``import gainlib`` never imports this module.

Images may be given as the network sees them (normalised ``[3, H, W]`` tensors, undone with
:func:`gainlib.data.protocol.denormalize`) or ready for display (``normalized=False``: values in
[0, 1], ``[3, H, W]`` or ``[H, W, 3]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD, denormalize

if TYPE_CHECKING:  # only for the annotations; matplotlib and pandas stay optional
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "display_image",
    "attention_overlay",
    "show_attention",
    "attention_panels",
    "image_grid",
    "summarize_results",
    "in_points",
    "results_table",
    "compare_methods",
    "curve_plot",
    "label_panels",
]


def display_image(image: torch.Tensor | np.ndarray, normalized: bool = True,
                  mean: Sequence[float] = IMAGENET_MEAN,
                  std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """An image as a float ``[H, W, 3]`` array in [0, 1], ready for ``imshow``.

    Args:
        image: ``[3, H, W]`` (tensor or array) or ``[H, W, 3]`` (array, display-ready).
        normalized: the image is normalised with ``mean``/``std`` (a dataset sample's
            ``"image"``) and is denormalised first.
    """
    tensor = torch.as_tensor(np.asarray(image) if isinstance(image, np.ndarray) else image)
    tensor = tensor.detach().cpu().float()
    if tensor.ndim == 3 and tensor.shape[0] != 3 and tensor.shape[-1] == 3:
        tensor = tensor.permute(2, 0, 1)
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"image must be [3, H, W] or [H, W, 3], got {list(tensor.shape)}")
    if normalized:
        tensor = denormalize(tensor, mean, std)
    return tensor.clamp(0, 1).permute(1, 2, 0).numpy()


def _as_map(attention: torch.Tensor | np.ndarray) -> np.ndarray:
    if torch.is_tensor(attention):
        attention = attention.detach().cpu().float().numpy()
    array = np.asarray(attention, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"an attention map must be [H, W], got shape {list(array.shape)}")
    return np.clip(array, 0.0, 1.0)


def attention_overlay(image: torch.Tensor | np.ndarray, attention: torch.Tensor | np.ndarray,
                      *, alpha: float = 0.5, cmap: str = "jet", normalized: bool = True) -> np.ndarray:
    """Blend a colour-mapped attention map over its image: ``[H, W, 3]`` floats in [0, 1].

    Args:
        image: see :func:`display_image`.
        attention: ``[H, W]`` map in [0, 1] (a slice of :class:`~gainlib.attention.AttentionMaps`
            ``.maps``); it must have the image's size.
        alpha: weight of the colour map (0 shows only the image).
        cmap: a matplotlib colour map name.
        normalized: see :func:`display_image`.
    """
    import matplotlib

    rgb = display_image(image, normalized)
    heat = _as_map(attention)
    if heat.shape != rgb.shape[:2]:
        raise ValueError(f"attention {list(heat.shape)} and image {list(rgb.shape[:2])} differ in size")
    colored = matplotlib.colormaps[cmap](heat)[..., :3]
    return (1 - alpha) * rgb + alpha * colored


def show_attention(ax: "Axes", image: torch.Tensor | np.ndarray,
                   attention: torch.Tensor | np.ndarray | None = None, *, title: str | None = None,
                   alpha: float = 0.5, cmap: str = "jet", normalized: bool = True) -> "Axes":
    """Draw an image, with its attention map overlaid when one is given, on ``ax`` (no ticks)."""
    if attention is None:
        ax.imshow(display_image(image, normalized))
    else:
        ax.imshow(attention_overlay(image, attention, alpha=alpha, cmap=cmap, normalized=normalized))
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize="medium")
    return ax


def attention_panels(images: torch.Tensor | Sequence[torch.Tensor | np.ndarray],
                     columns: Mapping[str, torch.Tensor | np.ndarray | Sequence | None],
                     *, row_labels: Sequence[str] | None = None, panel_size: float = 1.8,
                     alpha: float = 0.5, cmap: str = "jet", normalized: bool = True,
                     column_cmaps: Mapping[str, str] | None = None) -> "Figure":
    """A grid like the paper's Fig. 5: one row per image, one titled column per method.

    Args:
        images: ``[N, 3, H, W]`` (or a sequence of images, see :func:`display_image`).
        columns: column title -> ``[N, H, W]`` maps overlaid on the images, in display order;
            ``None`` shows the plain image (e.g. ``{"image": None, "Grad-CAM": cam,
            "GAIN": gain}``). A map column may also hold masks (e.g. the ground truth).
        row_labels: optional label of each row (e.g. the class names), shown on the left.
        panel_size: side of one panel in inches.
        alpha, cmap, normalized: see :func:`attention_overlay`.
        column_cmaps: colour maps of particular columns, e.g. ``{"object": "Reds"}`` for a mask
            (``jet``'s top colour is a dark red that hides a mask instead of showing it).

    Returns:
        The figure, already closed in pyplot so that a notebook shows it once: make it the
        cell's last expression (or ``fig.savefig(...)`` it).
    """
    import matplotlib.pyplot as plt

    n = len(images)
    titles = list(columns)
    if not titles:
        raise ValueError("columns must name at least one column")
    for title, maps in columns.items():
        if maps is not None and len(maps) != n:
            raise ValueError(f"column {title!r} has {len(maps)} maps for {n} images")
    if row_labels is not None and len(row_labels) != n:
        raise ValueError(f"{len(row_labels)} row labels for {n} images")
    fig, axes = plt.subplots(n, len(titles), figsize=(panel_size * len(titles), panel_size * n),
                             squeeze=False, layout="constrained")
    for row in range(n):
        for col, title in enumerate(titles):
            maps = columns[title]
            show_attention(axes[row, col], images[row], None if maps is None else maps[row],
                           title=title if row == 0 else None, alpha=alpha,
                           cmap=(column_cmaps or {}).get(title, cmap), normalized=normalized)
        if row_labels is not None:
            axes[row, 0].set_ylabel(row_labels[row])
    plt.close(fig)
    return fig


def image_grid(images: torch.Tensor | Sequence[torch.Tensor | np.ndarray],
               titles: Sequence[str] | None = None, *, ncols: int = 3,
               panel_size: float = 1.6, normalized: bool = True) -> "Figure":
    """Images in a grid of ``ncols`` columns, each with an optional title (closed in pyplot,
    as :func:`attention_panels`)."""
    import matplotlib.pyplot as plt

    n = len(images)
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows),
                             squeeze=False, layout="constrained")
    for index, ax in enumerate(axes.flat):
        if index < n:
            show_attention(ax, images[index], None, normalized=normalized,
                           title=None if titles is None else titles[index])
        else:
            ax.set_axis_off()
    plt.close(fig)
    return fig


#: The record key of the training-set draw (:meth:`gainbook.profiles.BookProfile.draw_of`): an
#: identifier of a run, never a metric.
DRAW_KEY = "draw"


def _records(results: Any, by: str, seed_key: str) -> list[dict[str, Any]]:
    """Normalise the accepted results shapes to a list of flat records."""
    if isinstance(results, Mapping):
        records: list[dict[str, Any]] = []
        for group, value in results.items():
            if isinstance(value, Mapping):      # {group: {metric: [value per seed]}}
                lengths = {len(v) if isinstance(v, Sequence) else 1 for v in value.values()}
                if len(lengths) > 1:
                    raise ValueError(f"group {group!r} has metrics with different numbers of seeds")
                for i in range(lengths.pop() if lengths else 0):
                    records.append({by: group, seed_key: i, **{
                        m: (v[i] if isinstance(v, Sequence) else v) for m, v in value.items()}})
            else:                               # {group: [record per seed]}
                records.extend({by: group, **record} for record in value)
        return records
    return [dict(record) for record in results]  # [record, ...]


def _keys(by: str | Sequence[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def summarize_results(results: Any, by: str | Sequence[str] = "method", seed_key: str = "seed",
                      metrics: Sequence[str] | None = None) -> "pd.DataFrame":
    """Mean, standard deviation (over seeds, ``ddof=1``) and number of seeds of every metric.

    Args:
        results: one of
            * a list of records ``{"method": "GAIN", "seed": 0, "accuracy": 0.91, ...}``;
            * ``{method: [record per seed, ...]}``;
            * ``{method: {metric: [value per seed, ...]}}``.
        by: the record key that names a row, or several (e.g. ``("method", "split")``); rows
            keep their first-appearance order.
        seed_key: the record key that is not a metric (ignored when absent).
        metrics: the metric columns, in order (default: every other numeric key but
            ``"draw"``, the training-set draw a record was trained on, which names a run as
            the seed does).

    Returns:
        A numeric DataFrame indexed by ``by`` with columns ``(metric, "mean" | "std" | "n")``.
    """
    import pandas as pd

    keys = _keys(by)
    frame = pd.DataFrame(_records(results, keys[0], seed_key))
    if frame.empty or any(k not in frame for k in keys):
        raise ValueError(f"no results with the key(s) {keys} to summarise")
    if metrics is None:
        metrics = [c for c in frame.columns
                   if c not in (*keys, seed_key, DRAW_KEY) and pd.api.types.is_numeric_dtype(frame[c])]
    missing = [m for m in metrics if m not in frame]
    if missing:
        raise KeyError(f"metrics {missing} are not in the results (columns: {list(frame.columns)})")
    grouped = frame.groupby(keys if len(keys) > 1 else keys[0], sort=False)[list(metrics)]
    summary = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()},
                        axis=1)
    return summary.swaplevel(axis=1)[[(m, s) for m in metrics for s in ("mean", "std", "n")]]


def results_table(results: Any, by: str | Sequence[str] = "method", seed_key: str = "seed",
                  metrics: Sequence[str] | None = None, digits: int = 3,
                  percent: Sequence[str] = ()) -> "pd.DataFrame":
    """A results table for display: one row per ``by``, one ``"mean ± std"`` cell per metric.

    The standard deviation is over seeds; a row with a single seed shows the mean alone, and a
    cell without a value shows "–". A last column ``seeds`` gives the number of seeds behind
    each row (from the first metric); ``runs`` when the records also have data draws.

    Args:
        results, by, seed_key, metrics: see :func:`summarize_results`.
        digits: decimals shown.
        percent: metrics shown in percent (values in [0, 1] multiplied by 100).

    Returns:
        A DataFrame of strings (notebooks render it as an HTML table).
    """
    import pandas as pd

    summary = summarize_results(results, by, seed_key, metrics)
    names = list(dict.fromkeys(m for m, _ in summary.columns))
    table = pd.DataFrame(index=summary.index)
    for metric in names:
        scale = 100.0 if metric in percent else 1.0
        mean, std = summary[(metric, "mean")] * scale, summary[(metric, "std")] * scale
        label = f"{metric} (%)" if metric in percent else metric
        table[label] = ["–" if pd.isna(m) else f"{m:.{digits}f}" if pd.isna(s)
                        else f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(mean, std)]
    # Records of several data draws count runs (seed x draw), not seeds.
    draws = any(DRAW_KEY in record for record in _records(results, _keys(by)[0], seed_key))
    table["runs" if draws else "seeds"] = summary[(names[0], "n")].astype(int) if names else 0
    return table


def in_points(frame: "pd.DataFrame", columns: Sequence[str], digits: int = 1) -> "pd.DataFrame":
    """A copy of ``frame`` with ``columns`` (differences of metrics in [0, 1]) in points, as
    the scorecards give them: times 100, ``digits`` decimals, "(points)" in the header.

    >>> import pandas as pd
    >>> in_points(pd.DataFrame({"difference": [0.02011], "pairs": [5]}), ["difference"])
       difference (points)  pairs
    0                  2.0      5
    """
    shown = frame.copy()
    for column in columns:
        shown[column] = (shown[column] * 100).round(digits)
    return shown.rename(columns={c: f"{c} (points)" for c in columns})


def compare_methods(results: Any, metric: str, method: Any, baseline: Any, *,
                    by: str = "method", seed_key: str = "seed",
                    direction: str = "greater", **where: Any) -> str:
    """A one-line verdict: ``method`` against ``baseline`` on ``metric``, paired by seed (and
    data draw where the records have one).

    Gives both means in percent and the mean paired difference in points with its 95 %
    bootstrap interval and the verdict on "``method`` is ``direction`` than ``baseline``"
    (:func:`gainbook.stats.compare_records`), e.g. ``"iou: GAIN 16.5 vs classifier 16.7:
    -0.2 points [-0.9, +0.5], 3 runs: inconclusive (fewer than 5 runs)"``. Below
    :data:`gainbook.stats.MIN_RUNS` paired runs the verdict is "inconclusive" whatever the
    interval (a percentile interval over 3 values is far too narrow); never a count of wins.

    Args:
        results: records as accepted by :func:`summarize_results` (values in [0, 1]).
        metric: the metric to compare; method, baseline: values of the ``by`` key.
        direction: the claim, ``"greater"`` (method higher) or ``"less"``.
        where: only the records with these values (e.g. ``split="val"``).

    Raises:
        ValueError: when the two methods were not run on the same seeds.
    """
    from gainbook.stats import compare_records, decided_verdict, format_difference

    records = [r for r in _records(results, by, seed_key)
               if all(r.get(k) == v for k, v in where.items())]
    pair = (DRAW_KEY, seed_key) if any(DRAW_KEY in r for r in records) else (seed_key,)
    ours = [r for r in records if r[by] == method]
    base = [r for r in records if r[by] == baseline]
    if not ours or sorted(tuple(r[k] for k in pair) for r in ours) != sorted(
            tuple(r[k] for k in pair) for r in base):
        raise ValueError(f"{method!r} and {baseline!r} must be run on the same seeds "
                         f"({', '.join(pair)})")
    row = compare_records(records, metric, method, baseline, direction=direction, by=by,
                          pair=pair, group=DRAW_KEY if DRAW_KEY in pair else None)
    mean = lambda rows: 100 * sum(float(r[metric]) for r in rows) / len(rows)  # noqa: E731
    difference, interval = format_difference(row).split(" ", 1)
    return (f"{metric}: {method} {mean(ours):.1f} vs {baseline} {mean(base):.1f}: "
            f"{difference} points {interval}, {row['pairs']} runs: {decided_verdict(row)}")


def curve_plot(results: Any, x: str, metric: str, *, by: str = "method", seed_key: str = "seed",
               ax: "Axes | None" = None, title: str | None = None, ylabel: str | None = None,
               scale: float = 100.0, xscale: str = "linear") -> "Figure":
    """``metric`` against ``x`` for each ``by`` group: the mean over seeds with a ±1 std band.

    Made for "how does attention change with the number of extra labels" (chapter 3) and, with
    one record per point and no seeds, for the paper's own tables (e.g. Tables 3-4).

    Args:
        results: records as accepted by :func:`summarize_results`; each has ``x``, ``metric``,
            ``by`` and (optionally) ``seed_key``.
        x, metric: the record keys of the two axes.
        ax: draw into these axes (default: a new figure).
        scale: multiplies the metric (100: fractions shown in percent; 1 for values already
            in percent).
        xscale: matplotlib's x-axis scale (``"log"`` for label counts spanning decades).

    Returns:
        The figure (closed in pyplot, as :func:`attention_panels`).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(_records(results, by, seed_key))
    missing = [k for k in (x, metric, by) if k not in frame]
    if missing:
        raise KeyError(f"the results have no {missing} (columns: {list(frame.columns)})")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
        plt.close(fig)
    for name, group in frame.groupby(by, sort=False):
        stats = group.groupby(x)[metric].agg(["mean", "std", "count"]).sort_index()
        mean, std = stats["mean"] * scale, stats["std"].fillna(0.0) * scale
        ax.plot(stats.index, mean, marker="o", label=str(name))
        if (stats["count"] > 1).any():
            ax.fill_between(stats.index, mean - std, mean + std, alpha=0.2)
    ax.set_xscale(xscale)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or metric)
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax.figure


#: Colours of segmentation labels 1, 2, ... (label 0, the background, is left transparent).
LABEL_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628",
                 "#f781bf", "#999999", "#66c2a5")


def label_panels(images: torch.Tensor | Sequence[torch.Tensor | np.ndarray],
                 columns: Mapping[str, torch.Tensor | np.ndarray | Sequence | None],
                 class_names: Sequence[str], *, panel_size: float = 1.6, alpha: float = 0.6,
                 normalized: bool = True, ignore_index: int = 255) -> "Figure":
    """Segmentations over their images, one column per method (like the paper's Fig. 6).

    Args:
        images: ``[N, 3, H, W]`` (see :func:`display_image`).
        columns: title -> ``[N, H, W]`` integer label maps (0 background, ``c + 1`` class ``c``,
            ``ignore_index`` drawn grey); ``None`` shows the plain image.
        class_names: the ``C`` object classes, for the legend.
        alpha: opacity of the class colours (the background stays the image).

    Returns:
        The figure, closed in pyplot (make it a cell's last expression).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    import matplotlib

    if len(class_names) <= len(LABEL_COLOURS):
        colours = LABEL_COLOURS[:len(class_names)]
    elif len(class_names) <= 20:                      # VOC's 20 classes
        colours = [matplotlib.colormaps["tab20"](i) for i in range(len(class_names))]
    else:
        raise ValueError(f"at most 20 classes can be coloured, got {len(class_names)}")
    n, titles = len(images), list(columns)
    for title, maps in columns.items():
        if maps is not None and len(maps) != n:
            raise ValueError(f"column {title!r} has {len(maps)} label maps for {n} images")
    palette = np.array([to_rgb(c) for c in colours])
    fig, axes = plt.subplots(n, len(titles), figsize=(panel_size * len(titles), panel_size * n + 0.4),
                             squeeze=False, layout="constrained")
    for row in range(n):
        rgb = display_image(images[row], normalized)
        for col, title in enumerate(titles):
            ax, maps = axes[row, col], columns[title]
            shown = rgb.copy()
            if maps is not None:
                labels = torch.as_tensor(maps[row]).cpu().numpy().astype(int)
                if labels.shape != rgb.shape[:2]:
                    raise ValueError(f"label map {list(labels.shape)} and image {list(rgb.shape[:2])} differ")
                for c in range(len(class_names)):
                    hit = labels == c + 1
                    shown[hit] = (1 - alpha) * shown[hit] + alpha * palette[c]
                shown[labels == ignore_index] = 0.5
            ax.imshow(shown)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize="medium")
    fig.legend(handles=[Patch(color=palette[c], label=name) for c, name in enumerate(class_names)],
               loc="outside lower center", ncol=len(class_names), fontsize="small", frameon=False)
    plt.close(fig)
    return fig
