"""The preconditions of a claim: records that pass and fail as they should, checks that catch
a model which reads the erasure itself, and the whole measurement on a tiny run."""

from __future__ import annotations

import math
import unittest.mock

import numpy as np
import pytest
import torch
from torch import nn

from gainbook.preconditions import (
    Precondition,
    erasure_checks,
    erasure_scores,
    headroom_check,
    measure_preconditions,
    mining_checks,
    oracle_spec,
    preconditions_table,
    settled_check,
)
from gainbook.profiles import book_profile
from gainlib.data import build_sample
from gainlib.gain import GAIN, GainConfig

SIZE = 32


def test_a_precondition_passes_on_its_side_of_the_threshold_and_never_on_nan():
    assert Precondition("auc", 0.96, 0.95).passed
    assert not Precondition("auc", 0.94, 0.95).passed
    assert Precondition("rise", 0.01, 0.05, higher_is_better=False).passed
    assert not Precondition("rise", 0.2, 0.05, higher_is_better=False).passed
    assert not Precondition("auc", math.nan, 0.95).passed
    assert str(Precondition("auc", 0.5, 0.95)).startswith("FAIL  auc: 0.500 (needs >= 0.95)")
    record = Precondition("share", 0.3, 0.2, detail={"s(I)": 0.9}).record()
    assert record == {"precondition": "share", "value": 0.3, "threshold": ">= 0.2", "passed": True,
                      "s(I)": 0.9}
    table = preconditions_table([Precondition("a", 1, 0),
                                 Precondition("rise", 0.0123456, 0.05, higher_is_better=False,
                                              detail={"s(I)": 0.912345, "s(I*)": math.nan})])
    assert table.loc["a"].tolist() == ["1", "≥ 0", "✓", "–"]
    assert table.loc["rise"].tolist() == ["0.0123", "≤ 0.05", "✓", "s(I) 0.912, s(I*) –"]


def test_the_oracle_is_the_same_run_without_the_context_bias():
    classifier = book_profile("ci", design="v2").classifier(1)
    oracle = oracle_spec(classifier)
    assert classifier.data.context_bias == 0.98 and oracle.data.context_bias == 0.5
    assert oracle.data.design == "v2" and oracle.train == classifier.train
    assert oracle.key() != classifier.key()
    camera = book_profile("ci", dataset="camera").classifier(0)
    with pytest.raises(ValueError, match="synthetic scenes"):
        oracle_spec(camera)


# --- models whose answer is known --------------------------------------------------------------
# Images: a flat background of 0.2 with, on class-0 images, a bright red 6 x 6 square. Inputs are
# not normalised (mean 0, std 1), so an erased pixel is 0 and differs from the background.

def _scenes(n: int = 16) -> list[dict]:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        image = np.full((SIZE, SIZE, 3), 51, np.uint8)
        labels = np.zeros(2, np.float32)
        if i % 2 == 0:
            y, x = rng.integers(2, SIZE - 8, 2)
            image[y:y + 6, x:x + 6, 0] = 255
            labels[0] = 1
        samples.append(build_sample(image=image, labels=labels, sample_id=f"s{i}",
                                    mean=(0, 0, 0), std=(1, 1, 1)))
    return samples


class _Reads(nn.Module):
    """Class 0's logit from the red square (``content``) and/or from the share of erased
    pixels (``holes``; erased: the soft mask of Eq. 4 leaves under 1 % of a pixel's value);
    class 1's only from the holes."""

    def __init__(self, content: float, holes: float) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self.features.bias.fill_(-0.5)                     # fires on the red square only
        self.relu = nn.ReLU()
        self.content, self.holes = content, holes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = self.relu(self.features(x)).mean((1, 2, 3))
        erased = (x.abs().sum(1) < 0.1).float().mean((1, 2))   # background: 0.6
        square = self.content * red + 0.01 * red                  # a gradient for Grad-CAM
        return torch.stack([square + self.holes * erased - 1.0, self.holes * erased - 2.0], 1)


