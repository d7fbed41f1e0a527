"""gainbook.viz: overlays, the Fig.-5-style panel grid and results tables (no display needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD
from gainbook.viz import display_image

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def _normalized(rgb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (rgb - mean) / std


def test_importing_gainlib_loads_neither_matplotlib_nor_pandas():
    code = ("import sys, gainlib, gainbook.viz, gainbook.explorer; "
            "print(sorted(m for m in ('matplotlib', 'pandas', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_display_image_undoes_the_normalisation_and_accepts_channels_last():
    rgb = torch.rand(3, 5, 7)
    shown = display_image(_normalized(rgb))
    assert shown.shape == (5, 7, 3)
    np.testing.assert_allclose(shown, rgb.permute(1, 2, 0).numpy(), atol=1e-5)
    channels_last = rgb.permute(1, 2, 0).numpy()
    np.testing.assert_allclose(display_image(channels_last, normalized=False), channels_last, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        display_image(torch.rand(2, 5, 7))


def test_attention_overlay_blends_the_colour_map_over_the_image():
    from gainbook.viz import attention_overlay

    rgb = torch.rand(3, 8, 8)
    heat = torch.rand(8, 8)
    plain = attention_overlay(rgb, heat, alpha=0.0, normalized=False)
    np.testing.assert_allclose(plain, rgb.permute(1, 2, 0).numpy(), atol=1e-6)
    colored = attention_overlay(rgb, heat, alpha=1.0, cmap="gray", normalized=False)
    np.testing.assert_allclose(colored[..., 0], heat.numpy(), atol=1 / 255 + 1e-6)
    assert attention_overlay(_normalized(rgb), heat).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="differ in size"):
        attention_overlay(rgb, torch.rand(4, 4), normalized=False)


def test_attention_panels_has_a_titled_column_per_method_and_a_row_per_image():
    from gainbook.viz import attention_panels

    images = torch.randn(3, 3, 16, 16)
    maps = torch.rand(3, 16, 16)
    fig = attention_panels(images, {"image": None, "Grad-CAM": maps, "GAIN": maps.flip(-1)},
                           row_labels=["boat", "car", "bird"])
    axes = np.array(fig.axes).reshape(3, 3)
    assert [ax.get_title() for ax in axes[0]] == ["image", "Grad-CAM", "GAIN"]
    assert all(ax.get_title() == "" for ax in axes[1:].ravel())
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["boat", "car", "bird"]
    with pytest.raises(ValueError, match="2 maps for 3 images"):
        attention_panels(images, {"GAIN": maps[:2]})


def test_attention_panels_colour_maps_per_column():
    from gainbook.viz import attention_overlay, attention_panels

    images = torch.randn(1, 3, 8, 8)
    mask = (torch.rand(1, 8, 8) > 0.5).float()
    fig = attention_panels(images, {"object": mask, "GAIN": mask}, column_cmaps={"object": "Reds"})
    shown = [ax.get_images()[0].get_array() for ax in fig.axes]
    np.testing.assert_allclose(shown[0], attention_overlay(images[0], mask[0], cmap="Reds"))
    np.testing.assert_allclose(shown[1], attention_overlay(images[0], mask[0], cmap="jet"))


RECORDS = [
    {"method": "classifier", "seed": 0, "accuracy": 0.90, "iou": 0.30},
    {"method": "classifier", "seed": 1, "accuracy": 0.92, "iou": 0.34},
    {"method": "GAIN", "seed": 0, "accuracy": 0.91, "iou": 0.50},
    {"method": "GAIN", "seed": 1, "accuracy": 0.89, "iou": 0.54},
]


def test_results_summary_is_the_same_for_every_accepted_shape():
    pytest.importorskip("pandas")
    from gainbook.viz import summarize_results

    by_method = {"classifier": [r for r in RECORDS if r["method"] == "classifier"],
                 "GAIN": [r for r in RECORDS if r["method"] == "GAIN"]}
    per_metric = {"classifier": {"accuracy": [0.90, 0.92], "iou": [0.30, 0.34]},
                  "GAIN": {"accuracy": [0.91, 0.89], "iou": [0.50, 0.54]}}
    summaries = [summarize_results(r) for r in (RECORDS, by_method, per_metric)]
    for summary in summaries[1:]:
        assert summary.equals(summaries[0])
    summary = summaries[0]
    assert list(summary.index) == ["classifier", "GAIN"]               # first-appearance order
    assert summary.loc["GAIN", ("iou", "mean")] == pytest.approx(0.52)
    assert summary.loc["GAIN", ("iou", "std")] == pytest.approx(np.std([0.50, 0.54], ddof=1))
    assert summary.loc["GAIN", ("iou", "n")] == 2


def test_results_table_formats_mean_plus_minus_std():
    pytest.importorskip("pandas")
    from gainbook.viz import results_table

    table = results_table(RECORDS, metrics=["iou", "accuracy"], digits=2, percent=["accuracy"])
    assert list(table.columns) == ["iou", "accuracy (%)", "seeds"]
    assert table.loc["GAIN", "iou"] == "0.52 ± 0.03"
    assert table.loc["classifier", "accuracy (%)"] == "91.00 ± 1.41"
    assert table.loc["GAIN", "seeds"] == 2
    single = results_table([{"method": "GAIN", "seed": 0, "iou": 0.5}])
    assert single.loc["GAIN", "iou"] == "0.500"                         # no ± for one seed
    with pytest.raises(KeyError, match="missing"):
        results_table(RECORDS, metrics=["missing"])


def test_compare_methods_gives_an_interval_and_never_a_tally():
    from gainbook.viz import compare_methods

    line = compare_methods(RECORDS, "iou", "GAIN", "classifier")
    assert line.startswith("iou: GAIN 52.0 vs classifier 32.0: +20.0 points [")
    assert "2 runs: inconclusive (2 runs of 1 data draw" in line and "higher on" not in line
    with pytest.raises(ValueError, match="same seeds"):
        compare_methods(RECORDS[:3], "iou", "GAIN", "classifier")
    # Five seeds on each of two draws, GAIN always ahead by about 10 points: a verdict.
    many = [{"method": m, "seed": s, "draw": d, "iou": 0.3 + 0.1 * (m == "GAIN") + 0.01 * s}
            for m in ("GAIN", "classifier") for s in range(5) for d in range(2)]
    line = compare_methods(many, "iou", "GAIN", "classifier")
    assert line.endswith("10 runs: holds"), line
    assert compare_methods(many, "iou", "GAIN", "classifier", direction="less").endswith(
        "does not hold")


def test_curve_plot_draws_the_seed_mean_of_each_group_in_x_order():
    from gainbook.viz import curve_plot

    records = [{"method": "p", "labels": n, "seed": s, "iou": base + 0.01 * s}
               for n, base in ((200, 0.30), (28, 0.20)) for s in (0, 1, 2)]
    records += [{"method": "b", "labels": 28, "seed": s, "iou": 0.1} for s in (0, 1)]
    fig = curve_plot(records, "labels", "iou", ylabel="IoU (%)")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["p", "b"]
    np.testing.assert_allclose(lines["p"].get_xdata(), [28, 200])
    np.testing.assert_allclose(lines["p"].get_ydata(), [21.0, 31.0])
    assert ax.get_ylabel() == "IoU (%)" and ax.get_xlabel() == "labels"
    with pytest.raises(KeyError, match="no"):
        curve_plot(records, "fraction", "iou")


def test_label_panels_colour_classes_and_leave_the_background_as_the_image():
    from matplotlib.colors import to_rgb

    from gainbook.viz import LABEL_COLOURS, label_panels

    image = torch.full((1, 3, 4, 4), 0.25)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = 2
    fig = label_panels(image, {"image": None, "prediction": labels}, ["boat", "car"],
                       normalized=False, alpha=1.0)
    shown = fig.axes[1].get_images()[0].get_array()
    np.testing.assert_allclose(shown[0, 0], to_rgb(LABEL_COLOURS[1]))
    np.testing.assert_allclose(shown[1, 1], [0.25, 0.25, 0.25])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["boat", "car"]
    with pytest.raises(ValueError, match="label maps"):
        label_panels(image, {"prediction": labels.repeat(2, 1, 1)}, ["boat", "car"])
    voc = label_panels(image, {"prediction": labels}, [f"class {i}" for i in range(20)])
    assert len(voc.legends[0].get_texts()) == 20
    with pytest.raises(ValueError, match="at most 20"):
        label_panels(image, {"prediction": labels}, [f"class {i}" for i in range(21)])


def test_results_table_counts_runs_over_draws_and_never_averages_the_draw():
    from gainbook.viz import results_table

    records = [{"method": m, "seed": s, "draw": s % 2, "iou": 0.3 + 0.01 * s}
               for m in ("GAIN", "classifier") for s in range(5)]
    table = results_table(records)
    assert list(table.columns) == ["iou", "runs"]                     # no "draw" column
    assert table["runs"].tolist() == [5, 5]
