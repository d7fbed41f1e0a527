"""Independent training runs, side by side in worker processes.

On the book's 2-core machine a second torch thread makes a small network's training step only
1.2-1.5x faster, while two single-threaded processes each keep most of their speed: two GAIN_ext
runs side by side finish 1.3x sooner than one after the other with two threads each (small CNN
and ``densenet_small``, ``benchmarks/parallel_runs.py``). The runs must be
independent: :func:`~gainlib.experiments.train_runs` and
:func:`~gainlib.wsss.train_segmentations` order them so that a run starts only after the runs it
loads (the classifier it is fine-tuned from, the attention model whose cues it trains on) are in
the cache.

Workers are started with ``spawn`` (safe inside a Jupyter kernel and after torch has started
its threads), each with ``threads`` torch threads, and kept for the life of the process: a
chapter's later calls reuse them, and with them the data splits they have already generated.
Every worker writes its model to the cache and the parent loads it, so what a worker returns is
small. A run trained in a worker with one thread has the weights of a serial run with two
threads up to float rounding (the order of additions differs), as any change of thread count
gives.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import time
from typing import Any, Callable, Sequence, TypeVar

import torch
from tqdm.auto import tqdm

__all__ = ["MIN_ITEMS", "default_workers", "run_in_processes", "close_workers"]

Item = TypeVar("Item")

#: Fewer items than this run here, one after the other: starting a worker (importing torch and
#: gainlib, generating the data) takes ~8 s on 2 cores, more than the book's three classifiers
#: of chapter 1 gain side by side (measured: 33 s in workers against 28 s here).
MIN_ITEMS = 4

_pool: tuple[tuple[int, int], Any] | None = None   # ((workers, threads), multiprocessing pool)


def default_workers(device: str = "cpu") -> int:
    """Processes for independent runs: 2 on a CPU with at least two cores (what was measured,
    on the book's 2-core machine; on more cores pass ``workers`` yourself), else 1; and 1 on an
    accelerator (one device, one run at a time)."""
    if device != "cpu":
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _call(job: tuple[Callable[..., Any], Any]) -> tuple[Any, float]:
    function, item = job
    started = time.perf_counter()
    result = function(item)
    return result, time.perf_counter() - started


def _workers(workers: int, threads: int):
    """The kept pool, (re)started when the number of workers or threads changes."""
    global _pool
    if _pool is None or _pool[0] != (workers, threads):
        close_workers()
        context = multiprocessing.get_context("spawn")
        _pool = ((workers, threads), context.Pool(workers, initializer=_init_worker,
                                                  initargs=(threads,)))
    return _pool[1]


def close_workers() -> None:
    """Stop the kept worker processes (done at exit, and after a failed or interrupted run)."""
    global _pool
    if _pool is not None:
        _pool[1].terminate()
        _pool[1].join()
        _pool = None


atexit.register(close_workers)


def run_in_processes(function: Callable[[Item], Any], items: Sequence[Item], *, workers: int,
                     threads: int | None = None, after: Sequence[Sequence[int]] | None = None,
                     progress: bool = True, describe: Callable[[Item], str] = str,
                     desc: str = "runs") -> list[tuple[Any, float]]:
    """``function(item)`` for every item, in ``workers`` processes; ``(result, seconds)`` in order.

    ``function`` must be importable (a module-level function) and its items picklable.
    ``after[i]`` lists the items (by index, each before ``i``) that must finish before item
    ``i`` starts, e.g. the classifier a run is fine-tuned from; an item starts as soon as they
    have. With one worker, or fewer than :data:`MIN_ITEMS` items, everything runs here, in
    order, with this process's threads. ``threads`` is each worker's torch thread count
    (default: this process's count divided among the workers, at least 1).

    Raises:
        RuntimeError: a run failed in a worker; the message names it (``describe(item)``) and
            the worker's exception is chained. The workers are stopped: runs still going are
            lost but for the epochs their checkpoints hold.
    """
    items = list(items)
    after = [list(a) for a in after] if after is not None else [[] for _ in items]
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if len(after) != len(items) or any(not 0 <= d < i for i, a in enumerate(after) for d in a):
        raise ValueError("after[i] must list indices of earlier items, one list per item")
    bar = tqdm(total=len(items), desc=desc, disable=not progress or not items, leave=False)
    results: list[tuple[Any, float] | None] = [None] * len(items)
    if workers == 1 or len(items) < MIN_ITEMS:
        for i, item in enumerate(items):
            results[i] = _call((function, item))
            bar.update()
        bar.close()
        return results  # type: ignore[return-value]
    pool = _workers(workers, threads or max(1, torch.get_num_threads() // workers))
    running: dict[int, Any] = {}
    try:
        while any(r is None for r in results):
            for i, item in enumerate(items):
                if (results[i] is None and i not in running
                        and all(results[d] is not None for d in after[i])):
                    running[i] = pool.apply_async(_call, ((function, item),))
            for i in [i for i, job in running.items() if job.ready()]:
                try:
                    results[i] = running.pop(i).get()
                except Exception as error:
                    raise RuntimeError(f"{desc}: {describe(items[i])} failed in a worker process: "
                                       f"{type(error).__name__}: {error}") from error
                bar.update()
            if running:
                next(iter(running.values())).wait(0.1)
    except BaseException:
        close_workers()   # a failed run or KeyboardInterrupt: stop every worker now
        raise
    finally:
        bar.close()
    return results  # type: ignore[return-value]