def _gain(content: float, holes: float) -> GAIN:
    # Eq. 3's fill: an erased square is gone, so what survives is what the model read elsewhere.
    return GAIN(_Reads(content, holes), "relu", GainConfig(fill="mean")).eval()


def test_erasure_checks_pass_a_model_that_reads_the_object():
    # the square's 36 of 1024 pixels at 0.5: logit 400 * 0.0176 - 1 = 6 (s = 1.0); erased: -1
    scores = erasure_scores(_gain(content=400.0, holes=0.0), _scenes())
    assert scores["s(I)"] > 0.99 and scores["s(I*) attended"] < 0.3
    assert scores["s(I*) elsewhere"] > 0.99                       # the square is untouched
    assert scores["deletion AUC attended"] < scores["deletion AUC elsewhere"]
    gap, hole = erasure_checks(_gain(content=400.0, holes=0.0), _scenes())
    assert gap.passed and gap.value > 0.6
    assert hole.passed and abs(hole.value) < 1e-6


def test_erasure_checks_fail_a_model_that_reads_the_hole():
    gap, hole = erasure_checks(_gain(content=0.0, holes=80.0), _scenes())
    assert not gap.passed and abs(gap.value) < 0.05               # same area erased: same score
    assert not hole.passed and hole.value > 0.1                   # a hole makes class 1 appear
    assert hole.detail["negatives turned positive"] > 0


def test_erasure_checks_erase_with_the_models_own_fill():
    # This model reads zeroed pixels: Eq. 3's mean fill is a cue to it, a blur of the flat
    # background is not. The check must erase as the model's S_am does, with its own fill.
    reads_zeros = _Reads(content=0.0, holes=80.0)
    _, with_mean = erasure_checks(GAIN(reads_zeros, "relu", GainConfig(fill="mean")).eval(),
                                  _scenes())
    _, with_blur = erasure_checks(GAIN(reads_zeros, "relu", GainConfig(fill="blur")).eval(),
                                  _scenes())
    assert not with_mean.passed and with_mean.value > 0.1
    assert with_blur.passed and abs(with_blur.value) < 1e-3


def test_mining_check_reads_what_survives_the_erasure():
    (nothing_left,) = mining_checks(_gain(content=400.0, holes=0.0), _scenes())
    assert not nothing_left.passed and nothing_left.value == 0.0
    assert nothing_left.detail["s(I)"] > 0.99 and nothing_left.detail["s(I*)"] < 0.3
    # a model that scores the hole as the class: every erased image still scores positive
    (survives,) = mining_checks(_gain(content=400.0, holes=80.0), _scenes())
    assert survives.passed and survives.value == 1.0


def test_measure_preconditions_on_a_tiny_run(tmp_path):
    spec = book_profile("ci", n_train=48, n_eval=24, classifier_epochs=1, design="v2").classifier(0)
    checks = measure_preconditions(spec, tmp_path)
    names = [c.name for c in checks]
    assert names[0] == "oracle: AUC boat without water vs water without boat"
    assert [n for n in names if n.startswith("oracle: no_context")] == [
        f"oracle: no_context AUC {c}" for c in ("boat", "car", "bird", "cow")]
    assert names[-3:] == ["mining: share of erased images still scoring positive",
                          "erasure: s(I*) elsewhere - s(I*) attended",
                          "erasure: hole detector, rise of an absent class's s(I)"]
    for check in checks:
        assert math.isfinite(check.value), check
        assert isinstance(check.passed, bool)
    assert len([p for p in tmp_path.glob("classifier-*") if p.is_dir()]) == 2   # classifier, oracle
    # The classifier's checks are stored with it: asked again (another chapter), they are read.
    stored = sorted(p.name.split("-")[1] for p in tmp_path.glob("classifier-*/preconditions-*.json"))
    assert stored == ["erasure", "mining"]
    with unittest.mock.patch("gainbook.preconditions.mining_checks",
                             side_effect=AssertionError("measured again")):
        again = measure_preconditions(spec, tmp_path, oracle=False)
    assert [(c.name, c.value, c.detail) for c in again] == [
        (c.name, c.value, c.detail) for c in checks if not c.name.startswith("oracle")]
    with pytest.raises(ValueError, match="plain classifier"):
        measure_preconditions(book_profile("ci").finetuned(0, "gain"), tmp_path)


