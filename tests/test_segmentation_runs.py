"""gainbook.segmentation_runs: cues over a dataset, the three segmentation frameworks, the cache and the scores."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gainlib.data.protocol import collate_samples
from gainbook.runs import DataSpec, RunSpec, load_split, train_run
from gainlib.segmentation import SegmentationConfig, localization_cues
from gainlib.trainer import TrainConfig
from gainbook.segmentation_runs import SegmentationSpec, segmentation_spec, train_segmentation
from gainlib.segmentation import attention_cues, predict_segmentation, segmentation_scores

TINY = DataSpec(image_size=32, n_train=24, n_eval=8)
CUE_MODEL = RunSpec(TINY, TrainConfig(mode="classifier", epochs=1, batch_size=8, seed=0), widths=(4, 8))


def _spec(framework: str = "gain", **overrides) -> SegmentationSpec:
    cues = None if framework == "supervised" else CUE_MODEL
    return segmentation_spec("ci", TINY, framework, cues, **({"epochs": 2} | overrides))


def test_spec_checks_its_framework_and_cue_source():
    with pytest.raises(ValueError, match="loss"):
        segmentation_spec("ci", TINY, "crf", CUE_MODEL)
    with pytest.raises(ValueError, match="cues_from"):
        SegmentationSpec(TINY, SegmentationConfig(loss="gain"))
    with pytest.raises(ValueError, match="cues_from"):
        SegmentationSpec(TINY, SegmentationConfig(loss="supervised"), CUE_MODEL)
    with pytest.raises(TypeError, match="SegmentationConfig"):
        SegmentationSpec(TINY, "gain", CUE_MODEL)
    with pytest.raises(KeyError, match="profile"):
        segmentation_spec("huge", TINY, "gain", CUE_MODEL)


def test_profile_settings_go_to_the_trainer_or_the_spec():
    spec = _spec("sec", lr=0.5, lr_step=2.0, widths=(4, 4, 8), fg_threshold=0.3, seed=2)
    assert (spec.framework, spec.train.loss, spec.train.seed) == ("sec", "sec", 2)
    assert (spec.train.epochs, spec.train.lr, spec.train.lr_step) == (2, 0.5, 2.0)
    assert (spec.widths, spec.fg_threshold) == ((4, 4, 8), 0.3)
    # the runtime fields are no part of the key, every setting that trains is
    assert set(spec.to_dict()["train"]) == set(spec.train.run_settings())
    assert "device" not in spec.to_dict()["train"]
    with pytest.raises(TypeError, match="device"):
        _spec(device="cuda")


def test_key_follows_the_settings_and_the_cue_model():
    base = _spec()
    assert base.key() == _spec().key() and base.key().startswith("seg-gain-")
    assert _spec(lr=0.5).key() != base.key()
    assert _spec(seed=1).key() != base.key()
    other_cues = dataclasses.replace(CUE_MODEL, train=dataclasses.replace(CUE_MODEL.train, seed=1))
    assert dataclasses.replace(base, cues_from=other_cues).key() != base.key()
    assert _spec("sec").key() != base.key()


def test_attention_cues_are_localization_cues_of_the_models_grad_cam(tmp_path):
    model = train_run(CUE_MODEL, tmp_path, device="cpu").model
    train = load_split(TINY, "train")
    cues = attention_cues(model, train, (8, 8), batch_size=5)          # several batches
    assert cues.shape == (len(train), TINY.num_classes + 1, 8, 8) and cues.dtype == torch.bool
    batch = collate_samples([train[i] for i in range(len(train))])
    out = model.attention(batch["image"], labels=batch["labels"])
    expected = localization_cues(out.maps.detach(), out.classes, out.valid, TINY.num_classes,
                                 batch["saliency"], size=(8, 8))
    assert torch.equal(cues, expected)
    # Only the classes of each image get foreground cues.
    absent = ~batch["labels"].bool()
    assert not cues[:, 1:][absent].any()


@pytest.mark.parametrize("framework", ["gain", "sec", "supervised"])
def test_each_framework_trains_once_then_loads_the_same_network(tmp_path, framework):
    pytest.importorskip("pydensecrf")
    spec = _spec(framework)
    first = train_segmentation(spec, tmp_path)
    assert not first.cached and len(first.history) == 2
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in first.history)
    again = train_segmentation(spec, tmp_path)
    assert again.cached and again.history == first.history
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_supervised_training_fits_the_masks(tmp_path):
    spec = _spec("supervised", epochs=8, lr=0.05)
    run = train_segmentation(spec, tmp_path)
    assert run.history[-1]["loss"] < 0.6 * run.history[0]["loss"]
    train = load_split(TINY, "train")
    scores = segmentation_scores(predict_segmentation(run.model, train), train, train.classes)
    assert scores["background"] > 0.5


def test_segmentation_scores_agree_with_torchmetrics():
    metrics = pytest.importorskip("torchmetrics.classification")
    val = load_split(TINY, "val")
    torch.manual_seed(0)
    pred = torch.randint(0, TINY.num_classes + 1, (len(val), 32, 32))
    target = torch.stack([torch.as_tensor(val[i]["mask"]) for i in range(len(val))])
    pred[0, :2] = 0
    target = target.clone()
    target[0, :2] = 255          # ignored pixels must not count
    ours = segmentation_scores(pred, _Masks(val, target), val.classes)
    reference = metrics.MulticlassJaccardIndex(TINY.num_classes + 1, average="none", ignore_index=255)
    per_class = reference(pred, target)
    names = ["background", *val.classes]
    for name, value in zip(names, per_class):
        assert ours[name] == pytest.approx(float(value), abs=1e-6)
    assert ours["mIoU"] == pytest.approx(float(per_class.mean()), abs=1e-6)
    with pytest.raises(ValueError, match="predictions"):
        segmentation_scores(pred[:2], val, val.classes)


class _Masks:
    """``val`` with its masks replaced."""

    def __init__(self, dataset, masks):
        self.dataset, self.masks = dataset, masks

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return {**self.dataset[i], "mask": self.masks[i]}


def test_crf_prediction_keeps_the_shape_and_labels(tmp_path):
    pytest.importorskip("pydensecrf")
    run = train_segmentation(_spec("supervised"), tmp_path)
    val = load_split(TINY, "val")
    plain = predict_segmentation(run.model, val)
    refined = predict_segmentation(run.model, val, crf=True)
    assert plain.shape == refined.shape == (len(val), 32, 32)
    assert int(refined.max()) <= TINY.num_classes and int(refined.min()) >= 0


def _learning_rate(spec, t: float) -> float:
    from gainlib.segmentation import SegmentationTrainer, SmallFCN

    config = dataclasses.replace(spec.train, device="cpu")
    return SegmentationTrainer(SmallFCN(3, (4, 4, 4)), config).learning_rate(t)


def test_paper_profile_steps_the_learning_rate_as_sec():
    spec = segmentation_spec("paper", TINY, "sec", CUE_MODEL)
    assert spec.network == "largefov" and spec.train.batch_size == 15
    assert [_learning_rate(spec, e) for e in (0, 2.7, 2.9, 5.7, 8.5)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-5, 1e-6])
    cosine = _spec()
    assert _learning_rate(cosine, 0) == cosine.train.lr
    assert _learning_rate(cosine, cosine.train.epochs) == pytest.approx(0)
