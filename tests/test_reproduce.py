"""gainbook.reproduce: the plan of the paper-scale run (chapter 8), its tables and its command line.
The plan is checked without data or weights (specs only); one tiny ci run trains on the generated
VOC tree."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from gainbook import reproduce
from gainlib.data import mark_extra_labels
from gainlib.data.voc_layout import DataFileError
from gainbook.cache import Trained
from gainbook.profiles import book_profile
from gainbook.runs import load_split
from gainbook.paper import (TABLE_1_EXTRA, TABLE_1_IMAGE_LEVEL, TABLE_4, VOC_TRAIN_IMAGES, extra_label_count)
from fixtures.tiny_voc import make_tiny_voc
from gainbook.profiles import segmentation_settings

PAPER = book_profile("paper")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_voc(tmp_path_factory.mktemp("voc"), n_voc_train=6, n_voc_val=4, n_sbd_only=6,
                         prepared=True)


def test_attention_runs_at_paper_scale_are_the_papers_settings():
    runs = reproduce.attention_runs(PAPER, 0, n_train=VOC_TRAIN_IMAGES)
    assert [r.name for r in runs] == ["Grad-CAM", "GAIN", "GAIN_ext^b (1464)", "GAIN_ext^p (1464)"]
    assert [r.spec.train.mode for r in runs] == ["classifier", "gain", "gain_ext", "gain_ext"]
    assert [(r.spec.box_labels, r.spec.pixel_labels) for r in runs] == [(0, 0), (0, 0), (1464, 0), (0, 1464)]
    base = PAPER.classifier(0)
    for run in runs:
        spec = run.spec
        assert (spec.backbone, spec.weights, spec.data.dataset, spec.data.image_size) == ("vgg16", "DEFAULT", "voc", 321)
        assert (spec.train.epochs, spec.train.lr, spec.train.batch_size) == (35, 1e-5, 16)
        assert spec.init == base and run.seed == 0          # all fine-tuned from one classifier
    assert base.train.epochs == 10 and base.train.lr == 1e-3
    assert [r.table_7_method for r in runs] == ["VGG (Grad-CAM)", "GAIN", None, "GAIN_ext^p, 78 boat masks"]


def test_extra_label_counts_are_scaled_to_the_training_set():
    runs = reproduce.attention_runs(book_profile("ci"), 1, (200, 1464), n_train=1500)
    ext = [(r.method, r.paper_labels, r.labels) for r in runs[2:]]
    assert ext == [("GAIN_ext^b", 200, extra_label_count(200, 1500)), ("GAIN_ext^p", 200, 28),
                   ("GAIN_ext^b", 1464, 207), ("GAIN_ext^p", 1464, 207)]
    assert all(r.seed == 1 for r in runs)
    with pytest.raises(ValueError, match="too small"):
        reproduce.attention_runs(book_profile("ci"), 0, (200,), n_train=3)


def test_the_training_set_size_is_read_from_the_data(tiny):
    settings = book_profile("ci", dataset="voc", voc_root=str(tiny.root))
    runs = reproduce.attention_runs(settings, 0)
    n = len(tiny.lists["train_aug"])
    assert runs[-1].labels == extra_label_count(1464, n) >= 1


def test_segmentation_runs_are_table_1s_rows_with_the_papers_networks():
    runs = reproduce.attention_runs(PAPER, 0, n_train=VOC_TRAIN_IMAGES)
    jobs = reproduce.segmentation_runs(PAPER, runs)
    rows = [(j.method, j.training_set) for j in jobs]
    assert rows == [("SEC (baseline)", "10K weak"), ("GAIN-SEC", "10K weak"), ("GAIN", "10K weak"),
                    ("GAIN_ext^b-SEC", "10K W + 1.4K B"), ("GAIN_ext^b", "10K W + 1.4K B"),
                    ("GAIN_ext^p-SEC", "10K W + 1.4K P"), ("GAIN_ext^p", "10K W + 1.4K P")]
    paper_rows = {(r["method"], r["training set"]) for r in TABLE_1_IMAGE_LEVEL + TABLE_1_EXTRA}
    assert set(rows) - paper_rows == {("GAIN_ext^p", "10K W + 1.4K P")}       # Table 4's last row
    for job in jobs:
        assert job.spec.cues_from == job.attention.spec and job.spec.seed == 0
        if job.spec.framework == "sec":       # SEC's DeepLab-LargeFOV settings
            expected = segmentation_settings("paper")
        else:                                 # the paper's own framework (Sec. 4.1)
            expected = reproduce.OWN_FRAMEWORK_PAPER
        settings = {**job.spec.train.run_settings(), "network": job.spec.network,
                    "weights": job.spec.weights}
        assert {k: settings[k] for k in expected} == expected
    # 20,000 iterations of 10 images and 8,000 of 15, on 10,582 images
    own = next(j for j in jobs if j.spec.framework == "gain").spec.train
    assert abs(own.epochs * VOC_TRAIN_IMAGES / own.batch_size - 20_000) < 500
    # off the paper's scale, both frameworks keep the profile's networks
    ci_jobs = reproduce.segmentation_runs(book_profile("ci"), reproduce.attention_runs(book_profile("ci"), 0, n_train=100))
    assert {j.spec.network for j in ci_jobs} == {"small_fcn"}


def test_plan_table_counts_the_steps():
    table = reproduce.plan_table(PAPER, n_train=VOC_TRAIN_IMAGES)
    assert len(table) == 1 + 4 + 7
    assert table.loc["classifier (start of all)", "steps"] == 10 * math.ceil(VOC_TRAIN_IMAGES / 16)
    assert table.loc["GAIN_ext^p (1464)", "extra labels"] == "1,464 of 10,582"


def test_tables_hold_the_papers_numbers_and_ours_beside_them():
    paper_only = reproduce.table_1()
    assert list(paper_only.columns) == ["training set", "paper: val mIoU", "paper: test mIoU"]
    assert paper_only.loc["GAIN", "paper: val mIoU"] == 59.4
    assert paper_only.loc["GAIN_ext^p", "paper: val mIoU"] == TABLE_4[-1]["val mIoU"] == 64.1
    records = [{"method": "GAIN", "training set": "10K weak", "seed": s, "val mIoU": v, "val mIoU w/o CRF": 0.5}
               for s, v in [(0, 0.60), (1, 0.62)]]
    table = reproduce.table_1(records)
    assert table.loc["GAIN", "ours: val mIoU (%)"] == "61.0 ± 1.4"
    assert table.loc["GAIN", "ours: seeds"] == 2
    assert table.loc["GAIN-SEC", "ours: val mIoU (%)"] == "–"                  # not measured
    assert paper_only.loc["GAIN_ext^p", "paper: test mIoU"] == "–"           # not in the paper

    assert list(reproduce.table_7(label_counts=(200, 900, 1464)).index) == [
        "VGG (Grad-CAM)", "GAIN", "GAIN_ext^p, 9 boat masks", "GAIN_ext^p, 78 boat masks"]
    seven = reproduce.table_7([{"method": "GAIN", "seed": 0, "boat accuracy": 0.9, "mAP": 0.8, "boat masks": 0}])
    assert seven.loc["GAIN", "paper: VOC val"] == 90
    assert seven.loc["GAIN", "ours: VOC val, boat accuracy (%)"] == "90.0"
    assert (seven["ours: Biased Boat"] == "needs the 100 Biased Boat photographs").all()


def test_results_round_trip(tmp_path):
    path = tmp_path / "deep" / "results.json"
    assert reproduce.load_results(path) is None
    results = {"profile": "paper", "table_1": [{"method": "GAIN", "val mIoU": 0.6}]}
    assert reproduce.save_results(results, path) == path
    assert reproduce.load_results(path) == results
    assert reproduce.RESULTS_PATH.name == "results.json" and reproduce.RESULTS_PATH.parent.name == "reproduction"


def _untrained(settings):
    """The plan of one seed of ``settings`` as training returns it, with untrained networks (as
    :func:`reproduce.train_attention` and :func:`reproduce.train_segmentations` would give them,
    without training anything)."""
    def done(spec, cached):
        return Trained(spec, spec.build().eval(), [{"train_seconds": 1.5}] * 2, Path("unused"), cached, 2.0)

    runs = reproduce.attention_runs(settings, settings.seeds[0])
    attention = [(run, done(run.spec, cached=True)) for run in runs]
    return attention, [(job, done(job.spec, cached=False)) for job in reproduce.segmentation_runs(settings, runs)]


def test_evaluate_reproduction_scores_every_network_on_val(tiny):
    settings = book_profile("ci", dataset="voc", voc_root=str(tiny.root), seeds=[0])
    attention, segmentation = _untrained(settings)
    lines = []
    results = reproduce.evaluate_reproduction(settings, attention, segmentation, device="cpu",
                                              training_seconds=10.0, log=lines.append)
    assert json.loads(json.dumps(results)) == results                       # plain, JSON-able data
    assert (results["profile"], results["smoke test"], results["seeds"]) == ("ci", True, [0])
    assert results["label counts"] == [1464] and results["voc_root"] == settings.data.voc_root
    assert results["environment"]["device"] == "cpu (no GPU)"
    assert results["wall seconds"] == pytest.approx(10.0 + results["evaluation seconds"])
    assert [(r["method"], r["training set"]) for r in results["table_1"]] == [
        (j.method, j.training_set) for j, _ in segmentation]
    assert all(0 <= r[k] <= 1 for r in results["table_1"] for k in ("val mIoU", "val mIoU w/o CRF"))
    assert len(lines) == 7 and lines[0].startswith("[evaluation 1/7] SEC (baseline), 10K weak, seed 0: val mIoU")
    assert [r["method"] for r in results["table_7"]] == [                   # boxes: no Table 7 row
        "VGG (Grad-CAM)", "GAIN", "GAIN_ext^p, 78 boat masks"]
    assert results["table_7"][-1]["boat masks"] == reproduce.boat_masks(attention[-1][0].spec)
    assert all(set(r) == {"method", "seed", "boat accuracy", "mAP", "boat masks"} for r in results["table_7"])
    assert [(r["stage"], r["cached"]) for r in results["runs"]] == (
        [("attention", True)] * 4 + [("segmentation", False)] * 7)
    assert results["runs"][0]["training seconds (history)"] == 3.0
    # what chapter 8 shows of them
    assert reproduce.table_1(results["table_1"], results["label counts"])["ours: seeds"].ne("–").sum() == 7
    assert reproduce.table_7(results["table_7"]).loc["GAIN", "ours: boat masks"] == 0
    assert reproduce.results_status(results).startswith("SMOKE TEST (profile 'ci'")
    measured = {**results, "smoke test": False, "profile": "paper", "environment": {"device": "H100"}}
    assert reproduce.results_status(measured).startswith("Measured: profile 'paper', seeds [0], on H100, written ")
    assert "has not been run yet" in reproduce.results_status(None)
    quiet = reproduce.evaluate_reproduction(settings, attention[:2], [], log=None)
    assert quiet["table_1"] == [] and quiet["training seconds"] is None and quiet["wall seconds"] is None


def test_cli_evaluates_after_training_and_writes_the_results(tiny, tmp_path, capsys, monkeypatch):
    """``--stage all`` trains (here: returns untrained networks), evaluates and writes the JSON;
    the training stages alone write nothing."""
    settings = book_profile("ci", dataset="voc", voc_root=str(tiny.root), seeds=[0])
    attention, segmentation = _untrained(settings)
    monkeypatch.setattr(reproduce, "train_attention", lambda *a, **k: attention)
    monkeypatch.setattr(reproduce, "train_segmentations", lambda *a, **k: segmentation)
    args = ["--profile", "ci", "--voc-root", str(tiny.root), "--device", "cpu", "--seeds", "0",
            "--cache-dir", str(tmp_path / "cache")]
    assert reproduce.main(args + ["--stage", "segmentation"]) == 0
    assert "results written" not in capsys.readouterr().out and not (tmp_path / "cache").exists()
    assert reproduce.main(args) == 0                                  # ci: into the model cache
    out = capsys.readouterr().out
    assert out.count("[evaluation ") == 7 and f"results written to {tmp_path / 'cache' / 'ci-results.json'}" in out
    results = reproduce.load_results(tmp_path / "cache" / "ci-results.json")
    assert results["smoke test"] and len(results["table_1"]) == 7 and results["training seconds"] >= 0
    assert reproduce.main(args + ["--results-file", str(tmp_path / "elsewhere.json")]) == 0
    assert reproduce.load_results(tmp_path / "elsewhere.json")["table_7"] == results["table_7"]


def test_voc_root_must_exist_and_be_prepared(tmp_path, tiny):
    with pytest.raises(DataFileError, match="does not exist.*get_voc.py"):
        reproduce.check_voc_root(tmp_path / "nowhere")
    raw = make_tiny_voc(tmp_path / "raw")
    with pytest.raises(DataFileError, match="SegmentationClassAug.*get_voc.py --root"):
        reproduce.check_voc_root(raw.root)
    assert reproduce.check_voc_root(tiny.root) == tiny.voc
    assert reproduce.check_voc_root(tiny.voc) == tiny.voc
    assert reproduce.resolve_voc_root("data/voc", base=tmp_path) == str(tmp_path / "data" / "voc")
    assert reproduce.resolve_voc_root(tiny.root) == str(tiny.root.resolve())


def test_boat_masks_counts_boats_among_the_masked_images(tiny):
    settings = book_profile("ci", dataset="voc", voc_root=str(tiny.root))
    run = reproduce.attention_runs(settings, 0, (1464,))[-1]
    train = load_split(settings.data, "train")
    flagged = mark_extra_labels(copy.copy(train), pixel=run.spec.pixel_labels, seed=settings.data.seed)
    boat = list(train.classes).index("boat")
    expected = sum(boat in [c for c, _ in tiny.objects[train.ids[i]]] for i in flagged.use_mask.nonzero()[0])
    assert reproduce.boat_masks(run.spec) == expected
    assert reproduce.boat_masks(settings.finetuned(0, "gain")) == 0                 # no masks


def test_cli_explains_a_missing_or_unprepared_voc_root(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as stop:
        reproduce.main(["--profile", "paper"])
    assert stop.value.code == 2 and "--voc-root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reproduce.main(["--voc-root", str(make_tiny_voc(tmp_path / "raw").root)])
    err = capsys.readouterr().err
    assert "not a prepared VOC 2012 + SBD tree" in err and "python data_scripts/get_voc.py --root" in err
    with pytest.raises(SystemExit):
        reproduce.main(["--voc-root", str(tmp_path / "raw"), "--stage", "nothing"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        reproduce.main(["--voc-root", str(tmp_path / "raw"), "--stage", "all"])
    assert "single-process" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_the_ci_plan_once_then_loads_it(tiny, tmp_path, capsys):
    args = ["--profile", "ci", "--voc-root", str(tiny.root), "--device", "cpu", "--cache-dir", str(tmp_path)]
    assert reproduce.main(args + ["--stage", "attention"]) == 0
    out = capsys.readouterr().out
    assert out.count("[attention ") == 4 and "trained in" in out and "[segmentation" not in out
    assert reproduce.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("loaded from the cache") == 4 and out.count("[segmentation ") == 7
    assert "[segmentation 7/7] GAIN_ext^p, cues of GAIN_ext^p" in out
    assert out.count("[evaluation ") == 7 and (tmp_path / "ci-results.json").is_file()   # then evaluated
    # what chapter 8 does with them
    settings = book_profile("ci", dataset="voc", voc_root=reproduce.resolve_voc_root(tiny.root))
    trained = reproduce.train_attention(settings, cache_dir=tmp_path, device="cpu", log=None)
    assert all(t.cached for _, t in trained)
    scores = reproduce.classification_scores(trained[0][1].model, load_split(settings.data, "val"))
    assert set(scores) == {"boat accuracy", "mAP"} and all(0 <= v <= 1 for v in scores.values())


@pytest.mark.slow
def test_attention_stage_under_torchrun_writes_each_model_once(tiny, tmp_path):
    """Two CPU processes (gloo) train the ci plan together; rank 0 alone writes each model, and a
    single-process run then finds every one of them in the cache."""
    import os
    import subprocess
    import sys

    args = ["--profile", "ci", "--voc-root", str(tiny.root), "--device", "cpu",
            "--cache-dir", str(tmp_path), "--stage", "attention"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--standalone", "-m", "gainbook.reproduce", *args],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 processes" in run.stdout and run.stdout.count("trained in") == 4
    assert sorted(p.name for p in tmp_path.glob("*/model.pt")) == ["model.pt"] * 5   # 4 runs + their classifier
    assert not list(tmp_path.glob("*/*.tmp")) and not list(tmp_path.glob("*/last.pt"))
    again = subprocess.run([sys.executable, "-m", "gainbook.reproduce", *args],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("loaded from the cache") == 4
