"""Threshold-free metrics of gainlib.metrics: AUROC (against scikit-learn and torchmetrics),
attention mass and deletion/insertion curves (hand-computed on a linear "model")."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torchmetrics.classification import BinaryAUROC

from gainlib.metrics import attention_mass, binary_auroc, deletion_insertion

# --------------------------------------------------------------------------- AUROC


def test_binary_auroc_hand_computed():
    # scikit-learn's documented example: 3 of the 4 positive-negative pairs are ordered right.
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    targets = torch.tensor([0, 0, 1, 1])
    assert binary_auroc(scores, targets).item() == pytest.approx(0.75)
    # A tie between a positive and a negative counts half: pairs (1 vs 1) = 0.5, (2 vs 1) = 1.
    assert binary_auroc(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0, 1, 1])).item() == pytest.approx(0.75)
    # Every score on the same side of any threshold, yet perfectly separated: AUC 1.
    assert binary_auroc(torch.tensor([-5.0, -4.0, -3.0, -2.0]),
                        torch.tensor([False, False, True, True])).item() == pytest.approx(1.0)
    # Reversed order: 0, not NaN or 1.
    assert binary_auroc(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1, 0, 0])).item() == pytest.approx(1.0)
    assert binary_auroc(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1, 0, 0])).item() == pytest.approx(0.0)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_auroc_matches_sklearn_and_torchmetrics(seed, tied):
    g = torch.Generator().manual_seed(seed)
    n = 200
    targets = (torch.rand(n, generator=g) < 0.3).long()
    scores = torch.randn(n, generator=g) + 0.8 * targets
    if tied:  # few distinct values: many ties within and across the classes
        scores = torch.round(scores * 2) / 2
    ours = binary_auroc(scores, targets).item()
    assert ours == pytest.approx(roc_auc_score(targets.numpy(), scores.numpy()), abs=1e-6)
    assert ours == pytest.approx(BinaryAUROC(thresholds=None)(scores, targets).item(), abs=1e-6)
    # any strictly monotone transform gives the same AUC
    assert binary_auroc(torch.sigmoid(scores), targets).item() == pytest.approx(ours, abs=1e-6)


def test_binary_auroc_columns_and_undefined():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(50, 3, generator=g)
    targets = (torch.rand(50, 3, generator=g) < 0.5).long()
    targets[:, 2] = 1  # no negative: undefined
    per_column = binary_auroc(scores, targets)
    assert per_column.shape == (3,)
    for c in range(2):
        assert per_column[c].item() == pytest.approx(roc_auc_score(targets[:, c], scores[:, c]), abs=1e-6)
    assert math.isnan(per_column[2].item())
    assert math.isnan(binary_auroc(torch.tensor([0.2, 0.3]), torch.tensor([0, 0])).item())


def test_binary_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        binary_auroc(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        binary_auroc(torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="0/1"):
        binary_auroc(torch.tensor([0.1, 0.2]), torch.tensor([0, 2]))


# --------------------------------------------------------------------------- attention mass


def test_attention_mass_hand_computed():
    maps = torch.tensor([
        [[0.6, 0.2], [0.2, 0.0]],   # 0.6 of 1.0 on the object pixel (0, 0)
        [[0.0, 0.0], [0.0, 0.0]],   # points nowhere: NaN
        [[2.0, 2.0], [2.0, 2.0]],   # flat: the object's share of the image, 1/4
    ])
    masks = torch.tensor([[[1, 0], [0, 0]]] * 3)
    mass = attention_mass(maps, masks)
    torch.testing.assert_close(mass[[0, 2]], torch.tensor([0.6, 0.25]))
    assert math.isnan(mass[1].item())
    torch.testing.assert_close(attention_mass(maps, masks, reduction="mean"), torch.tensor(0.425))
    # [N, 1, H, W] maps (a channel dim) are accepted
    torch.testing.assert_close(attention_mass(maps[:, None], masks.bool())[0], torch.tensor(0.6))


def test_attention_mass_valid_and_errors():
    maps = torch.tensor([[[1.0, 1.0, 2.0]]])
    masks = torch.tensor([[[1, 0, 0]]])
    valid = torch.tensor([[[True, True, False]]])
    torch.testing.assert_close(attention_mass(maps, masks, valid=valid), torch.tensor([0.5]))
    torch.testing.assert_close(attention_mass(maps, masks), torch.tensor([0.25]))
    with pytest.raises(ValueError, match="non-negative"):
        attention_mass(-maps, masks)
    with pytest.raises(ValueError, match="same shape"):
        attention_mass(maps, torch.ones(1, 2, 2))


# --------------------------------------------------------------------------- deletion / insertion


def _linear_model(x: torch.Tensor) -> torch.Tensor:
    """Class 0 scores the sum of all pixel values, class 1 its negative."""
    total = x.sum(dim=(1, 2, 3))
    return torch.stack([total, -total], 1)


# Pixel values 4, 3 / 2, 1 in every channel (a pixel is worth 3x its value to class 0); the map
# ranks (0, 1) > (1, 0) > (1, 1) > (0, 0), so pixels go in the value order 3, 2, 1, 4.
_IMAGE = torch.tensor([[4.0, 3.0], [2.0, 1.0]]).expand(3, 2, 2)[None]
_MAP = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])


def test_deletion_insertion_hand_computed():
    out = deletion_insertion(_linear_model, _IMAGE, _MAP, torch.tensor([0]), steps=4, fill=0.0)
    torch.testing.assert_close(out["fractions"], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(out["deletion"], torch.tensor([[30.0, 21.0, 15.0, 12.0, 0.0]]))
    torch.testing.assert_close(out["insertion"], torch.tensor([[0.0, 9.0, 15.0, 18.0, 30.0]]))
    # trapezoids of width 1/4: (25.5 + 18 + 13.5 + 6) / 4 and (4.5 + 12 + 16.5 + 24) / 4
    torch.testing.assert_close(out["deletion_auc"], torch.tensor([15.75]))
    torch.testing.assert_close(out["insertion_auc"], torch.tensor([14.25]))
    # fill 1: a deleted pixel is worth 3 instead of 0; class 1 follows the negated score
    out = deletion_insertion(_linear_model, _IMAGE, _MAP[:, None], torch.tensor([1]), steps=4, fill=1.0)
    torch.testing.assert_close(out["deletion"], -torch.tensor([[30.0, 24.0, 21.0, 21.0, 12.0]]))
    torch.testing.assert_close(out["insertion"], -torch.tensor([[12.0, 18.0, 21.0, 21.0, 30.0]]))
    # two steps over four pixels: two pixels a step
    out = deletion_insertion(_linear_model, _IMAGE, _MAP, torch.tensor([0]), steps=2)
    torch.testing.assert_close(out["deletion"], torch.tensor([[30.0, 15.0, 0.0]]))


def _block_map(n: int = 3, size: int = 8) -> torch.Tensor:
    maps = torch.zeros(n, size, size)
    maps[:, :2, :2] = torch.tensor([[4.0, 3.0], [2.0, 1.0]])   # the attended 2 x 2 block
    return maps


def _deleted_in_block(x: torch.Tensor) -> torch.Tensor:
    """Score = how many pixels of the top-left 2 x 2 block are filled (fill = -7)."""
    hits = (x[:, 0, :2, :2] == -7).flatten(1).sum(1).float()
    return torch.stack([hits, torch.zeros_like(hits)], 1)


def _deleted_anywhere(x: torch.Tensor) -> torch.Tensor:
    hits = (x[:, 0] == -7).flatten(1).sum(1).float()
    return torch.stack([hits, torch.zeros_like(hits)], 1)


@pytest.mark.parametrize("order", ["attention", "random", "shifted"])
def test_baselines_move_the_same_number_of_pixels(order):
    images = torch.zeros(3, 3, 8, 8)
    out = deletion_insertion(_deleted_anywhere, images, _block_map(), torch.zeros(3), steps=8,
                             fill=-7.0, order=order, seed=1)
    expected = torch.arange(0, 65, 8).float().expand(3, 9)
    torch.testing.assert_close(out["deletion"], expected)
    torch.testing.assert_close(out["insertion"], 64 - expected)


def test_shifted_baseline_erases_a_region_of_the_same_area_elsewhere():
    images = torch.zeros(3, 3, 8, 8)
    classes = torch.zeros(3, dtype=torch.long)
    # 16 steps of 4 pixels: step 1 erases exactly the attended block ...
    att = deletion_insertion(_deleted_in_block, images, _block_map(), classes, steps=16, fill=-7.0)
    assert att["deletion"][:, 1].tolist() == [4.0, 4.0, 4.0]
    # ... the shifted baseline a 2 x 2 block moved by 2..6 pixels each way: none of it
    shifted = deletion_insertion(_deleted_in_block, images, _block_map(), classes, steps=16,
                                 fill=-7.0, order="shifted", seed=0)
    assert shifted["deletion"][:, 1].tolist() == [0.0, 0.0, 0.0]


def test_deletion_insertion_determinism_and_ties():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 6, 6, generator=g)
    maps = torch.zeros(4, 6, 6)   # all ties: the order is the seeded random one
    classes = torch.zeros(4, dtype=torch.long)
    a = deletion_insertion(_linear_model, images, maps, classes, steps=6, seed=5)
    b = deletion_insertion(_linear_model, images, maps, classes, steps=6, seed=5)
    c = deletion_insertion(_linear_model, images, maps, classes, steps=6, seed=6)
    torch.testing.assert_close(a["deletion"], b["deletion"])
    assert not torch.allclose(a["deletion"][:, 1:-1], c["deletion"][:, 1:-1])
    # a flat map is the random order with the same seed (not row by row from the top)
    r = deletion_insertion(_linear_model, images, maps, classes, steps=6, order="random", seed=5)
    torch.testing.assert_close(a["deletion"], r["deletion"])


def test_deletion_insertion_errors():
    with pytest.raises(ValueError, match="maps must be"):
        deletion_insertion(_linear_model, _IMAGE, torch.zeros(1, 3, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion(_linear_model, _IMAGE, _MAP, torch.tensor([0]), steps=0)
    with pytest.raises(ValueError, match="order"):
        deletion_insertion(_linear_model, _IMAGE, _MAP, torch.tensor([0]), order="top")
    with pytest.raises(ValueError, match="one label index per image"):
        deletion_insertion(_linear_model, _IMAGE, _MAP, torch.tensor([0, 1]))


def test_balanced_threshold_maximises_balanced_accuracy_like_a_brute_force_search():
    from gainlib.metrics import balanced_threshold

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        scores = torch.randn(40, generator=generator)
        targets = (torch.rand(40, generator=generator) < 0.3) | (scores > 1.0)
        if targets.all() or not targets.any():
            continue
        best = balanced_threshold(scores, targets)

        def balanced(t: float) -> float:
            said = scores > t
            return float((said & targets).sum() / targets.sum()
                         + (~said & ~targets).sum() / (~targets).sum()) / 2

        grid = torch.linspace(float(scores.min()) - 1, float(scores.max()) + 1, 2001)
        assert balanced(best) >= max(balanced(float(t)) for t in grid) - 1e-12
    with pytest.raises(ValueError, match="positive and negative"):
        balanced_threshold(torch.tensor([0.2, 0.3]), torch.tensor([1, 1]))
