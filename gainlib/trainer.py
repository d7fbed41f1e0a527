"""One trainer for every mode: plain classifier, GAIN, and GAIN_ext with pixel masks, boxes
or both, over any dataset that follows :mod:`gainlib.data.protocol`.

Streams per step (all sharing the network's parameters):

* S_cl and S_am run on a batch drawn from the whole training set (image-level labels);
* S_e runs on a batch drawn from the few samples flagged ``use_mask`` / ``use_boxes``
  (the paper's 1-10 % with extra labels), cycling through them as often as needed.

Reproducibility: at the start of every epoch the random state (shuffling, the S_e draw,
dropout) is re-seeded from ``(seed, epoch)``. So a run resumed from the checkpoint written
at the end of an epoch continues exactly as the uninterrupted run would have: the same
final weights. An interrupted epoch is redone from its start.

Distributed: launched with ``torchrun --nproc_per_node=N``, the trainer joins the process
group (NCCL on CUDA, gloo on CPU), wraps the streams in ``DistributedDataParallel`` (one
forward per step, so the multiple passes of GAIN are fine) and shards both samplers.
``batch_size`` is per process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence

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

__all__ = ["TrainConfig", "GainTrainer", "NonFiniteLossError", "evaluate", "extra_label_indices"]

log = logging.getLogger(__name__)

Mode = Literal["classifier", "gain", "gain_ext"]
# Fields that change how a run trains; a checkpoint only resumes a run with the same ones.
_RUNTIME_FIELDS = {"device", "num_workers", "checkpoint_dir", "resume", "progress", "eval_every"}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped, the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Optimisation settings of :class:`GainTrainer`.

    Attributes:
        mode: ``"classifier"`` (L_cl only, the Grad-CAM baseline), ``"gain"`` (Eq. 6) or
            ``"gain_ext"`` (Eq. 8/10: adds S_e on the samples flagged with extra labels).
        epochs, batch_size, lr, momentum, weight_decay: SGD settings (``optimizer="adam"``
            uses Adam with the same lr and weight decay).
        ext_batch_size: samples per step in S_e.
        lr_schedule: ``"constant"`` or ``"cosine"`` (per epoch).
        warmup_epochs: epochs of L_cl alone before S_am/S_e switch on (the public
            implementations pre-train the classifier; the paper starts from ImageNet weights).
        grad_clip: max gradient norm, or ``None``.
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        channels_last: train with the network's weights and the images in NHWC memory
            format: about 20 % faster per step on 2 CPU cores for the book's small CNN, and
            the format tensor cores prefer. The results differ from NCHW only by float rounding.
        seed: seeds everything (see the module notes on reproducibility).
        device: ``"auto"`` (CUDA, then MPS, then CPU), or any torch device string.
        num_workers: DataLoader workers.
        checkpoint_dir: where ``last.pt`` and ``history.json`` are written every epoch.
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
        if self.mode not in ("classifier", "gain", "gain_ext"):
            raise ValueError(f"mode must be 'classifier', 'gain' or 'gain_ext', got {self.mode!r}")
        for name in ("epochs", "batch_size", "ext_batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def run_settings(self) -> dict[str, Any]:
        """The fields that define the training run (everything but runtime plumbing)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RUNTIME_FIELDS}


def extra_label_indices(dataset: Dataset) -> list[int]:
    """Indices of the samples flagged ``use_mask`` or ``use_boxes`` (the S_e stream).

    A dataset may provide ``extra_label_indices()`` itself to avoid loading every sample.
    """
    if hasattr(dataset, "extra_label_indices"):
        return list(dataset.extra_label_indices())
    return [i for i in range(len(dataset))
            if dataset[i].get("use_mask", False) or dataset[i].get("use_boxes", False)]


class _Streams(nn.Module):
    """One forward = one training step's losses, so DistributedDataParallel sees a single
    forward per backward however many passes GAIN makes."""

    def __init__(self, gain: GAIN) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, batch: Mapping[str, Any], ext_batch: Mapping[str, Any] | None,
                attention_mining: bool) -> dict[str, Tensor]:
        return self.gain.stream_losses(batch, ext_batch, attention_mining=attention_mining)


def _epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2 ** 63)


def _to_device(batch: Mapping[str, Any], device: torch.device,
               memory_format: torch.memory_format = torch.preserve_format) -> dict[str, Any]:
    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    if memory_format is not torch.preserve_format:
        moved["image"] = moved["image"].contiguous(memory_format=memory_format)
    return moved


