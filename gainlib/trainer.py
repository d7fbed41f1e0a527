"""The training loop of gainlib, and its GAIN trainer: plain classifier, GAIN and GAIN_ext with
pixel masks, boxes or both, over any dataset that follows :mod:`gainlib.data.protocol`.

:class:`Trainer` is the one loop every kind of training goes through (this module's
:class:`GainTrainer`, :class:`gainlib.segmentation.SegmentationTrainer`): device, optimizer and
learning rate, per-epoch seeding, checkpoints and exact resume, the non-finite guard, history,
progress bars and DDP. A subclass says what the losses of one step are
(:meth:`Trainer.training_step`) and, where it differs, how the batches are drawn.

GAIN's streams per step (all sharing the network's parameters):

* S_cl and S_am run on a batch drawn from the whole training set (image-level labels);
* S_e runs on a batch drawn from the few samples flagged ``use_mask`` / ``use_boxes``
  (the paper's 1-10 % with extra labels), cycling through them as often as needed.

Reproducibility: a run is reproducible from one seed given to the builder of the model
(``GAIN.from_name(..., seed=0)``: its initial weights) and to :class:`TrainConfig` (``seed=0``:
the training). At the start of every epoch the random state (shuffling, the S_e draw,
dropout) is re-seeded from ``(seed, epoch)``. So a run resumed from the checkpoint written
at the end of an epoch continues exactly as the uninterrupted run would have: the same
final weights. An interrupted epoch is redone from its start.

Checkpoints (with ``checkpoint_dir``): ``last.pt`` after every epoch, the one before it kept as
``previous.pt`` until the run ends, and ``history.json``. Each is written to a temporary file
with a unique name and renamed, so an interruption or a second process training into the same
folder never leaves a half-written one. A checkpoint holds plain tensors, numbers and strings
and is read with ``torch.load(weights_only=True)``: a file planted as ``last.pt`` cannot run code.
A checkpoint that cannot be read (truncated, corrupt) falls back to ``previous.pt`` with a warning.

Non-finite guard: the loss before every backward, every parameter and buffer after every
optimizer step (a BatchNorm ``running_var`` of ``inf`` is as fatal as a NaN loss) and the
validation loss are checked; the first non-finite one stops training with
:class:`NonFiniteLossError`, and no checkpoint is written from a non-finite state.

Distributed: launched with ``torchrun --nproc_per_node=N``, the trainer joins the process
group (NCCL on CUDA, gloo on CPU), wraps the step in ``DistributedDataParallel`` (one
forward per step, so the multiple passes of GAIN are fine) and shards the samplers.
``batch_size`` is per process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Protocol, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset
from tqdm.auto import tqdm

from gainlib.data.protocol import collate_samples
from gainlib.gain import GAIN
from gainlib.losses import class_targets_from_mask
from gainlib.metrics import attention_scores, mean_average_precision, multilabel_accuracy
from gainlib.models import select_device
from gainlib.validation import check_bool, check_choice, check_int, check_real

__all__ = ["TrainConfig", "Trainer", "GainTrainer", "NonFiniteLossError", "CheckpointError",
           "evaluate", "extra_label_indices"]

log = logging.getLogger(__name__)

Mode = Literal["classifier", "gain", "gain_ext"]
# Fields that change how a run trains; a checkpoint only resumes a run with the same ones.
_RUNTIME_FIELDS = {"device", "num_workers", "checkpoint_dir", "resume", "progress", "eval_every"}


class NonFiniteLossError(RuntimeError):
    """The loss, a parameter or buffer, or the validation loss became NaN or infinite; training
    stopped, and the last good checkpoint (whose path the message gives) is kept."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file and what to do."""


# -- validation of the settings every trainer's config shares ----------------------------
def check_loop_settings(owner: object) -> None:
    """Type and range of the fields every trainer's config shares (see :class:`LoopSettings`)."""
    for name in ("epochs", "batch_size"):
        check_int(owner, name, 1)
    check_int(owner, "seed", 0)
    check_int(owner, "num_workers", 0)
    check_real(owner, "lr")
    check_real(owner, "momentum", below=1.0)
    check_real(owner, "weight_decay")
    # 0 would freeze the weights, a negative norm turns the clip into gradient ascent.
    check_real(owner, "grad_clip", positive=True, optional=True)
    check_bool(owner, "amp", "channels_last", "resume", "progress")
    kind = type(owner).__name__
    device = getattr(owner, "device")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{kind}.device must be a string such as 'auto', 'cpu' or 'cuda:0', got {device!r}")
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"{kind}.device {device!r} is not a device: use 'auto', 'cpu', 'cuda', "
                             f"'cuda:<index>' or 'mps' ({error})") from None
    folder = getattr(owner, "checkpoint_dir")
    if folder is not None and not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"{kind}.checkpoint_dir must be a path or None, got {folder!r}")
    if isinstance(folder, os.PathLike):
        object.__setattr__(owner, "checkpoint_dir", os.fspath(folder))


