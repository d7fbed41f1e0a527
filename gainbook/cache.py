"""The run cache: every model the book trains is described once, trained once and reused.

A *run* is a frozen dataclass deriving from :class:`CachedRun` that fixes everything that
determines the trained weights (data, network, settings, seed, the runs it starts from). It
names a folder of the cache, ``<cache>/<prefix>-<hash>/``, whose hash covers

* the spec (:meth:`CachedRun.to_dict`), and
* the source of every gainlib/gainbook module the run's training imports, found by following
  the imports of the module that defines the run class (:func:`code_digest`) — computed, not
  listed by hand, so no edit to code the training runs through can leave a stale model behind.
  Comments do not count (the digest hashes each module's syntax tree).

One override point per kind of run: :meth:`CachedRun.build` (the untrained network) and
:meth:`CachedRun.fit` (train it; write checkpoints into the run's folder). Everything else —
the key, loading, the atomic save, the lock, filling many runs side by side — is here, once:

* :func:`load_or_train` returns a :class:`Trained` run, from the cache or trained now;
* :func:`fill` trains every missing run (and the runs they start from) side by side in worker
  processes (:mod:`gainbook.pool`); :func:`train_all` then loads them in order.

Safety: models are loaded with ``weights_only=True`` (a crafted ``model.pt`` cannot run code);
a model file that does not load, lacks its history, or was saved for another spec (a file
copied from another run's folder) is moved aside and its run trained again, with a warning; a
per-run lock file lets two builds share a cache (the second waits and then loads); temporary
files have unique names and are renamed into place atomically. A run folder, lock or side file
that is a symbolic link is refused (:class:`CacheError`, naming it), never followed, so a shared
cache cannot be made to write outside itself.

The cache lives in ``$GAIN_BOOK_CACHE`` (``~`` expanded; a relative path is taken from the
repository, so the build and the chapters' kernels, which run in another folder, share it), or
``_build/cache`` of the repository. The device is not part of the key, so a cache filled on a
GPU is reused on the CPU.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch
from torch import nn

from gainlib.models import select_device

try:   # POSIX; elsewhere runs are not locked against a second build on the same cache
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["CachedRun", "Trained", "CacheError", "cache_root", "code_digest", "training_modules",
           "load_or_train", "fill", "train_all", "write_atomic", "write_text_atomic", "refuse_symlinks"]

_REPOSITORY = Path(__file__).resolve().parents[1]
#: The packages whose modules count towards a run's code digest.
OWN_PACKAGES = ("gainlib", "gainbook")
MODEL_FILE = "model.pt"


class CacheError(RuntimeError):
    """The cache cannot be used safely: a symbolic link where a run's folder, lock or file
    should be, or a broken model that cannot be moved aside. The message names the path."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$GAIN_BOOK_CACHE``, else ``<repository>/_build/cache``; ``~``
    expanded, made absolute (a relative ``$GAIN_BOOK_CACHE`` from the repository, a relative
    ``cache_dir`` from the working directory) and resolved, so one folder has one name."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    if os.environ.get("GAIN_BOOK_CACHE"):
        return (_REPOSITORY / Path(os.environ["GAIN_BOOK_CACHE"]).expanduser()).resolve()
    return _REPOSITORY / "_build" / "cache"


# -- the code digest ------------------------------------------------------------------------

def module_file(name: str) -> Path | None:
    """The source file of module ``name``, or ``None`` (not found, built in, a script)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):     # not a module, or a script's __main__
        return None
    return Path(spec.origin) if spec is not None and spec.origin not in (None, "built-in") else None


def _imported_modules(name: str, tree: ast.Module) -> set[str]:
    """The gainlib/gainbook modules that module ``name`` imports, anywhere in its body."""
    path = module_file(name)
    package = name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from pkg import name` imports pkg, and pkg.name when that is a module
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            if candidate.split(".")[0] not in OWN_PACKAGES:
                continue
            parts = candidate.split(".")
            # importing a.b.c runs a/__init__, a/b/__init__ and a/b/c
            for end in range(1, len(parts) + 1):
                module = ".".join(parts[:end])
                if module_file(module) is None:   # `from module import function`
                    break
                found.add(module)
    return found


@functools.lru_cache(maxsize=None)
def module_closure(name: str) -> tuple[str, ...]:
    """Module ``name`` and every gainlib/gainbook module it imports, transitively, sorted."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        if path is None or path.suffix != ".py":
            continue
        todo.extend(_imported_modules(module, ast.parse(path.read_text())) - seen)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=None)
def code_digest(module: str) -> str:
    """Hash of module ``module`` and of every gainlib/gainbook module it imports, transitively
    (its syntax trees: an edit to a comment does not change it, any edit to code does)."""
    digest = hashlib.sha256()
    for name in module_closure(module):
        path = module_file(name)
        if path is None or path.suffix != ".py":
            continue
        digest.update(name.encode())
        digest.update(ast.dump(ast.parse(path.read_text())).encode())
    return digest.hexdigest()


