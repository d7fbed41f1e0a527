"""Batches of a dataset (or of some of its samples) in order, collated by the protocol."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from torch.utils.data import Dataset

from gainlib.data.protocol import collate_samples

__all__ = ["iter_batches"]


def iter_batches(dataset: Dataset, indices: Sequence[int] | None = None,
                 batch_size: int = 64) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """``(indices, batch)`` for consecutive chunks of ``indices`` (default: every sample), each
    batch made by :func:`~gainlib.data.protocol.collate_samples`.

    >>> from gainlib.data import SyntheticScenes
    >>> scenes = SyntheticScenes("val", 5, image_size=32)
    >>> [(chunk, tuple(batch["image"].shape)) for chunk, batch in iter_batches(scenes, batch_size=3)]
    [([0, 1, 2], (3, 3, 32, 32)), ([3, 4], (2, 3, 32, 32))]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        yield chunk, collate_samples([dataset[i] for i in chunk])