@dataclass
class TrainConfig:
    """Optimisation settings of :class:`GainTrainer`.

    Every field's type and range is checked at construction (``TypeError``/``ValueError``
    naming the field).

    Attributes:
        mode: ``"classifier"`` (L_cl only, the Grad-CAM baseline), ``"gain"`` (Eq. 6) or
            ``"gain_ext"`` (Eq. 8/10: adds S_e on the samples flagged with extra labels).
        epochs, batch_size, lr, momentum, weight_decay: SGD settings (``optimizer="adam"``
            uses Adam with the same lr and weight decay). ``lr``, ``weight_decay`` >= 0,
            ``0 <= momentum < 1``.
        ext_batch_size: samples per step in S_e (``ext_sampling="cycle"``).
        ext_sampling: how S_e meets its few labelled samples. ``"cycle"``: every step draws
            ``ext_batch_size`` of them, cycling through them as often as needed (with 19
            masks among 1,000 images each is seen ~13 times per epoch). ``"natural"``: S_e
            runs on the labelled samples that the step's S_cl batch happens to hold, so each
            is seen once per epoch like any other image; steps without one skip S_e.
        lr_schedule: ``"constant"`` or ``"cosine"`` (per epoch).
        warmup_epochs: epochs of L_cl alone before S_am/S_e switch on (the public
            implementations pre-train the classifier; the paper starts from ImageNet weights).
            In ``"gain"``/``"gain_ext"`` mode it must be below ``epochs``.
        grad_clip: max gradient norm (> 0), or ``None``.
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        channels_last: train with the network's weights and the images in NHWC memory
            format: about 20 % faster per step on 2 CPU cores for the book's small CNN, and
            the format tensor cores prefer. The results differ from NCHW only by float rounding.
        seed: seeds the training: shuffling, the S_e draws, dropout (see the module notes on
            reproducibility). Not the model's initial weights, which exist before the
            trainer: build the model with the same seed for those
            (``GAIN.from_name(..., seed=seed)``, ``build_classifier(..., seed=seed)``).
        device: ``"auto"`` (CUDA, then MPS, then CPU), or any torch device string.
        num_workers: DataLoader workers.
        checkpoint_dir: where ``last.pt``, ``previous.pt`` and ``history.json`` are written
            every epoch (module notes).
        resume: continue from ``checkpoint_dir/last.pt`` when it exists.
        progress: show tqdm progress bars.
        eval_attention: also measure attention IoU/coverage on validation samples with masks.
        eval_every: validate after every ``eval_every``-th epoch and after the last (it never
            changes the weights, so it is not part of a run's settings).
    """

    mode: Mode = "gain"
    epochs: int = 10
    batch_size: int = 32
    ext_batch_size: int = 8
    ext_sampling: Literal["cycle", "natural"] = "cycle"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = 0
    grad_clip: float | None = None
    amp: bool = True
    channels_last: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    checkpoint_dir: str | None = None
    resume: bool = True
    progress: bool = True
    eval_attention: bool = True
    eval_every: int = 1

    def __post_init__(self) -> None:
        check_choice(self, "mode", ("classifier", "gain", "gain_ext"))
        check_choice(self, "optimizer", ("sgd", "adam"))
        check_choice(self, "lr_schedule", ("constant", "cosine"))
        check_choice(self, "ext_sampling", ("cycle", "natural"))
        check_loop_settings(self)
        for name in ("ext_batch_size", "eval_every"):
            check_int(self, name, 1)
        check_int(self, "warmup_epochs", 0)
        check_bool(self, "eval_attention")
        if self.mode != "classifier" and self.warmup_epochs >= self.epochs:
            raise ValueError(f"TrainConfig.warmup_epochs ({self.warmup_epochs}) must be below epochs "
                             f"({self.epochs}) in mode={self.mode!r}: the attention losses would never "
                             "switch on and the run would be a plain classifier; use mode='classifier' "
                             "for that")

    def run_settings(self) -> dict[str, Any]:
        """The fields that define the training run (everything but runtime plumbing)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RUNTIME_FIELDS}


class LoopSettings(Protocol):
    """What :class:`Trainer` reads from its config (:class:`TrainConfig`,
    :class:`gainlib.segmentation.SegmentationConfig`); ``eval_every`` is optional (default 1)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    grad_clip: float | None
    amp: bool
    channels_last: bool
    seed: int
    device: str
    num_workers: int
    checkpoint_dir: str | None
    resume: bool
    progress: bool

    def run_settings(self) -> dict[str, Any]: ...