def training_modules(run_class: type) -> tuple[str, ...]:
    """The modules whose source is part of the keys of ``run_class``'s runs."""
    return module_closure(run_class.__module__)


# -- runs -----------------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if isinstance(value, CachedRun):
        return value.key()            # a run it starts from: its key covers its code and spec
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # TrainConfig: its runtime fields left out; DataSpec: its files' fingerprint added
        settings = getattr(value, "run_settings", None)
        fields = settings() if callable(settings) else {
            f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {k: _jsonable(v) for k, v in fields.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class CachedRun:
    """Base of the frozen dataclasses that describe a cached run.

    Subclasses set :attr:`prefix` and implement :meth:`build` and :meth:`fit`; they may list
    the runs they start from in :meth:`dependencies` (trained first, never side by side).
    """

    prefix: ClassVar[str] = "run"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (what the key hashes); runs it depends on appear as keys."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def key(self) -> str:
        """``<prefix>-<hash>``: the cache folder's name, from the spec and the training code."""
        text = json.dumps(self.to_dict(), sort_keys=True) + code_digest(type(self).__module__)
        return f"{self.name_prefix()}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def name_prefix(self) -> str:
        """The readable start of the key (e.g. the training mode)."""
        return self.prefix

    def dependencies(self) -> list["CachedRun"]:
        """Runs that must be in the cache before this one trains."""
        return []

    def cost(self) -> float:
        """A rough relative cost of training this run, for scheduling only: :func:`fill`
        starts the runs with the longest chains of work first, so that a short run, not a long
        one, is what keeps one worker busy while the other is idle."""
        return 1.0

    def build(self) -> nn.Module:
        """The untrained network (seeded)."""
        raise NotImplementedError

    def fit(self, model: nn.Module, folder: Path, *, device: str, progress: bool,
            cache_dir: Path) -> list[dict[str, Any]]:
        """Train ``model`` in place, checkpointing into ``folder``; return its history."""
        raise NotImplementedError


@dataclass
class Trained:
    """A trained network (in eval mode) with the history of its last training stage."""

    spec: CachedRun
    model: nn.Module
    history: list[dict[str, Any]]
    path: Path
    cached: bool
    seconds: float


def refuse_symlinks(*paths: Path) -> None:
    """Raise :class:`CacheError` naming the first of ``paths`` that is a symbolic link."""
    for path in paths:
        if path.is_symlink():
            raise CacheError(f"{path} is a symbolic link (to {os.readlink(path)}); the cache never "
                             "follows links in its runs' folders, locks or files: remove it")


def _run_paths(root: Path, spec: CachedRun) -> tuple[Path, Path]:
    """The run's folder and lock, after checking that neither they nor anything in the folder
    (the model, its spec, checkpoints, side files) is a symbolic link."""
    folder, lock = root / spec.key(), root / f"{spec.key()}.lock"
    refuse_symlinks(folder, lock)
    if folder.is_dir():
        with os.scandir(folder) as entries:
            refuse_symlinks(*(Path(entry.path) for entry in entries))
    return folder, lock


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (another build training the same run waits). Not
    under torchrun, whose ranks train each run together."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    try:   # O_NOFOLLOW: a link planted after the check is refused too
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        refuse_symlinks(path)
        raise CacheError(f"cannot open the lock {path} ({error})") from error
    with os.fdopen(descriptor, "r+") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, write: Callable[[str], Any]) -> None:
    """Write ``path`` so that a reader (another chapter's kernel, a second build) never sees
    half of it: ``write(temporary)`` fills a uniquely named file beside it, which is then
    renamed over it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_atomic` of ``text``."""
    write_atomic(path, lambda temporary: Path(temporary).write_text(text))


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp",
                                         delete=False)
    handle.close()
    try:
        torch.save(state, handle.name)
        os.replace(handle.name, path)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists), to compare stored specs."""
    return json.loads(json.dumps(value, sort_keys=True))


def _move_aside(final: Path, problem: str) -> None:
    """Move a model that must not be served out of the way, with a warning naming why."""
    aside = final.with_name(f"{final.name}.bad-{int(time.time())}")
    try:
        os.replace(final, aside)
    except OSError as error:   # a read-only cache: say why the model is refused, not only this
        raise CacheError(f"cached model {final} {problem} and cannot be moved aside ({error}); "
                         "delete it, or use a writable cache ($GAIN_BOOK_CACHE)") from None
    warnings.warn(f"cached model {final} {problem}; moved it to {aside.name} and training the "
                  "run again", stacklevel=4)


def _load(spec: CachedRun, final: Path, device: torch.device) -> Trained | None:
    """The cached run, or ``None`` when its file is missing, does not load or holds another
    spec's model (moved aside)."""
    if not final.exists():
        return None
    model = spec.build()
    try:
        state = torch.load(final, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        history = state["history"]
        if not isinstance(history, list):
            raise TypeError(f"its history is a {type(history).__name__}, not a list")
        stored = _plain(state.get("spec"))
    except Exception as error:   # truncated, corrupt, foreign or malicious: never trust it
        _move_aside(final, f"does not load ({type(error).__name__}: {error})")
        return None
    wanted = _plain(spec.to_dict())
    if stored != wanted:
        fields = sorted(k for k in set(stored or {}) | set(wanted)
                        if (stored or {}).get(k) != wanted.get(k)) if isinstance(stored, dict) else []
        _move_aside(final, f"was saved for another run (its stored spec differs in "
                           f"{', '.join(fields) or 'everything'})")
        return None
    model.to(device).eval()
    return Trained(spec, model, history, final.parent, True, 0.0)


def load_or_train(spec: CachedRun, cache_dir: str | os.PathLike | None = None, *,
                  device: str = "auto", progress: bool = False) -> Trained:
    """The run of ``spec`` from the cache, or trained now (its dependencies first); eval mode.

    Training writes checkpoints into the run's folder, so an interrupted run resumes from its
    last finished epoch; the finished model is ``model.pt`` there.
    """
    root = cache_root(cache_dir)
    folder, lock = _run_paths(root, spec)
    final = folder / MODEL_FILE
    started = time.perf_counter()
    target = select_device(device)
    loaded = _load(spec, final, target)
    if loaded is not None:
        loaded.seconds = time.perf_counter() - started
        return loaded
    for dependency in spec.dependencies():
        load_or_train(dependency, root, device=device, progress=progress)
    with _locked(lock):
        _run_paths(root, spec)                  # nothing was planted while we waited
        loaded = _load(spec, final, target)     # another build may have trained it meanwhile
        if loaded is not None:
            loaded.seconds = time.perf_counter() - started
            return loaded
        model = spec.build()
        folder.mkdir(parents=True, exist_ok=True)
        # Under torchrun every rank trains the same weights; rank 0 alone writes them.
        writer = int(os.environ.get("RANK", "0")) == 0
        if writer:
            write_text_atomic(folder / "spec.json", json.dumps(spec.to_dict(), indent=1))
        history = spec.fit(model, folder, device=device, progress=progress, cache_dir=root)
        if writer:
            _save_atomic({"model": model.state_dict(), "history": history,
                          "spec": spec.to_dict()}, final)
            for checkpoint in folder.glob("*.pt"):   # optimizer states are no longer needed
                if checkpoint.name != MODEL_FILE:
                    checkpoint.unlink(missing_ok=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()   # model.pt exists for every rank before any goes on
    model.eval()
    return Trained(spec, model, history, folder, False, time.perf_counter() - started)


def _is_cached(spec: CachedRun, root: Path) -> bool:
    return (root / spec.key() / MODEL_FILE).exists()


def _train_job(job: tuple[CachedRun, str, str]) -> None:
    spec, cache_dir, device = job
    load_or_train(spec, cache_dir, device=device)


def fill(specs: Sequence[CachedRun], cache_dir: str | os.PathLike | None = None, *,
         device: str = "cpu", workers: int | None = None,
         progress: bool = True) -> dict[str, float]:
    """Train every run of ``specs`` that is not cached, and the runs they depend on, independent
    runs side by side in ``workers`` processes (default :func:`gainbook.pool.default_workers`).
    Returns the seconds each run trained now took, by key."""
    from gainbook.pool import default_workers, run_in_processes

    root = cache_root(cache_dir)
    todo: dict[str, CachedRun] = {}    # each run after the runs it depends on

    def add(spec: CachedRun) -> None:
        if spec.key() in todo or _is_cached(spec, root):
            return
        for dependency in spec.dependencies():
            add(dependency)
        todo[spec.key()] = spec

    for spec in specs:
        add(spec)
    if workers is None:
        workers = default_workers(select_device(device).type)
    keys = list(todo)
    after = [sorted({keys.index(d.key()) for d in s.dependencies() if d.key() in todo})
             for s in todo.values()]
    # A run's priority: its cost plus that of the longest chain of runs waiting on it.
    cost = [spec.cost() for spec in todo.values()]
    chain = list(cost)
    for i in reversed(range(len(keys))):    # each run comes after the runs it depends on
        for d in after[i]:
            chain[d] = max(chain[d], cost[d] + chain[i])
    results = run_in_processes(_train_job, [(s, str(root), device) for s in todo.values()],
                               workers=workers, after=after, priority=chain, progress=progress,
                               describe=lambda job: f"run {job[0].key()}",
                               desc=f"training {len(todo)} runs")
    return {k: seconds for k, (_, seconds) in zip(keys, results)}


def train_all(specs: Sequence[CachedRun], cache_dir: str | os.PathLike | None = None, *,
              device: str = "cpu", workers: int | None = None,
              progress: bool = True) -> list[Trained]:
    """:func:`load_or_train` for every spec, in order, after :func:`fill` trained the missing
    ones side by side. A run trained now reports ``cached=False`` and its training's seconds."""
    seconds = fill(specs, cache_dir, device=device, workers=workers, progress=progress)
    runs = []
    for spec in specs:
        run = load_or_train(spec, cache_dir, device=device)
        if spec.key() in seconds:
            run = dataclasses.replace(run, cached=False, seconds=seconds[spec.key()])
        runs.append(run)
    return runs