class GainTrainer:
    """Train a :class:`~gainlib.gain.GAIN` model.

    >>> model = GAIN.from_name("small_cnn", num_classes=4)
    >>> history = GainTrainer(model, TrainConfig(mode="gain", epochs=5)).fit(train_set, val_set)

    ``fit`` returns the per-epoch history (loss terms, validation metrics, seconds) and,
    with ``checkpoint_dir``, writes ``last.pt`` and ``history.json`` after every epoch.
    """

    def __init__(self, model: GAIN, config: TrainConfig | None = None) -> None:
        if not isinstance(model, GAIN):
            raise TypeError(f"model must be a gainlib GAIN, got {type(model).__name__}; "
                            "wrap a classifier with GAIN(classifier, target_layer)")
        self.model = model
        self.config = config or TrainConfig()
        self.device = select_device(self.config.device)
        self.history: list[dict[str, Any]] = []

    # -- set-up --------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer != "sgd":
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {c.optimizer!r}")
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        if self.config.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.config.epochs)
        if self.config.lr_schedule != "constant":
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.config.lr_schedule!r}")
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)

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

    def _cycle(self, dataset: Dataset, epoch: int, distributed: bool) -> Iterator[dict[str, Any]]:
        """Endless S_e batches; each pass over the subset is reshuffled deterministically."""
        rounds = 0
        while True:
            loader = self._loader(dataset, self.config.ext_batch_size, epoch * 10_007 + rounds,
                                  stream=1, distributed=distributed)
            yield from loader
            rounds += 1

    # -- checkpoints ---------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        return Path(self.config.checkpoint_dir) / "last.pt" if self.config.checkpoint_dir else None

    def _state(self, epoch: int, optimizer, scheduler) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": self.history,
            "train_config": self.config.run_settings(),
            "gain_config": self.model.hyperparameters(),
        }

    def _save(self, state: dict[str, Any]) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: an interruption never leaves a half-written checkpoint
        history_tmp = path.parent / "history.json.tmp"
        history_tmp.write_text(json.dumps(self.history, indent=1))
        os.replace(history_tmp, path.parent / "history.json")

    def _maybe_resume(self, optimizer, scheduler) -> int:
        path = self._checkpoint_path()
        if path is None or not self.config.resume or not path.exists():
            return 0
        state = torch.load(path, map_location=self.device, weights_only=False)
        expected = {"train_config": self.config.run_settings(),
                    "gain_config": self.model.hyperparameters()}
        for key, value in expected.items():
            if state[key] != value:
                changed = sorted(k for k in set(value) | set(state[key])
                                 if value.get(k) != state[key].get(k))
                raise ValueError(f"checkpoint {path} was written by a run with other settings "
                                 f"({', '.join(changed)}); use another checkpoint_dir or resume=False")
        self.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
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
        ext_set = None
        if c.mode == "gain_ext":
            indices = extra_label_indices(train_set)
            if not indices:
                raise ValueError("mode='gain_ext' needs samples flagged use_mask or use_boxes; "
                                 "the training set has none")
            ext_set = Subset(train_set, indices)
        memory_format = torch.channels_last if c.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=memory_format)
        streams: nn.Module = _Streams(self.model)
        if distributed:
            streams = nn.parallel.DistributedDataParallel(
                streams, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        optimizer = self._optimizer()
        scheduler = self._scheduler(optimizer)
        self.history = []
        start = self._maybe_resume(optimizer, scheduler)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                    if c.amp and self.device.type == "cuda" else nullcontext())
        for epoch in range(start, c.epochs):
            torch.manual_seed(_epoch_seed(c.seed, epoch, stream=2))
            attention_on = c.mode != "classifier" and epoch >= c.warmup_epochs
            loader = self._loader(train_set, c.batch_size, epoch, stream=0, distributed=distributed)
            ext_batches = (self._cycle(ext_set, epoch, distributed)
                           if ext_set is not None and attention_on else None)
            self.model.train()
            started = time.perf_counter()
            sums: dict[str, float] = {}
            seen = 0
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{c.epochs}", leave=False,
                       disable=not c.progress or rank != 0)
            for step, batch in enumerate(bar):
                batch = _to_device(batch, self.device, memory_format)
                ext_batch = (_to_device(next(ext_batches), self.device, memory_format)
                             if ext_batches else None)
                with autocast:
                    losses = streams(batch, ext_batch, attention_on)
                total = losses["total"]
                if not torch.isfinite(total):
                    terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                    kept = self._checkpoint_path()
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({terms}); "
                        + (f"the last good checkpoint is kept at {kept}" if kept and kept.exists()
                           else "no checkpoint was written yet")
                        + ". Lower the learning rate, enable grad_clip or check the data.")
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if c.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                optimizer.step()
                n = batch["image"].shape[0]
                seen += n
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
                bar.set_postfix({k: f"{v / seen:.3f}" for k, v in sums.items()})
            scheduler.step()
            if distributed:
                _broadcast_buffers(self.model)
            record: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                                      "attention_losses_on": attention_on}
            record.update({f"train_{k}": v / max(seen, 1) for k, v in sums.items()})
            record["train_seconds"] = time.perf_counter() - started
            if val_set is not None and ((epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs):
                record.update({f"val_{k}": v for k, v in evaluate(
                    self.model, val_set, batch_size=c.batch_size, device=self.device,
                    attention=c.eval_attention, num_workers=c.num_workers).items()})
            self.history.append(record)
            if rank == 0:
                self._save(self._state(epoch, optimizer, scheduler))
            if c.progress and rank == 0:
                tqdm.write(_format_record(record))
        if distributed:
            dist.barrier()
        return self.history


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
    """
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
                targets, pixel_valid = class_targets_from_mask(batch["mask"], out.classes)
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