def extra_label_indices(dataset: Dataset) -> list[int]:
    """Indices of the samples flagged ``use_mask`` or ``use_boxes`` (the S_e stream).

    A dataset may provide ``extra_label_indices()`` itself to avoid loading every sample.
    """
    if hasattr(dataset, "extra_label_indices"):
        return list(dataset.extra_label_indices())
    return [i for i in range(len(dataset))
            if dataset[i].get("use_mask", False) or dataset[i].get("use_boxes", False)]


class _Step(nn.Module):
    """One forward = one training step's losses, so DistributedDataParallel sees a single
    forward per backward however many passes the step makes (GAIN's streams)."""

    def __init__(self, model: nn.Module, step: Callable[[Mapping[str, Any]], dict[str, Tensor]]) -> None:
        super().__init__()
        self.model = model
        self.step = step

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return self.step(batch)


def _epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2 ** 63)


def _to_device(batch: Mapping[str, Any], device: torch.device,
               memory_format: torch.memory_format = torch.preserve_format) -> dict[str, Any]:
    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    if memory_format is not torch.preserve_format:
        moved["image"] = moved["image"].contiguous(memory_format=memory_format)
    return moved


def _floating_state(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            yield name, tensor


@torch.no_grad()
def _first_non_finite(named: Iterable[tuple[str, Tensor]]) -> str | None:
    """The name of the first tensor holding a NaN or infinity, or ``None``. One
    synchronisation for all tensors; only a failing check looks for the culprit."""
    named = [(name, t.detach()) for name, t in named if t.numel()]
    if not named:
        return None
    flags = [torch.isfinite(t).all() for _, t in named]
    if torch.stack([f.to(flags[0].device) for f in flags]).all():
        return None
    return next(name for (name, _), ok in zip(named, flags) if not ok)


def _write_atomically(path: Path, write: Callable[[str], None], keep_as: Path | None = None) -> None:
    """Write ``path`` through a temporary file with a name unique to this call (two processes
    writing into one folder never collide) and rename it; with ``keep_as``, the file it replaces
    is kept there. A failure (a full disk makes ``torch.save`` fail with ``[enforce fail at
    inline_container.cc]``) removes the temporary file and raises :class:`CheckpointError`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if keep_as is not None and path.exists():
            os.replace(path, keep_as)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, (OSError, RuntimeError)):
            raise CheckpointError(f"could not write {path}: {error}. Free disk space or choose another "
                                  "checkpoint_dir (or checkpoint_dir=None to train without checkpoints); "
                                  "the checkpoint written before is unchanged") from error
        raise


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, so a
    pickle planted as a checkpoint cannot run code. Any failure names the file."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:   # EOFError, UnpicklingError, RuntimeError (zip), OSError 22, ...
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(
            f"cannot read the checkpoint {path} ({type(error).__name__}: {reason}): it is truncated, "
            "corrupt, or holds more than tensors, numbers and strings (such a file is refused, "
            "never executed). Delete it, or pass resume=False to start the run over") from error
    if not isinstance(state, dict) or not {"epoch", "model", "optimizer", "history"} <= set(state):
        raise CheckpointError(f"{path} is not a gainlib training checkpoint; delete it or pass "
                              "resume=False")
    return state


class Trainer:
    """The training loop every kind of gainlib training goes through.

    A subclass defines the losses of one step, :meth:`training_step` (the one place they come
    from), and may change how batches are drawn and what is recorded through the hooks below.
    The loop: the model on ``select_device(config.device)`` (NHWC with ``channels_last``),
    SGD (:meth:`make_optimizer`), an optional per-epoch scheduler (:meth:`make_scheduler`) or a
    learning rate set before every step (:meth:`learning_rate`), the global RNG seeded from
    ``(seed, epoch)`` at every epoch when :attr:`reseed_each_epoch`, the non-finite guard,
    per-epoch history, checkpoints and resume (module notes), tqdm bars, DDP under torchrun.

    Args:
        model: the network; its parameters that require grad are trained.
        config: the settings (:class:`LoopSettings`), validated by their dataclass.
    """

    #: Re-seed the global RNG from ``(seed, epoch)`` at every epoch (exact resume, dropout
    #: included). Otherwise the global RNG runs on, and its state travels in the checkpoint.
    reseed_each_epoch: bool = True

    def __init__(self, model: nn.Module, config: LoopSettings) -> None:
        self.model = model
        self.config = config
        self.device = select_device(config.device)
        self.history: list[dict[str, Any]] = []
        self._last_is_good = True

    # -- hooks ---------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The loss terms of one step on ``batch`` (on the device, image in the training
        memory format): a dict of scalars with ``"total"``, the one that is minimised."""
        raise NotImplementedError(f"{type(self).__name__} must define training_step(batch)")

    def setup(self, train_set: Dataset) -> None:
        """Called once per :meth:`fit`, before the model moves to the device."""

    def epoch_batches(self, train_set: Dataset, epoch: int, distributed: bool) -> DataLoader:
        """The batches of ``epoch``: ``train_set`` shuffled by a generator seeded from
        ``(seed, epoch)``, collated by :func:`~gainlib.data.collate_samples`."""
        return self._loader(train_set, self.config.batch_size, epoch, stream=0, distributed=distributed)

    def learning_rate(self, t: float) -> float | None:
        """The learning rate at ``t = epoch + step / steps_per_epoch``, set before every step;
        ``None`` (default) leaves it to :meth:`make_scheduler`."""
        return None

    def make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def make_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        """A scheduler stepped after every epoch, or ``None``."""
        return None

    def validate(self, val_set: Dataset) -> dict[str, float]:
        """Validation metrics after an epoch; a ``"loss"`` among them is checked for NaN/inf."""
        return {}

    def epoch_record(self, epoch: int, means: Mapping[str, float], seconds: float,
                     lr: float) -> dict[str, Any]:
        """The history entry of ``epoch`` (0-based) from the mean loss terms; validation
        metrics are added as ``val_<name>``."""
        return {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v for k, v in means.items()},
                "train_seconds": seconds}

    def checkpoint_identity(self) -> dict[str, Any]:
        """Entries of the checkpoint a resumed run must match (else ``ValueError``)."""
        return {"train_config": self.config.run_settings()}

    def extra_state(self) -> dict[str, Any]:
        """More state for the checkpoint (plain tensors, numbers, strings)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    # -- data ------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, batch_size: int, epoch: int, stream: int,
                distributed: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(_epoch_seed(self.config.seed, epoch, stream))
        if distributed:
            sampler = DistributedSampler(dataset, shuffle=True,
                                         seed=_epoch_seed(self.config.seed, 0, stream))
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(dataset, generator=generator)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          num_workers=self.config.num_workers, collate_fn=collate_samples,
                          generator=generator, pin_memory=self.device.type == "cuda",
                          drop_last=False)

    # -- checkpoints ---------------------------------------------------------------------
    def _checkpoint_path(self, name: str = "last.pt") -> Path | None:
        return Path(self.config.checkpoint_dir) / name if self.config.checkpoint_dir else None

    def _check_checkpoint_dir(self) -> None:
        """Fail before the first epoch, not after it, when the folder cannot be written."""
        if self.config.checkpoint_dir is None:
            return
        folder = Path(self.config.checkpoint_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise CheckpointError(f"checkpoint_dir {folder} is not writable ({error}); make it "
                                  "writable, choose another checkpoint_dir, or pass checkpoint_dir=None "
                                  "to train without checkpoints") from error

    def _state(self, epoch: int, optimizer, scheduler) -> dict[str, Any]:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "history": self.history,
            "rng": rng,
            **self.checkpoint_identity(),
            **self.extra_state(),
        }

    def _save(self, state: dict[str, Any]) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        # The guard has checked every step; this check is what lets last.pt promise a finite state.
        bad = _first_non_finite((k, v) for k, v in state["model"].items() if v.is_floating_point())
        if bad is not None:
            raise self._non_finite(f"{bad} in the state to checkpoint after epoch {state['epoch'] + 1}")
        # last.pt becomes previous.pt only when it is good: after a fallback from an unreadable
        # last.pt, previous.pt is the good one and stays.
        _write_atomically(path, lambda tmp: torch.save(state, tmp),
                          keep_as=self._checkpoint_path("previous.pt") if self._last_is_good else None)
        self._last_is_good = True
        _write_atomically(path.parent / "history.json",
                          lambda tmp: Path(tmp).write_text(json.dumps(self.history, indent=1)))

    def _kept_checkpoint(self) -> Path | None:
        for name in ("last.pt", "previous.pt"):
            path = self._checkpoint_path(name)
            if path is not None and path.exists():
                return path
        return None

    def _non_finite(self, what: str) -> NonFiniteLossError:
        kept = self._kept_checkpoint()
        return NonFiniteLossError(
            f"non-finite {what}; "
            + (f"the last good checkpoint is kept at {kept}" if kept else "no checkpoint was written yet")
            + ". Lower the learning rate, enable grad_clip or check the data.")

    def _maybe_resume(self, optimizer, scheduler) -> int:
        last, previous = self._checkpoint_path(), self._checkpoint_path("previous.pt")
        if last is None or not self.config.resume:
            return 0
        candidates = [p for p in (last, previous) if p.exists()]
        if not candidates:
            return 0
        for i, path in enumerate(candidates):
            try:
                state = _load_checkpoint(path, self.device)
                break
            except CheckpointError as error:
                if i + 1 == len(candidates):
                    raise
                self._last_is_good = False
                warnings.warn(f"{error}. Resuming from the checkpoint before it, {candidates[i + 1]}",
                              RuntimeWarning, stacklevel=3)
        for key, value in self.checkpoint_identity().items():
            saved = state.get(key)
            if saved != value:
                changed = (sorted(k for k in set(value) | set(saved) if value.get(k) != saved.get(k))
                           if isinstance(saved, dict) and isinstance(value, dict) else [key])
                raise ValueError(f"checkpoint {path} was written by a run with other settings "
                                 f"({', '.join(changed)}); use another checkpoint_dir or resume=False")
        self.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        rng = state.get("rng") or {}
        if "cpu" in rng:
            torch.set_rng_state(rng["cpu"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        self.load_extra_state(state)
        log.info("resumed from %s after epoch %d", path, state["epoch"] + 1)
        return state["epoch"] + 1

    # -- training ------------------------------------------------------------------------
    def fit(self, train_set: Dataset, val_set: Dataset | None = None) -> list[dict[str, Any]]:
        """Train for ``config.epochs`` epochs (resuming if a checkpoint exists); return the history."""
        c = self.config
        if len(train_set) == 0:
            raise ValueError("the training set is empty")
        distributed = _init_distributed(self.device)
        rank = dist.get_rank() if distributed else 0
        if distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        self.setup(train_set)
        self.memory_format = torch.channels_last if c.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        step_module: nn.Module = _Step(self.model, self.training_step)
        if distributed:
            step_module = nn.parallel.DistributedDataParallel(
                step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        optimizer = self.make_optimizer()
        scheduler = self.make_scheduler(optimizer)
        if rank == 0:
            self._check_checkpoint_dir()
        self.history = []
        self._last_is_good = True
        start = self._maybe_resume(optimizer, scheduler)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                    if c.amp and self.device.type == "cuda" else nullcontext())
        eval_every = getattr(c, "eval_every", 1)
        for epoch in range(start, c.epochs):
            if self.reseed_each_epoch:
                torch.manual_seed(_epoch_seed(c.seed, epoch, stream=2))
            batches = self.epoch_batches(train_set, epoch, distributed)
            steps = len(batches)
            self.model.train()
            started = time.perf_counter()
            sums: dict[str, float] = {}
            seen = 0
            bar = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}/{c.epochs}", leave=False,
                       disable=not c.progress or rank != 0)
            for step, batch in enumerate(bar):
                lr = self.learning_rate(epoch + step / steps)
                if lr is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                batch = _to_device(batch, self.device, self.memory_format)
                with autocast:
                    losses = step_module(batch)
                total = losses["total"]
                if not torch.isfinite(total):
                    terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                    raise self._non_finite(f"loss at epoch {epoch + 1}, step {step + 1} ({terms})")
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if c.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                optimizer.step()
                bad = _first_non_finite(_floating_state(self.model))
                if bad is not None:
                    raise self._non_finite(f"parameter or buffer {bad} after the update at epoch "
                                           f"{epoch + 1}, step {step + 1} (loss {total.item():.4g})")
                n = batch["image"].shape[0]
                seen += n
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
                bar.set_postfix({k: f"{v / seen:.3f}" for k, v in sums.items()})
            if scheduler is not None:
                scheduler.step()
            if distributed:
                _broadcast_buffers(self.model)
            record = self.epoch_record(epoch, {k: v / max(seen, 1) for k, v in sums.items()},
                                       time.perf_counter() - started, optimizer.param_groups[0]["lr"])
            if val_set is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == c.epochs):
                metrics = self.validate(val_set)
                if "loss" in metrics and not math.isfinite(metrics["loss"]):
                    raise self._non_finite(f"validation loss ({metrics['loss']}) after epoch {epoch + 1}")
                record.update({f"val_{k}": v for k, v in metrics.items()})
            self.history.append(record)
            if rank == 0:
                self._save(self._state(epoch, optimizer, scheduler))
            if c.progress and rank == 0:
                tqdm.write(_format_record(record))
        previous = self._checkpoint_path("previous.pt")
        if rank == 0 and previous is not None:
            previous.unlink(missing_ok=True)    # the run is complete: last.pt is all a rerun needs
        if distributed:
            dist.barrier()
        return self.history


class GainTrainer(Trainer):
    """Train a :class:`~gainlib.gain.GAIN` model: the step's losses are
    :meth:`GAIN.stream_losses <gainlib.gain.GAIN.stream_losses>` (Eq. 6, 8, 10).

    >>> from gainlib.data import SyntheticScenes
    >>> train_set = SyntheticScenes("train", 8, image_size=32)
    >>> val_set = SyntheticScenes("val", 4, image_size=32)
    >>> model = GAIN.from_name("small_cnn", num_classes=4)
    >>> config = TrainConfig(mode="gain", epochs=1, batch_size=4, progress=False, device="cpu")
    >>> history = GainTrainer(model, config).fit(train_set, val_set)
    >>> sorted(k for k in history[0] if k.startswith("train_"))[:3]
    ['train_am', 'train_cl', 'train_seconds']

    ``fit`` returns the per-epoch history (loss terms, validation metrics, seconds) and,
    with ``checkpoint_dir``, writes ``last.pt`` and ``history.json`` after every epoch.
    """

    def __init__(self, model: GAIN, config: TrainConfig | None = None) -> None:
        if not isinstance(model, GAIN):
            raise TypeError(f"model must be a gainlib GAIN, got {type(model).__name__}; "
                            "wrap a classifier with GAIN(classifier, target_layer)")
        super().__init__(model, config or TrainConfig())
        self._ext_set: Dataset | None = None
        self._ext_batches: Iterator[dict[str, Any]] | None = None
        self._attention_on = False

    def make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "adam":
            params = [p for p in self.model.parameters() if p.requires_grad]
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return super().make_optimizer()

    def make_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        if self.config.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.config.epochs)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)

    def setup(self, train_set: Dataset) -> None:
        self._ext_set = None
        if self.config.mode == "gain_ext":
            indices = extra_label_indices(train_set)
            if not indices:
                raise ValueError("mode='gain_ext' needs samples flagged use_mask or use_boxes; "
                                 "the training set has none")
            self._ext_set = Subset(train_set, indices)

    def _cycle(self, dataset: Dataset, epoch: int, distributed: bool) -> Iterator[dict[str, Any]]:
        """Endless S_e batches; each pass over the subset is reshuffled deterministically."""
        rounds = 0
        while True:
            loader = self._loader(dataset, self.config.ext_batch_size, epoch * 10_007 + rounds,
                                  stream=1, distributed=distributed)
            yield from loader
            rounds += 1

    def epoch_batches(self, train_set: Dataset, epoch: int, distributed: bool) -> DataLoader:
        c = self.config
        self._attention_on = c.mode != "classifier" and epoch >= c.warmup_epochs
        cycle = c.ext_sampling == "cycle" and self._ext_set is not None and self._attention_on
        self._ext_batches = self._cycle(self._ext_set, epoch, distributed) if cycle else None
        return super().epoch_batches(train_set, epoch, distributed)

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        if self._ext_batches is not None:
            ext_batch = _to_device(next(self._ext_batches), self.device, self.memory_format)
        elif (self._ext_set is not None and self._attention_on
              and self.config.ext_sampling == "natural"):
            ext_batch = _flagged_rows(batch)
        else:
            ext_batch = None
        return self.model.stream_losses(batch, ext_batch, attention_mining=self._attention_on)

    def epoch_record(self, epoch: int, means: Mapping[str, float], seconds: float,
                     lr: float) -> dict[str, Any]:
        record = super().epoch_record(epoch, means, seconds, lr)
        return {"epoch": record.pop("epoch"), "lr": record.pop("lr"),
                "attention_losses_on": self._attention_on, **record}

    def validate(self, val_set: Dataset) -> dict[str, float]:
        c = self.config
        return evaluate(self.model, val_set, batch_size=c.batch_size, device=self.device,
                        attention=c.eval_attention, num_workers=c.num_workers)

    def checkpoint_identity(self) -> dict[str, Any]:
        return {**super().checkpoint_identity(), "gain_config": self.model.hyperparameters()}


def _flagged_rows(batch: Mapping[str, Any]) -> dict[str, Any] | None:
    """The samples of a collated batch flagged for S_e, as a batch of their own (``None``
    when there are none)."""
    flagged = batch["use_mask"] | batch["use_boxes"]
    if not bool(flagged.any()):
        return None
    keep = flagged.nonzero()[:, 0].tolist()
    return {k: (v[flagged] if torch.is_tensor(v) and v.ndim and v.shape[0] == len(flagged)
                else [v[i] for i in keep] if isinstance(v, list) else v)
            for k, v in batch.items()}


def _format_record(record: Mapping[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}"]
    parts += [f"{k}={v:.4f}" for k, v in record.items()
              if isinstance(v, float) and k not in ("lr", "train_seconds") and math.isfinite(v)]
    return "  ".join(parts)


def _init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


@torch.no_grad()
def _broadcast_buffers(model: nn.Module) -> None:
    """Give every process rank 0's BatchNorm statistics (DDP syncs them only at a forward)."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


