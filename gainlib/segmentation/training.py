"""Training a segmentation network: :class:`SegmentationTrainer` trains with the loss of the
paper's Eq. 11-12, SEC's, or supervised cross entropy, through :class:`gainlib.trainer.Trainer`
(checkpoints, exact resume, the non-finite guard), configured by :class:`SegmentationConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from gainlib.data.protocol import IGNORE_INDEX, collate_samples
from gainlib.losses import weakly_supervised_segmentation_loss
from gainlib.segmentation.crf import Refiner
from gainlib.segmentation.evaluation import predict_segmentation, segmentation_scores
from gainlib.segmentation.sec import sec_loss, sec_refiner
from gainlib.trainer import Trainer, check_loop_settings
from gainlib.validation import check_choice, check_real

__all__ = ["SegmentationLoss", "SegmentationConfig", "SegmentationTrainer"]


#: The losses :class:`SegmentationTrainer` trains with (:attr:`SegmentationConfig.loss`).
SegmentationLoss = Literal["gain", "sec", "supervised"]
_SEG_LOSSES = ("gain", "sec", "supervised")


@dataclass
class SegmentationConfig:
    """Settings of :class:`SegmentationTrainer`; every field's type and range is checked at
    construction (``TypeError``/``ValueError`` naming the field).

    Attributes:
        loss: ``"gain"`` — the paper's ``L_w-s`` on the cues (Eq. 11-12,
            :func:`gainlib.losses.weakly_supervised_segmentation_loss`); ``"sec"`` — SEC's
            ``L_seed + L_expand + L_constrain`` (:func:`~gainlib.segmentation.sec.sec_loss`);
            ``"supervised"`` — pixel-wise cross entropy on the ground-truth ``mask`` (ignore
            255; logits upsampled bilinearly to the mask when their sizes differ), the upper
            bound.
        epochs, batch_size, lr, momentum, weight_decay: SGD with momentum.
        lr_step: the learning rate is ``lr * 0.1 ** floor(t / lr_step)`` (SEC: divided by 10
            every 2,000 of 8,000 iterations), or ``0.5 * lr * (1 + cos(pi * t / epochs))`` when
            ``None``; ``t = epoch + step / steps_per_epoch``, set before every step.
        grad_clip: max gradient norm (> 0), or ``None``.
        amp: bfloat16 autocast on CUDA (off by default: the book's numbers are float32).
        channels_last: NHWC network and images.
        seed: the batch order: ``torch.randperm`` drawn once per epoch from one generator
            seeded with it. The global RNG (dropout) is not re-seeded; its state travels in the
            checkpoint, so a resumed run ends with the uninterrupted run's weights.
        device, num_workers, checkpoint_dir, resume, progress: as :class:`gainlib.trainer.TrainConfig`.
    """

    loss: SegmentationLoss = "gain"
    epochs: int = 6
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_step: float | None = None
    grad_clip: float | None = None
    amp: bool = False
    channels_last: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    checkpoint_dir: str | None = None
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check_choice(self, "loss", _SEG_LOSSES)
        check_loop_settings(self)
        check_real(self, "lr_step", positive=True, optional=True)

    def run_settings(self) -> dict[str, Any]:
        """The fields that define the training run (everything but runtime plumbing)."""
        runtime = {"device", "num_workers", "checkpoint_dir", "resume", "progress"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in runtime}


class _Indexed(Dataset):
    """``(index, sample)``: the batch keeps the indices its cues are looked up by."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class _CollateWithCues:
    """:func:`gainlib.data.collate_samples`, plus ``cues`` (the rows of the samples' indices)."""

    def __init__(self, cues: Tensor | None) -> None:
        self.cues = cues

    def __call__(self, items: Sequence[tuple[int, Any]]) -> dict[str, Any]:
        batch = collate_samples([sample for _, sample in items])
        if self.cues is not None:
            batch["cues"] = self.cues[[index for index, _ in items]]
        return batch


class SegmentationTrainer(Trainer):
    """Train a segmentation network on localization cues (paper Sec. 4) or masks, through the
    loop of :class:`gainlib.trainer.Trainer` (checkpoints, exact resume, non-finite guard,
    progress, DDP).

    >>> from gainlib.data import SyntheticScenes
    >>> from gainlib.segmentation import SmallFCN, output_size
    >>> train_set = SyntheticScenes("train", 8, image_size=32)
    >>> network = SmallFCN(4 + 1, widths=(4, 4, 8), upsample=False)
    >>> cues = torch.zeros(8, 5, *output_size(network, (32, 32)), dtype=torch.bool)
    >>> cues[:, 0, :2] = True                          # background cues on the top rows
    >>> config = SegmentationConfig(loss="gain", epochs=1, batch_size=4, progress=False,
    ...                             device="cpu")
    >>> history = SegmentationTrainer(network, config).fit(train_set, cues=cues)
    >>> [sorted(record) for record in history]
    [['epoch', 'loss', 'train_seconds']]

    Args:
        network: maps ``[B, 3, H, W]`` images to logits ``[B, C + 1, h, w]`` (any output size;
            the cues must be at it).
        config: :class:`SegmentationConfig` (the loss, SGD, learning rate, seed, checkpoints).
        refine: the CRF of ``loss="sec"`` (see
            :func:`~gainlib.segmentation.sec.constrain_targets`); default
            :func:`~gainlib.segmentation.sec.sec_refiner` at the cues' size.

    :meth:`fit` returns the history, one ``{"epoch": e, "loss": mean loss, "train_seconds"}``
    per epoch (and ``val_mIoU`` with a ``val_set``), and leaves the network in training mode. With ``config.checkpoint_dir`` it writes
    ``last.pt`` (network, optimizer, batch-order generator, RNG; read with
    ``weights_only=True``) and ``history.json`` after every epoch, keeps the epoch before as
    ``previous.pt`` until the run completes, and resumes from them (module notes of
    :mod:`gainlib.trainer`). Numerics: SGD with momentum and weight decay, the learning rate of
    :class:`SegmentationConfig` set before every step, batches in the order of
    ``torch.randperm(N, generator=torch.Generator().manual_seed(seed))`` drawn once per epoch
    from that one generator, the global RNG not re-seeded.
    """

    reseed_each_epoch = False

    def __init__(self, network: nn.Module, config: SegmentationConfig | None = None, *,
                 refine: Refiner | None = None) -> None:
        super().__init__(network, config or SegmentationConfig())
        self.refine = refine
        self._refine = refine
        self._order = torch.Generator()
        self._collate = _CollateWithCues(None)

    def fit(self, train_set: Dataset, val_set: Dataset | None = None, *,
            cues: Tensor | None = None) -> list[dict[str, Any]]:
        """Train for ``config.epochs`` epochs (resuming from a checkpoint when there is one).

        Args:
            train_set: protocol samples (:mod:`gainlib.data.protocol`): ``image`` and
                ``labels``; ``mask`` for ``loss="supervised"``.
            val_set: held-out samples with masks, or ``None``: after every epoch the network's
                mIoU on them without the CRF (``val_mIoU`` in the history; the learning curve,
                :func:`~gainlib.segmentation.evaluation.segmentation_scores` of
                :func:`~gainlib.segmentation.evaluation.predict_segmentation`).
            cues: ``bool [N, C + 1, h, w]``, row ``i`` the cues of ``train_set[i]`` at the
                network's output size (e.g. :func:`~gainlib.segmentation.cues.localization_cues`);
                required by ``"gain"`` and ``"sec"``, refused by ``"supervised"`` (it trains on
                the masks).

        Returns:
            ``[{"epoch": 1, "loss": ..., "train_seconds": ...}, ...]``: the mean loss and the
            training seconds of every epoch.
        """
        loss = self.config.loss
        if loss == "supervised":
            if cues is not None:
                raise ValueError("loss='supervised' trains on the ground-truth masks; pass cues=None")
        else:
            if not torch.is_tensor(cues) or cues.dtype != torch.bool or cues.ndim != 4:
                got = (f"{cues.dtype} {list(cues.shape)}" if torch.is_tensor(cues) else type(cues).__name__)
                raise ValueError(f"loss={loss!r} needs cues=bool [N, C + 1, h, w] (one row per training "
                                 f"sample, at the network's output size), got {got}")
            if len(cues) != len(train_set):
                raise ValueError(f"{len(cues)} cue maps for {len(train_set)} training samples")
        self._collate = _CollateWithCues(cues)
        if loss == "sec":
            self._refine = self.refine or sec_refiner(tuple(cues.shape[-2:]))
        self._order.manual_seed(self.config.seed)   # a resumed run restores the generator's state
        return super().fit(train_set, val_set)

    def validate(self, val_set: Dataset) -> dict[str, float]:
        """``{"mIoU": ...}`` of the network on ``val_set`` without the CRF."""
        classes = getattr(val_set, "classes", None)
        if classes is None:
            out = self.model(val_set[0]["image"][None].to(self.device))
            classes = [str(c) for c in range(out.shape[1] - 1)]
        predicted = predict_segmentation(self.model, val_set, batch_size=self.config.batch_size)
        return {"mIoU": segmentation_scores(predicted, val_set, list(classes))["mIoU"]}

    def learning_rate(self, t: float) -> float:
        c = self.config
        if c.lr_step is not None:
            return c.lr * 0.1 ** math.floor(t / c.lr_step)
        return 0.5 * c.lr * (1 + math.cos(math.pi * t / c.epochs))

    def epoch_batches(self, train_set: Dataset, epoch: int, distributed: bool) -> DataLoader:
        order = torch.randperm(len(train_set), generator=self._order).tolist()
        if distributed:   # every process the same number of steps, as DistributedSampler pads
            world, rank = dist.get_world_size(), dist.get_rank()
            order += order[:(-len(order)) % world]
            order = order[rank::world]
        # The loader gets its own generator: without one it would draw its base seed from the
        # global RNG, and dropout would see other numbers than in a plain loop.
        return DataLoader(_Indexed(train_set), batch_size=self.config.batch_size, sampler=order,
                          collate_fn=self._collate, num_workers=self.config.num_workers,
                          generator=torch.Generator(), pin_memory=self.device.type == "cuda")

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        logits = self.model(batch["image"])
        loss = self.config.loss
        if loss == "supervised":
            target = batch["mask"]
            if logits.shape[-2:] != target.shape[-2:]:
                logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
            return {"total": F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)}
        if loss == "gain":                                                            # Eq. 11-12
            return {"total": weakly_supervised_segmentation_loss(logits, batch["cues"], batch["labels"])}
        # The CRF sees the image in NCHW, as a plain loop hands it over.
        sec = sec_loss(logits, batch["cues"], batch["labels"], batch["image"].contiguous(),
                       refine=self._refine)
        return sec._asdict()

    def epoch_record(self, epoch: int, means: Mapping[str, float], seconds: float,
                     lr: float) -> dict[str, Any]:
        return {"epoch": epoch + 1, "loss": means["total"], "train_seconds": seconds}

    def checkpoint_identity(self) -> dict[str, Any]:
        return {**super().checkpoint_identity(), "network": type(self.model).__name__}

    def extra_state(self) -> dict[str, Any]:
        return {"order_generator": self._order.get_state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._order.set_state(state["order_generator"].cpu())
