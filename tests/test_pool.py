"""Independent runs in worker processes: order, errors, dependencies, and the same models as
training them one by one."""

from __future__ import annotations

import math
import os
import signal
import time

import pytest
import torch

from gainbook.profiles import book_profile
from gainbook.runs import train_run, train_runs
from gainbook.runs import load_split
from gainbook.pool import MIN_ITEMS, WorkerDied, run_in_processes
from gainlib.segmentation import predict_segmentation, segmentation_scores
from gainbook.segmentation_runs import segmentation_reports, segmentation_spec, train_segmentations


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def worker_threads(_: int) -> int:
    return torch.get_num_threads()


def finish_time(seconds: float) -> float:
    time.sleep(seconds)
    return time.time()


def test_results_come_back_in_order_from_two_workers():
    results = run_in_processes(math.factorial, [5, 1, 4, 3], workers=2, progress=False)
    assert [value for value, _ in results] == [120, 1, 24, 6]
    assert all(seconds >= 0 for _, seconds in results)
    threads = run_in_processes(worker_threads, range(MIN_ITEMS), workers=2, threads=1, progress=False)
    assert [value for value, _ in threads] == [1] * MIN_ITEMS
    # fewer items than MIN_ITEMS run here, with this process's threads
    assert run_in_processes(worker_threads, [0], workers=2, progress=False)[0][0] == torch.get_num_threads()


def test_a_failing_run_is_named_and_stops_the_pool():
    with pytest.raises(RuntimeError, match="item 3 failed in a worker process: ValueError: three"):
        run_in_processes(fails_on_three, [1, 2, 3, 4], workers=2, progress=False,
                         describe=lambda x: f"item {x}")
    with pytest.raises(ValueError, match="three"):           # one worker: runs here, unwrapped
        run_in_processes(fails_on_three, [3], workers=1, progress=False)
    with pytest.raises(ValueError, match="at least 1"):
        run_in_processes(math.factorial, [1], workers=0)


def dies_on_two(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)      # as the OOM killer would
    time.sleep(0.2)
    return x


def test_a_dead_worker_is_named_and_never_hangs():
    started = time.monotonic()
    with pytest.raises(WorkerDied, match="item 2"):
        run_in_processes(dies_on_two, [1, 2, 3, 4], workers=2, progress=False,
                         describe=lambda x: f"item {x}")
    assert time.monotonic() - started < 120     # a bound for a hang, not a speed test
    # the pool is started afresh afterwards
    results = run_in_processes(math.factorial, [1, 2, 3, 4], workers=2, progress=False)
    assert [value for value, _ in results] == [1, 2, 6, 24]


def test_an_item_starts_only_after_the_items_it_needs():
    # item 2 needs item 0 (slow); item 3 needs nothing and may finish first
    results = run_in_processes(finish_time, [0.6, 0.0, 0.0, 0.0], workers=2, after=[[], [], [0], []],
                               progress=False)
    finished = [value for value, _ in results]
    assert finished[2] >= finished[0]
    with pytest.raises(ValueError, match="earlier items"):
        run_in_processes(finish_time, [0.0, 0.0], workers=2, after=[[1], []])


def test_runs_trained_side_by_side_are_the_runs_trained_one_by_one(tmp_path):
    profile = book_profile("ci")
    specs = [profile.finetuned(0, "gain"), profile.finetuned(1, "gain_ext", pixel_labels=8),
             profile.finetuned(0, "gain")]                 # a duplicate is trained once
    runs = train_runs(specs, tmp_path / "side", workers=2, progress=False)
    assert [r.spec for r in runs] == specs and not any(r.cached for r in runs)
    # the classifiers they are fine-tuned from were trained first, in the same cache
    assert all((tmp_path / "side" / s.init.key() / "model.pt").exists() for s in specs)
    assert all(r.cached for r in train_runs(specs, tmp_path / "side", workers=2, progress=False))
    for spec, run in zip(specs[:2], runs):
        alone = train_run(spec, tmp_path / "alone")
        for name, value in alone.model.state_dict().items():
            # one thread in a worker against this process's threads: float rounding apart
            assert torch.allclose(value.float(), run.model.state_dict()[name].float(), atol=1e-4), name

    seg_specs = [segmentation_spec("ci", profile.data, framework, spec, seed=0)
                 for framework in ("gain", "sec") for spec in specs[:2]]
    networks = train_segmentations(seg_specs, tmp_path / "side", workers=2, progress=False)
    assert [n.spec for n in networks] == seg_specs and not any(n.cached for n in networks)
    assert all(n.cached for n in train_segmentations(seg_specs, tmp_path / "side", progress=False))
    reports = segmentation_reports(seg_specs, "val", tmp_path / "side", workers=2, progress=False)
    val = load_split(profile.data, "val")
    here = segmentation_scores(predict_segmentation(networks[0].model, val, crf=True), val,
                               list(val.classes))
    assert reports[0]["crf"]["mIoU"] == pytest.approx(here["mIoU"], abs=1e-3)
    assert all(set(r) == {"plain", "crf"} for r in reports)


def start_time(seconds: float) -> float:
    started = time.time()
    time.sleep(seconds)
    return started


def test_ready_items_start_in_order_of_priority():
    # two workers: items 3 and 4 (highest priority) start first, the others after one ends
    results = run_in_processes(start_time, [0.2] * 5, workers=2, priority=[0, 0, 0, 2, 1],
                               progress=False)
    started = [value for value, _ in results]
    assert max(started[3], started[4]) < min(started[:3])
    with pytest.raises(ValueError, match="one number per item"):
        run_in_processes(start_time, [0.0] * 4, workers=2, priority=[1.0])