@torch.no_grad()
def _logits(model: GAIN, images: Tensor) -> Tensor:
    return model(images)


def evaluate(model: GAIN, dataset: Dataset | Sequence, batch_size: int = 32,
             device: torch.device | str | None = None, attention: bool = True,
             threshold: float = 0.5, num_workers: int = 0, progress: bool = False) -> dict[str, float]:
    """Classification and attention quality on a dataset.

    Returns ``loss`` (L_cl), ``map`` (mean average precision), ``accuracy`` (per label),
    ``exact_match``; with ``attention=True`` and samples that carry masks, the mean
    ``attention_iou``, ``attention_coverage`` and ``attention_precision`` of the ground-truth
    classes' maps thresholded at ``threshold`` against the class masks (one value per
    image and class, NaN-averaged; :mod:`gainlib.metrics`).

    Raises:
        ValueError: when ``dataset`` is empty (there is nothing to score).
    """
    if len(dataset) == 0:
        raise ValueError("evaluate() needs at least one sample; the dataset is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_samples)
    was_training = model.training
    model.eval()
    all_logits, all_labels, scores = [], [], []
    try:
        for batch in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
            batch = _to_device(batch, device)
            if attention and batch["has_mask"].any():
                out = model.attention(batch["image"], labels=batch["labels"])
                logits = out.logits
                targets, pixel_valid = class_targets_from_mask(batch["mask"], out.classes,
                                                               logits.shape[1])
                keep = out.valid & batch["has_mask"][:, None]
                if keep.any():
                    valid_pixels = pixel_valid[:, None].expand_as(targets)[keep]
                    scores.append(attention_scores(out.maps[keep], targets[keep] > 0.5, threshold,
                                                   valid_pixels))
            else:
                logits = _logits(model, batch["image"])
            all_logits.append(logits.float().cpu())
            all_labels.append(batch["labels"].cpu())
    finally:
        model.train(was_training)
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    accuracy = multilabel_accuracy(logits, labels)
    result = {
        "loss": float(nn.functional.multilabel_soft_margin_loss(logits, labels)),
        "map": float(mean_average_precision(torch.sigmoid(logits), labels)),
        "accuracy": float(accuracy["mean"]),
        "exact_match": float(accuracy["exact_match"]),
    }
    for name in ("iou", "coverage", "precision"):
        if scores:
            result[f"attention_{name}"] = float(torch.cat([s[name] for s in scores]).nanmean())
    return result
