"""Tests for gainlib.metrics: hand-computed cases and agreement with torchmetrics."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torchmetrics.classification import (
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassJaccardIndex,
    MultilabelAccuracy,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
)

from gainlib.metrics import (
    ConfusionMatrix,
    attention_coverage,
    attention_iou,
    attention_precision,
    attention_scores,
    mean_average_precision,
    multilabel_accuracy,
)


def _nan(x: torch.Tensor) -> bool:
    return bool(torch.isnan(x).all())


# --------------------------------------------------------------------------- attention


def test_attention_metrics_hand_computed():
    maps = torch.tensor(
        [
            [[0.9, 0.5], [0.2, 0.0]],  # attended: (0,0), (0,1) -- 0.5 counts (>=)
            [[0.1, 0.1], [0.1, 0.1]],  # nothing attended
        ]
    )
    masks = torch.tensor(
        [
            [[1, 0], [1, 0]],  # object: (0,0), (1,0)
            [[0, 0], [0, 0]],  # no object
        ]
    )
    # image 0: inter 1, attended 2, object 2, union 3
    torch.testing.assert_close(attention_iou(maps, masks)[0], torch.tensor(1 / 3))
    torch.testing.assert_close(attention_coverage(maps, masks)[0], torch.tensor(0.5))
    torch.testing.assert_close(attention_precision(maps, masks)[0], torch.tensor(0.5))
    # image 1: everything empty -> undefined -> NaN (documented), excluded from means
    assert _nan(attention_iou(maps, masks)[1])
    assert _nan(attention_coverage(maps, masks)[1])
    assert _nan(attention_precision(maps, masks)[1])
    torch.testing.assert_close(attention_iou(maps, masks, reduction="mean"), torch.tensor(1 / 3))
    # a lower threshold attends everything in image 0: IoU 2/4, coverage 1, precision 1/2
    s = attention_scores(maps, masks.bool(), threshold=0.0)
    torch.testing.assert_close(s["iou"][0], torch.tensor(0.5))
    torch.testing.assert_close(s["coverage"][0], torch.tensor(1.0))
    torch.testing.assert_close(s["precision"][0], torch.tensor(0.5))
    # an empty mask with attention is IoU 0 (not NaN), coverage NaN, precision 0
    s = attention_scores(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))
    assert s["iou"].item() == 0.0 and s["precision"].item() == 0.0 and _nan(s["coverage"])


def test_attention_valid_mask_excludes_pixels():
    maps = torch.tensor([[[1.0, 1.0, 0.0, 1.0]]])  # [1, 1, 4] also works: H=1
    masks = torch.tensor([[[1, 0, 1, 1]]])
    valid = torch.tensor([[[True, True, True, False]]])  # last pixel is VOC's 255 border
    # valid pixels: attended {0,1}, object {0,2}: inter 1, union 3
    torch.testing.assert_close(attention_iou(maps, masks, valid=valid), torch.tensor([1 / 3]))
    torch.testing.assert_close(attention_coverage(maps, masks, valid=valid), torch.tensor([0.5]))
    torch.testing.assert_close(attention_precision(maps, masks, valid=valid), torch.tensor([0.5]))
    # without `valid` the last pixel counts: inter 2, union 4
    torch.testing.assert_close(attention_iou(maps, masks), torch.tensor([0.5]))
    # all pixels invalid -> NaN
    assert _nan(attention_iou(maps, masks, valid=torch.zeros_like(valid)))


def test_attention_shapes():
    maps = torch.rand(3, 1, 5, 5)  # channel dim accepted
    masks = torch.rand(3, 5, 5) > 0.5
    assert attention_iou(maps, masks).shape == (3,)
    with pytest.raises(ValueError, match="same shape"):
        attention_iou(torch.rand(3, 4, 4), masks)
    with pytest.raises(ValueError, match="reduction"):
        attention_iou(maps, masks, reduction="sum")


def test_attention_metrics_match_torchmetrics_per_image():
    g = torch.Generator().manual_seed(0)
    n, h, w = 6, 17, 13
    maps = torch.rand(n, h, w, generator=g)
    masks = torch.rand(n, h, w, generator=g) > 0.6
    valid = torch.rand(n, h, w, generator=g) > 0.1
    target = masks.long().masked_fill(~valid, -1)  # torchmetrics' ignore_index
    thr = 0.5  # torchmetrics thresholds with '>', ours with '>=': no ties in random data
    ours = attention_scores(maps, masks, threshold=thr, valid=valid)
    for i in range(n):
        ref_iou = BinaryJaccardIndex(threshold=thr, ignore_index=-1)(maps[i], target[i])
        ref_rec = BinaryRecall(threshold=thr, ignore_index=-1)(maps[i], target[i])
        ref_prec = BinaryPrecision(threshold=thr, ignore_index=-1)(maps[i], target[i])
        torch.testing.assert_close(ours["iou"][i], ref_iou)
        torch.testing.assert_close(ours["coverage"][i], ref_rec)
        torch.testing.assert_close(ours["precision"][i], ref_prec)


# --------------------------------------------------------------------------- multi-label


def test_multilabel_accuracy_hand_computed():
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.3, -0.2]])
    labels = torch.tensor([[1, 0, 0], [1, 0, 1]])
    # predictions (logit > 0): [[1,0,0],[1,1,0]]; logit 0 is negative
    out = multilabel_accuracy(logits, labels)
    torch.testing.assert_close(out["per_label"], torch.tensor([1.0, 0.5, 0.5]))
    torch.testing.assert_close(out["mean"], torch.tensor(2 / 3))
    torch.testing.assert_close(out["exact_match"], torch.tensor(0.5))


def test_multilabel_accuracy_matches_torchmetrics():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 7, generator=g)
    labels = (torch.rand(50, 7, generator=g) > 0.7).long()
    out = multilabel_accuracy(logits, labels)
    probs = torch.sigmoid(logits)
    torch.testing.assert_close(out["per_label"], MultilabelAccuracy(7, average=None)(probs, labels))
    torch.testing.assert_close(out["mean"], MultilabelAccuracy(7, average="macro")(probs, labels))
    torch.testing.assert_close(out["exact_match"], MultilabelExactMatch(7)(probs, labels))


def test_map_hand_computed():
    scores = torch.tensor([[0.9, 0.5], [0.8, 0.5], [0.7, 0.1], [0.6, 0.0]])
    labels = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 0]])
    # class 0: hits at ranks 1 and 3 -> (1 + 2/3) / 2; class 1: tie of a positive and
    # a negative at the top -> precision 1/2 at that single threshold -> AP 0.5
    ap = mean_average_precision(scores, labels, average="none")
    torch.testing.assert_close(ap, torch.tensor([5 / 6, 0.5]))
    torch.testing.assert_close(mean_average_precision(scores, labels), torch.tensor((5 / 6 + 0.5) / 2))
    # a class without positives is skipped (NaN per class), not scored 0
    labels[:, 1] = 0
    assert _nan(mean_average_precision(scores, labels, average="none")[1])
    torch.testing.assert_close(mean_average_precision(scores, labels), torch.tensor(5 / 6))
    assert _nan(mean_average_precision(scores, torch.zeros_like(labels)))


@pytest.mark.parametrize("quantize", [False, True])
def test_map_matches_torchmetrics(quantize):
    g = torch.Generator().manual_seed(2)
    n, c = 64, 6
    scores = torch.randn(n, c, generator=g)
    if quantize:  # many ties
        scores = (scores * 2).round() / 2
    labels = (torch.rand(n, c, generator=g) > 0.6).long()
    labels[:, 4] = 0  # a class with no positive example
    probs = torch.sigmoid(scores)  # same ranking (and ties) as the logits
    ours = mean_average_precision(scores, labels, average="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about the class without positives
        ref = MultilabelAveragePrecision(c, average=None)(probs, labels)
        ref_macro = MultilabelAveragePrecision(c, average="macro")(probs, labels)
    present = labels.sum(0) > 0
    torch.testing.assert_close(ours[present], ref[present])
    # Documented difference: torchmetrics scores the class without positives 0 and
    # averages it in; we skip it.
    assert _nan(ours[4]) and ref[4].item() == 0.0
    torch.testing.assert_close(mean_average_precision(scores, labels), ref[present].mean())
    torch.testing.assert_close(ref_macro, ref.mean())


# --------------------------------------------------------------------------- segmentation


def test_confusion_matrix_hand_computed():
    cm = ConfusionMatrix(3, ignore_index=255)
    target = torch.tensor([[0, 0, 1, 255], [1, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 0], [1, 2, 0, 2]])
    cm.update(pred, target)
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert torch.equal(cm.mat, expected)
    # IoU_c = TP / (row + col - TP)
    torch.testing.assert_close(cm.iou(), torch.tensor([1 / 3, 2 / 3, 1 / 2]))
    torch.testing.assert_close(cm.miou(), torch.tensor((1 / 3 + 2 / 3 + 1 / 2) / 3))
    torch.testing.assert_close(cm.pixel_accuracy(), torch.tensor(4 / 6))
    torch.testing.assert_close(cm.class_accuracy(), torch.tensor([0.5, 1.0, 0.5]))
    # a class absent from both is NaN and left out of the mean
    cm4 = ConfusionMatrix(4).update(pred, target)
    assert _nan(cm4.iou()[3])
    torch.testing.assert_close(cm4.miou(), cm.miou())
    cm.reset()
    assert cm.mat.sum() == 0 and _nan(cm.pixel_accuracy()) and _nan(cm.miou())


def test_confusion_matrix_accepts_scores_and_checks_labels():
    scores = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    a = ConfusionMatrix(3).update(scores, target)
    b = ConfusionMatrix(3).update(scores.argmax(1), target)
    assert torch.equal(a.mat, b.mat)
    with pytest.raises(ValueError, match="labels must be in"):
        ConfusionMatrix(3).update(torch.tensor([0, 3]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must be in"):
        ConfusionMatrix(3).update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="same shape"):
        ConfusionMatrix(3).update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    # no ignore_index: 255 is an error, not skipped
    with pytest.raises(ValueError):
        ConfusionMatrix(3, ignore_index=None).update(torch.tensor([0]), torch.tensor([255]))


def _random_segmentation(seed: int, n: int = 4, c: int = 6, hw: int = 24):
    g = torch.Generator().manual_seed(seed)
    # classes 0..c-2 only: class c-1 is absent from both, as many VOC images' classes
    target = torch.randint(0, c - 1, (n, hw, hw), generator=g)
    pred = torch.randint(0, c - 1, (n, hw, hw), generator=g)
    pred = torch.where(torch.rand(n, hw, hw, generator=g) < 0.5, target, pred)  # better than chance
    target[torch.rand(n, hw, hw, generator=g) < 0.1] = 255
    return pred, target


def test_confusion_matrix_matches_torchmetrics():
    c = 6
    batches = [_random_segmentation(s, c=c) for s in range(3)]
    cm = ConfusionMatrix(c, ignore_index=255)
    tm_none = MulticlassJaccardIndex(c, ignore_index=255, average=None)
    tm_macro = MulticlassJaccardIndex(c, ignore_index=255, average="macro")
    tm_acc = MulticlassAccuracy(c, ignore_index=255, average="micro")
    for pred, target in batches:
        cm.update(pred, target)
        tm_none.update(pred, target)
        tm_macro.update(pred, target)
        tm_acc.update(pred, target)
    ours, ref = cm.iou(), tm_none.compute()
    present = (cm.mat.sum(0) + cm.mat.sum(1)) > 0
    assert present[: c - 1].all() and not present[c - 1]
    torch.testing.assert_close(ours[present], ref[present])
    # Documented difference: torchmetrics reports 0 for the absent class, we report NaN;
    # its macro average excludes the class like our NaN-mean.
    assert _nan(ours[c - 1]) and ref[c - 1].item() == 0.0
    torch.testing.assert_close(cm.miou(), tm_macro.compute())
    torch.testing.assert_close(cm.pixel_accuracy(), tm_acc.compute())


def test_confusion_matrix_ignore_index_inside_the_class_range():
    # ignore_index=0 (e.g. "ignore background"): its pixels are skipped and its IoU is
    # NaN, matching torchmetrics' macro mean that gives that class weight 0.
    pred, target = _random_segmentation(13, c=5)
    target[target == 255] = 0
    cm = ConfusionMatrix(5, ignore_index=0).update(pred, target)
    assert cm.mat[0].sum() == 0 and _nan(cm.iou()[0])
    ref = MulticlassJaccardIndex(5, ignore_index=0, average="macro")(pred, target)
    torch.testing.assert_close(cm.miou(), ref)


def test_confusion_matrix_merge_add_and_accumulation():
    (p1, t1), (p2, t2) = _random_segmentation(10), _random_segmentation(11)
    whole = ConfusionMatrix(6).update(torch.cat([p1, p2]), torch.cat([t1, t2]))
    a, b = ConfusionMatrix(6).update(p1, t1), ConfusionMatrix(6).update(p2, t2)
    total = a + b
    assert torch.equal(total.mat, whole.mat)
    assert torch.equal(a.mat, ConfusionMatrix(6).update(p1, t1).mat)  # `+` leaves a alone
    a += b
    assert torch.equal(a.mat, whole.mat)
    seq = ConfusionMatrix(6).update(p1, t1).update(p2, t2)
    assert torch.equal(seq.mat, whole.mat)
    assert torch.equal(ConfusionMatrix(6).merge(b).mat, b.mat)
    with pytest.raises(ValueError):
        a.merge(ConfusionMatrix(5))
    with pytest.raises(TypeError):
        a.merge(b.mat)


def test_confusion_matrix_all_reduce(tmp_path):
    import torch.distributed as dist

    pred, target = _random_segmentation(12)
    cm = ConfusionMatrix(6).update(pred, target)
    before = cm.mat.clone()
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed without an active process group")
    assert torch.equal(cm.all_reduce().mat, before)  # no process group: no-op
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert torch.equal(cm.all_reduce().mat, before)  # world of one: sum over one rank
    finally:
        dist.destroy_process_group()
    assert math.isclose(cm.miou().item(), ConfusionMatrix(6).update(pred, target).miou().item())
