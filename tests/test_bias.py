"""gainlib.bias: Table 7's accuracies on hand-made scores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gainlib.bias import biased_boat_accuracy, class_scores


class _ScoreIsPixel(nn.Module):
    """Logits ``[B, 2]``: class 0 (boat) scores the image's first pixel, class 1 its negative."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))   # a device to read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, 0, 0, 0]
        return torch.stack([first, -first], dim=1) + self.anchor


def _samples(pairs):
    """(boat logit, boat present) pairs as protocol samples."""
    return [{"image": torch.full((3, 2, 2), float(logit)),
             "labels": torch.tensor([float(present), 0.0])} for logit, present in pairs]


def test_table_7_numbers_from_known_scores():
    model = _ScoreIsPixel().train()
    val = _samples([(2.0, True), (-1.0, False), (-0.5, True), (1.0, False)])        # 2 of 4 right
    biased = _samples([(3.0, True), (-2.0, True), (0.5, True), (-1.0, False), (2.0, False)])
    scores = biased_boat_accuracy(model, val, biased, boat=0)
    assert scores["val"] == pytest.approx(0.5)
    assert scores["boat without water"] == pytest.approx(2 / 3)
    assert scores["water without boat"] == pytest.approx(1 / 2)
    assert scores["overall"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    sigmoid = torch.sigmoid(torch.tensor([3.0, -2.0, 0.5, -1.0, 2.0]))
    assert scores["p(boat), boats"] == pytest.approx(float(sigmoid[:3].mean()))
    assert scores["p(boat), water"] == pytest.approx(float(sigmoid[3:].mean()))
    assert model.training, "scoring must leave the model in the mode it found"
    logits, present = class_scores(model, biased, 0, batch_size=2)
    assert logits.tolist() == [3.0, -2.0, 0.5, -1.0, 2.0] and present.tolist() == [True] * 3 + [False] * 2


def test_a_set_without_both_kinds_is_refused():
    only_boats = _samples([(1.0, True), (2.0, True)])
    with pytest.raises(ValueError, match="with and without"):
        biased_boat_accuracy(_ScoreIsPixel(), only_boats, only_boats, boat=0)
