"""Independent runs, side by side in worker processes.

On the book's 2-core machine a second torch thread makes a small network's training step only
1.2-1.5x faster, while two single-threaded processes each keep most of their speed
(``benchmarks/parallel_runs.py``). The runs must be independent: :func:`gainbook.cache.fill`
orders them so that a run starts only after the runs it loads (the classifier it is fine-tuned
from, the attention model whose cues it trains on) are in the cache.

Workers are started with ``spawn`` (safe inside a Jupyter kernel and after torch has started its
threads), each with ``threads`` torch threads, and kept for the life of the process: a chapter's
later calls reuse them, and with them the data splits they have already generated. Every worker
writes its model to the cache and the parent loads it, so what a worker returns is small.

Failures are loud and never hang: an exception in a run is re-raised here naming the run; a
worker that dies (killed by the OOM killer, a segfault) names the runs it may have been running;
either way the workers are stopped. Workers ignore SIGINT: an interrupt (Ctrl-C, a kernel
shutdown) reaches the parent, which stops them, instead of printing one traceback per worker.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence, TypeVar

import torch
from tqdm.auto import tqdm

__all__ = ["MIN_ITEMS", "WorkerDied", "default_workers", "run_in_processes", "close_workers"]

Item = TypeVar("Item")

#: Fewer items than this run here, one after the other: starting a worker (importing torch and
#: gainlib, generating the data) costs more than a handful of short runs gain side by side.
MIN_ITEMS = 4

_pool: tuple[tuple[int, int], ProcessPoolExecutor] | None = None   # ((workers, threads), pool)


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its run (killed, out of memory, crashed)."""


def default_workers(device: str = "cpu") -> int:
    """Processes for independent runs: 2 on a CPU with at least two cores (what was measured,
    on the book's 2-core machine; on more cores pass ``workers`` yourself), else 1; and 1 on an
    accelerator (one device, one run at a time)."""
    if device != "cpu":
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _init_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles interrupts
    torch.set_num_threads(threads)


def _call(job: tuple[Callable[..., Any], Any]) -> tuple[Any, float]:
    function, item = job
    started = time.perf_counter()
    result = function(item)
    return result, time.perf_counter() - started


def _workers(workers: int, threads: int) -> ProcessPoolExecutor:
    """The kept pool, (re)started when the number of workers or threads changes."""
    global _pool
    if _pool is None or _pool[0] != (workers, threads):
        close_workers()
        context = multiprocessing.get_context("spawn")
        _pool = ((workers, threads), ProcessPoolExecutor(workers, mp_context=context,
                                                         initializer=_init_worker,
                                                         initargs=(threads,)))
    return _pool[1]


def close_workers() -> None:
    """Stop the kept worker processes (done at exit, and after a failed or interrupted run)."""
    global _pool
    if _pool is None:
        return
    pool = _pool[1]
    _pool = None
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:       # a run may be mid-epoch: its checkpoint keeps its progress
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


atexit.register(close_workers)


def run_in_processes(function: Callable[[Item], Any], items: Sequence[Item], *, workers: int,
                     threads: int | None = None, after: Sequence[Sequence[int]] | None = None,
                     priority: Sequence[float] | None = None, progress: bool = True,
                     describe: Callable[[Item], str] = str,
                     desc: str = "runs") -> list[tuple[Any, float]]:
    """``function(item)`` for every item, in ``workers`` processes; ``(result, seconds)`` in order.

    ``function`` must be importable (a module-level function) and its items picklable.
    ``after[i]`` lists the items (by index, each before ``i``) that must finish before item
    ``i`` starts; an item starts as soon as they have, the ready item of highest ``priority``
    first (default: in order). At most ``workers`` items run at a time,
    so a dead worker's run is known. With one worker, or fewer than :data:`MIN_ITEMS` items,
    everything runs here, in order, with this process's threads. ``threads`` is each worker's
    torch thread count (default: this process's count divided among the workers, at least 1).

    Raises:
        RuntimeError: a run failed in a worker; the message names it (``describe(item)``) and
            the worker's exception is chained.
        WorkerDied: a worker process ended abruptly; the message names the runs that were in
            flight. In both cases the workers are stopped: runs still going are lost but for
            the epochs their checkpoints hold.
    """
    items = list(items)
    after = [list(a) for a in after] if after is not None else [[] for _ in items]
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if len(after) != len(items) or any(not 0 <= d < i for i, a in enumerate(after) for d in a):
        raise ValueError("after[i] must list indices of earlier items, one list per item")
    if priority is not None and len(priority) != len(items):
        raise ValueError(f"priority must give one number per item ({len(items)}), "
                         f"got {len(priority)}")
    # The order in which ready items start: highest priority first, ties in the given order.
    order = (sorted(range(len(items)), key=lambda i: -priority[i]) if priority is not None
             else range(len(items)))
    bar = tqdm(total=len(items), desc=desc, disable=not progress or not items, leave=False)
    results: list[tuple[Any, float] | None] = [None] * len(items)
    if workers == 1 or len(items) < MIN_ITEMS:
        for i, item in enumerate(items):
            results[i] = _call((function, item))
            bar.update()
        bar.close()
        return results  # type: ignore[return-value]
    pool = _workers(workers, threads or max(1, torch.get_num_threads() // workers))
    running: dict[Future, int] = {}
    try:
        while any(r is None for r in results):
            for i in order:
                if len(running) >= workers:
                    break
                if (results[i] is None and i not in running.values()
                        and all(results[d] is not None for d in after[i])):
                    running[pool.submit(_call, (function, items[i]))] = i
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                try:
                    results[i] = future.result()
                except BrokenProcessPool as error:
                    lost = [describe(items[j]) for j in sorted({i, *running.values()})]
                    raise WorkerDied(f"{desc}: a worker process died (killed or out of memory?) "
                                     f"while running {', '.join(lost)}; run again to resume "
                                     "them from their last checkpoints") from error
                except Exception as error:
                    raise RuntimeError(f"{desc}: {describe(items[i])} failed in a worker process: "
                                       f"{type(error).__name__}: {error}") from error
                bar.update()
    except BaseException:
        close_workers()   # a failed run, a dead worker or KeyboardInterrupt: stop every worker now
        raise
    finally:
        bar.close()
    return results  # type: ignore[return-value]
