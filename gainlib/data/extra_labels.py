"""Choose which samples may feed their mask / boxes to the extra-supervision streams.

GAIN_ext uses pixel masks (stream S_e^p, Eq. 7-8) or boxes (stream S_e^b, Eq. 9-10) for only
"1~10 percent of the total labels" (Li et al., Sec. 3.2-3.3); the paper's VOC runs use 200,
400, 900 or 1,464 randomly chosen images (Tables 3-4, 7). A dataset advertises this choice
through the ``use_mask`` / ``use_boxes`` flags of its samples; :func:`mark_extra_labels`
sets them. It works on any dataset that has ``ids`` (list of str) and boolean numpy arrays
``use_mask`` and ``use_boxes``, and optionally ``has_mask`` / ``has_boxes`` (which samples
can be chosen at all).
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence, Union

import numpy as np

Selection = Union[int, float, Sequence[str]]

__all__ = ["Selection", "pick_subset", "mark_extra_labels"]


def pick_subset(n_candidates: int, count: int, seed: int, stream: str = "") -> np.ndarray:
    """``count`` of ``range(n_candidates)``, chosen at random from ``seed``; sorted.

    The choice is a prefix of one seeded permutation, so for a fixed seed the subsets are
    nested: the 200 chosen images are among the 400, which are among the 900. ``stream``
    names an independent draw (e.g. ``"pixel"`` and ``"boxes"`` pick independently).
    """
    if not 0 <= count <= n_candidates:
        raise ValueError(f"cannot pick {count} of {n_candidates} candidates")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(stream.encode()),)))
    return np.sort(rng.permutation(n_candidates)[:count])


def _resolve(dataset: Any, selection: Selection, eligible: np.ndarray, seed: int, stream: str) -> np.ndarray:
    n = len(dataset.ids)
    chosen = np.zeros(n, dtype=bool)
    if isinstance(selection, (str, bytes)):
        raise TypeError("pass a list of ids, not a single string")
    if isinstance(selection, (Sequence, np.ndarray)):
        position = {sample_id: i for i, sample_id in enumerate(dataset.ids)}
        unknown = [s for s in selection if s not in position]
        if unknown:
            raise KeyError(f"{len(unknown)} {stream} ids are not in the dataset, e.g. {unknown[:3]}")
        index = np.array([position[s] for s in selection], dtype=np.int64)
        lacking = [dataset.ids[i] for i in index if not eligible[i]]
        if lacking:
            raise ValueError(f"{len(lacking)} samples chosen for {stream} labels have none, e.g. {lacking[:3]}")
        chosen[index] = True
        return chosen
    candidates = np.flatnonzero(eligible)
    if isinstance(selection, (float, np.floating)):
        if not 0.0 <= selection <= 1.0:
            raise ValueError(f"a fraction of samples must be in [0, 1], got {selection}")
        count = int(round(float(selection) * len(candidates)))
    elif isinstance(selection, (int, np.integer)):
        count = int(selection)
    else:
        raise TypeError(f"expected a count, a fraction or a list of ids, got {type(selection).__name__}")
    if count > len(candidates):
        raise ValueError(f"cannot choose {count} samples for {stream} labels: only {len(candidates)} have them")
    chosen[candidates[pick_subset(len(candidates), count, seed, stream)]] = True
    return chosen


def mark_extra_labels(dataset: Any, *, pixel: Selection = 0, boxes: Selection = 0, seed: int = 0) -> Any:
    """Set which samples have ``use_mask`` / ``use_boxes``; returns ``dataset``.

    ``pixel`` and ``boxes`` each take a count (``200``), a fraction of the eligible samples
    (``0.02``) or an explicit list of ids (e.g. read with
    :func:`gainlib.data.voc_layout.read_id_list` from the lists ``get_voc.py`` writes).
    Counts and fractions are drawn with :func:`pick_subset`, pixel and box picks
    independently; previous flags are replaced.
    """
    n = len(dataset.ids)
    has_mask = np.asarray(getattr(dataset, "has_mask", np.ones(n, bool)), dtype=bool)
    has_boxes = np.asarray(getattr(dataset, "has_boxes", np.ones(n, bool)), dtype=bool)
    dataset.use_mask = _resolve(dataset, pixel, has_mask, seed, "pixel")
    dataset.use_boxes = _resolve(dataset, boxes, has_boxes, seed, "boxes")
    return dataset
