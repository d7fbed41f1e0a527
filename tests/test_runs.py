"""The book's run cache: keys, reuse, fine-tuning chains, profiles and the region measurements."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gainbook.runs import DataSpec, RunSpec, load_split, train_run
from gainbook.studies import attention_by_region
from gainbook.profiles import book_profile
from gainlib.trainer import TrainConfig

TINY = DataSpec(image_size=32, n_train=24, n_eval=8)


def _spec(**train) -> RunSpec:
    settings = dict(mode="classifier", epochs=1, batch_size=8, seed=0) | train
    return RunSpec(TINY, TrainConfig(**settings), widths=(4, 8))


def test_key_depends_on_every_setting_but_runtime_ones():
    base = _spec()
    assert base.key() == _spec().key()
    assert base.key().startswith("classifier-")
    assert _spec(lr=0.5).key() != base.key()
    assert _spec(seed=1).key() != base.key()
    assert dataclasses.replace(base, data=dataclasses.replace(TINY, context_bias=0.5)).key() != base.key()
    assert dataclasses.replace(base, pixel_labels=3).key() != base.key()
    # device, progress and the checkpoint folder do not change the weights' identity
    assert _spec(device="cpu", progress=False, checkpoint_dir="/elsewhere").key() == base.key()


def test_train_run_trains_once_then_loads_the_same_weights(tmp_path):
    spec = _spec()
    first = train_run(spec, tmp_path, device="cpu")
    assert not first.cached and (first.path / "model.pt").exists()
    assert not (first.path / "last.pt").exists()            # optimizer state dropped when done
    second = train_run(spec, tmp_path, device="cpu")
    assert second.cached and second.history == first.history
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert not second.model.training


def test_fine_tuned_run_starts_from_its_init_run(tmp_path):
    base = _spec()
    tuned = dataclasses.replace(base, train=TrainConfig(mode="gain", epochs=1, batch_size=8, lr=0.0,
                                                        momentum=0.0, weight_decay=0.0), init=base)
    result = train_run(tuned, tmp_path, device="cpu")
    init = train_run(base, tmp_path, device="cpu")
    assert init.cached                                       # trained on the way, then reused
    assert tuned.total_epochs() == 2
    # lr 0 and no weight decay: the weights are the init run's (BatchNorm statistics move)
    for name, value in result.model.state_dict().items():
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(value, init.model.state_dict()[name]), name


def test_extra_labels_flag_a_copy_not_the_shared_split(tmp_path):
    spec = dataclasses.replace(_spec(mode="gain_ext"), pixel_labels=5)
    train_run(spec, tmp_path, device="cpu")
    assert not load_split(TINY, "train").use_mask.any()


def test_book_profile_overrides():
    profile = book_profile("ci", image_size=48, seeds=[3, 4], epochs=None)
    assert profile.data.image_size == 48 and profile.seeds == (3, 4)
    assert profile.finetuned(3, "gain").init == profile.classifier(3)
    assert profile.finetuned(3, "gain", sigma=0.3).gain.sigma == 0.3
    with pytest.raises(TypeError, match="unknown profile settings"):
        book_profile("ci", learning_rate=1.0)
    with pytest.raises(KeyError, match="unknown profile"):
        book_profile("large")


def test_seeds_spread_over_training_set_draws_that_change_only_the_training_images():
    profile = book_profile("ci", seeds=[0, 1, 2], draws=[0, 1])
    assert [profile.draw_of(s) for s in profile.seeds] == [0, 1, 0]
    first, second = profile.classifier(0), profile.classifier(1)
    assert (first.data.train_draw, second.data.train_draw) == (0, 1)
    assert profile.finetuned(1, "gain").data == second.data == profile.data_for(1)
    assert first.key() != dataclasses.replace(second, train=first.train).key()
    drawn = dataclasses.replace(TINY, train_draw=1)
    assert not np.array_equal(load_split(drawn, "train").labels, load_split(TINY, "train").labels)
    for split in ("val", "no_context"):   # every run is scored on the same held-out images
        assert np.array_equal(load_split(drawn, split).masks, load_split(TINY, split).masks)
    with pytest.raises(ValueError, match="train_draw"):
        dataclasses.replace(TINY, train_draw=-1)
    with pytest.raises(ValueError, match="draws"):
        book_profile("ci", draws=[])


def test_the_labelled_subset_is_redrawn_with_the_training_set():
    from gainbook.runs import training_set

    spec = dataclasses.replace(_spec(mode="gain_ext"), pixel_labels=5)
    other = dataclasses.replace(spec, data=dataclasses.replace(spec.data, train_draw=1))
    assert training_set(spec).use_mask.sum() == training_set(other).use_mask.sum() == 5
    assert spec.data.split_seed("train") != other.data.split_seed("train")
    assert other.data.split_seed("val") == spec.data.split_seed("val")


def test_orientation_data_and_profiles():
    from gainbook.profiles import orientation_profile

    camera = DataSpec("camera", image_size=32, n_train=8, n_eval=4)
    assert camera.num_classes == 2 and DataSpec("workpiece").num_classes == 4
    train, val = load_split(camera, "train"), load_split(camera, "val")
    assert len(train) == 8 and len(val) == 4 and val.split == "test_same"    # val: same domain
    assert (train.masks > 0).sum() > 0 and train.masks.max() <= 2
    shifted = load_split(camera, "test_shifted")
    assert shifted.domain == "shifted"
    workpiece = orientation_profile("workpiece", "default", seeds=[5])
    assert workpiece.backbone == "small_cnn" and workpiece.seeds == (5,)
    assert orientation_profile("workpiece", "ci").backbone == "densenet_small"   # still tested
    assert workpiece.finetuned(5, "gain_ext", box_labels=20).data.dataset == "workpiece"
    with pytest.raises(KeyError, match="unknown study"):
        orientation_profile("lamp", "ci")
    with pytest.raises(KeyError, match="unknown profile"):
        orientation_profile("camera", "large")


def test_voc_without_root_says_what_is_missing():
    with pytest.raises(ValueError, match="voc_root"):
        load_split(DataSpec("voc"), "train")


class _PerfectModel(torch.nn.Module):
    """Stands in for a GAIN model whose attention is exactly a given set of pixels."""

    def __init__(self, scenes, region):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.scenes, self.region = scenes, region

    def attention(self, images, labels):
        from gainlib.attention import AttentionMaps, positive_classes

        classes, valid = positive_classes(labels)
        maps = torch.zeros(*classes.shape, *images.shape[-2:])
        for b in range(len(images)):
            index = self._index(images[b])
            for k in range(classes.shape[1]):
                if valid[b, k]:
                    obj = self.scenes.masks[index] == classes[b, k].item() + 1
                    region = obj & self.scenes.part_masks[index] if self.region == "part" else obj
                    maps[b, k] = torch.from_numpy(region.astype(np.float32))
        return AttentionMaps(torch.zeros(len(images), 4), maps, classes, valid)

    def _index(self, image):
        for i in range(len(self.scenes)):
            if torch.equal(self.scenes[i]["image"], image):
                return i
        raise AssertionError("image not found")


def test_attention_by_region_on_known_maps():
    scenes = load_split(TINY, "val")
    whole = attention_by_region(_PerfectModel(scenes, "object"), scenes)
    assert len(whole) == int(scenes.labels.sum())
    assert np.allclose(whole["iou"], 1) and np.allclose(whole["coverage"], 1)
    assert np.allclose(whole["elsewhere"], 0)
    part = attention_by_region(_PerfectModel(scenes, "part"), scenes)
    assert np.allclose(part["part"].dropna(), 1) and np.allclose(part["body"], 0)
    assert (part["iou"] < 1).all()


def test_region_records_average_each_split_per_seed():
    from gainbook.studies import region_records

    scenes = load_split(TINY, "val")
    models = {"perfect": {0: _PerfectModel(scenes, "object"), 1: _PerfectModel(scenes, "part")}}
    records = region_records(models, TINY, ["val"])
    assert [(r["method"], r["split"], r["seed"]) for r in records] == [
        ("perfect", "val", 0), ("perfect", "val", 1)]
    assert records[0]["iou"] == pytest.approx(1.0) and records[0]["body"] == pytest.approx(1.0)
    assert records[1]["body"] == pytest.approx(0.0)
    expected = attention_by_region(models["perfect"][1], scenes)["iou"].mean()
    assert records[1]["iou"] == pytest.approx(expected)
    drawn = region_records(models, TINY, ["val"], draw_of=lambda seed: 7 * seed)
    assert [r["draw"] for r in drawn] == [0, 7] and "draw" not in records[0]


def test_mining_scores_match_a_direct_computation(tmp_path):
    from gainlib import masked_image, soft_mask
    from gainlib.data.protocol import collate_samples
    from gainbook.studies import mining_scores

    model = train_run(_spec(), tmp_path, device="cpu").model
    scenes = load_split(TINY, "val")
    scores = mining_scores(model, scenes, batch_size=3)          # batches that split the set
    batch = collate_samples([scenes[i] for i in range(len(scenes))])
    out = model.attention(batch["image"], labels=batch["labels"])
    mask = soft_mask(out.maps)
    with torch.no_grad():
        erased = masked_image(batch["image"], mask, model.config.fill,
                              blur_sigma=model.config.blur_sigma)    # the model's own fill
        after = torch.sigmoid(model(erased[out.valid]))
    after = after.gather(1, out.classes[out.valid][:, None])[:, 0]
    assert scores["s(I*)"] == pytest.approx(after.mean().item(), abs=1e-6)
    assert scores["survives"] == pytest.approx((after > 0.5).float().mean().item())
    assert scores["erased"] == pytest.approx(mask[out.valid].mean().item(), abs=1e-6)


def test_the_pretrained_profile_fine_tunes_the_imagenet_network():
    from gainbook.profiles import PROFILES, book_profile

    settings = book_profile("pretrained")
    spec = settings.finetuned(0, "gain")
    assert (spec.backbone, spec.weights, spec.widths) == ("efficientnet_lite0", "DEFAULT", None)
    assert spec.init.weights == "DEFAULT" and settings.data.image_size == 128
    assert PROFILES["pretrained"].camera == PROFILES["default"].camera


def test_protocol_variants_change_only_their_setting():
    from gainbook.chapters import extra_supervision, protocol_variant

    profile = book_profile("ci")
    reference = extra_supervision("p", 5)
    natural = protocol_variant(reference, "natural")
    scratch = protocol_variant(reference, "scratch")
    assert (reference.label, natural.label, scratch.label) == (
        "GAIN_ext^p (5)", "GAIN_ext^p (5), S_e natural", "GAIN_ext^p (5), from scratch")
    base = reference.spec(profile, 0)
    assert base.train.ext_sampling == "cycle" and base.init == profile.classifier(0)
    assert natural.spec(profile, 0) == dataclasses.replace(
        base, train=dataclasses.replace(base.train, ext_sampling="natural"))
    fresh = scratch.spec(profile, 0)
    assert fresh.init is None and fresh.train.mode == "gain_ext" and fresh.pixel_labels == 5
    # From scratch is the classifier's own training with the mode's streams.
    classifier = profile.classifier(0).train
    assert dataclasses.replace(fresh.train, mode="classifier") == classifier
    assert fresh.gain == base.gain
    assert len({base.key(), natural.spec(profile, 0).key(), fresh.key()}) == 3
    with pytest.raises(KeyError, match="unknown protocol variant"):
        protocol_variant(reference, "longer")


def test_a_split_is_rendered_once_and_shared_through_the_cache(tmp_path, monkeypatch):
    """load_split keeps a rendered split on disk: another process (here: the same one with its
    memory cache cleared) loads the same samples instead of rendering them; the evaluation
    splits of two draws share one file, their training splits do not; a damaged file is
    rendered again."""
    from gainbook import runs

    monkeypatch.setenv("GAIN_BOOK_CACHE", str(tmp_path))
    load_split.cache_clear()
    first = load_split(TINY, "val")
    files = sorted((tmp_path / "splits").glob("*.npz"))
    assert len(files) == 1
    rendered = []
    monkeypatch.setattr(runs, "_build_split", lambda *a: rendered.append(a) or 1 / 0)
    load_split.cache_clear()
    again = load_split(dataclasses.replace(TINY, train_draw=1), "val")   # same pixels, same file
    assert not rendered and np.array_equal(first.images, again.images)
    assert runs._split_file(TINY, "train") != runs._split_file(
        dataclasses.replace(TINY, train_draw=1), "train")
    monkeypatch.undo()
    monkeypatch.setenv("GAIN_BOOK_CACHE", str(tmp_path))
    files[0].write_bytes(b"damaged")
    load_split.cache_clear()
    with pytest.warns(UserWarning, match="rendering 'val' again"):
        repaired = load_split(TINY, "val")
    assert np.array_equal(repaired.images, first.images)
    load_split.cache_clear()
