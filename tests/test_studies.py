"""gainbook.studies: Table 7's accuracies on hand-made scores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gainbook.studies import biased_boat_accuracy, class_scores


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


def _orientation_model(num_classes: int):
    from gainlib.gain import GAIN
    from gainlib.models import build_classifier

    torch.manual_seed(0)
    classifier, layer = build_classifier("small_cnn", num_classes, widths=(4, 8))
    return GAIN(classifier, layer)


@pytest.mark.parametrize("variant", ["camera", "workpiece"])
def test_orientation_scores_are_shares_and_lighting_agreement(variant):
    from gainbook.studies import orientation_scores
    from gainlib.data import SyntheticOrientation

    # shortcut_strength=1: the lamp always points at the class, so following it is being right.
    data = SyntheticOrientation("train", 16, variant=variant, image_size=32, shortcut_strength=1.0,
                                saliency=None)
    k = data.labels.shape[1]
    scores = orientation_scores(_orientation_model(k), data, batch_size=5)
    assert scores["chance"] == pytest.approx(1 / k)
    assert scores["follows lighting"] == pytest.approx(scores["accuracy"])
    shares = [scores[f"attention {r}"] for r in ("on critical area", "on rest of object", "off object")]
    assert all(0 <= s <= 1 for s in shares) and sum(shares) == pytest.approx(1.0, abs=1e-5)


def test_orientation_scores_count_right_answers():
    from gainbook.studies import orientation_scores
    from gainlib.data import SyntheticOrientation

    data = SyntheticOrientation("test_shifted", 12, variant="camera", image_size=32, saliency=None)
    model = _orientation_model(2).eval()
    with torch.no_grad():
        images = torch.stack([data[i]["image"] for i in range(len(data))])
        predicted = model(images).argmax(1).numpy()
    expected = float((predicted == data.labels.argmax(1)).mean())
    assert orientation_scores(model, data)["accuracy"] == pytest.approx(expected)