def test_mining_is_the_mean_over_the_seeds_runs(tmp_path):
    """One seed's classifier may pass "something to mine" where the benchmark does not: with
    ``mining_runs`` the check is the mean share over every run, its spread in the detail."""
    settings = book_profile("ci", n_train=48, n_eval=24, classifier_epochs=1, design="v2",
                            seeds=[0, 1, 2])
    first, *rest = [settings.classifier(seed) for seed in settings.seeds]
    alone = [next(c for c in measure_preconditions(spec, tmp_path, oracle=False)
                  if c.name.startswith("mining")) for spec in (first, *rest)]
    pooled = measure_preconditions(first, tmp_path, oracle=False, mining_runs=rest)
    mining = next(c for c in pooled if c.name.startswith("mining"))
    values = [c.value for c in alone]
    assert mining.value == pytest.approx(sum(values) / 3)
    assert mining.detail["runs"] == 3
    assert (mining.detail["lowest run"], mining.detail["highest run"]) == (min(values), max(values))
    assert mining.detail["s(I)"] == pytest.approx(sum(c.detail["s(I)"] for c in alone) / 3)
    # The erasure checks stay the first run's.
    assert [c for c in pooled if c.name.startswith("erasure")] == [
        c for c in measure_preconditions(first, tmp_path, oracle=False)
        if c.name.startswith("erasure")]
    with pytest.raises(ValueError, match="plain classifier"):
        measure_preconditions(first, tmp_path, mining_runs=[settings.finetuned(1, "gain")])


def _gap_rows(gaps):
    """Paired records of a bound and a smallest count, the bound ``gap`` above on each run."""
    return [row for seed, gap in enumerate(gaps)
            for row in ({"method": "bound", "seed": seed, "draw": seed % 2, "iou": 0.5 + gap},
                        {"method": "19", "seed": seed, "draw": seed % 2, "iou": 0.5})]


@pytest.mark.parametrize("gaps, passes", [
    ([0.03, 0.04, 0.05, 0.03, 0.04], True),       # a few points below the bound
    ([0.005, 0.02, 0.01, 0.015, 0.008], True),     # a point or so: the low end under a point
    ([0.004, 0.006, 0.005, 0.004, 0.006], False),  # measurable, but all within a point
    ([-0.02, 0.03, -0.01, 0.02, 0.0], False),      # not measurably below
    ([-0.03, -0.04, -0.03, -0.05, -0.04], False),  # above the bound
])
def test_headroom_needs_the_bound_measurably_and_not_negligibly_above(gaps, passes):
    check = headroom_check(_gap_rows(gaps), "iou", "bound", "19", what="every image")
    assert check.passed is passes
    assert check.detail["low"] <= check.detail["difference"] <= check.detail["high"]


def test_headroom_fails_on_one_run():
    assert not headroom_check(_gap_rows([0.05]), "iou", "bound", "19", what="every image").passed


def test_settled_check_reads_the_last_epoch_of_each_kind():
    moving = settled_check({"SEC": [[0.2, 0.3, 0.305]], "Fig. 4": [[0.1, 0.2, 0.25]]},
                           what="val mIoU")
    assert not moving.passed and moving.value == pytest.approx(0.05)
    settled = settled_check({"SEC": [[0.2, 0.3, 0.305]], "Fig. 4": [[0.1, 0.2, 0.209]]},
                            what="val mIoU")
    assert settled.passed and settled.value == pytest.approx(0.009)
    with pytest.raises(ValueError, match="no learning curve"):
        settled_check({"SEC": [[0.3]]}, what="val mIoU")
