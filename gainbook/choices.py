"""The implementation choices the paper leaves open, as factors of a one-at-a-time design.

Each factor of :data:`FACTORS` lists the levels it is measured at besides gainlib's default
(:class:`~gainlib.gain.GainConfig`); the ``"preset"`` factor holds the full configuration of
each public implementation (:mod:`gainlib.presets`). :func:`choice_methods` turns factors into
:class:`~gainbook.chapters.Method` records (GAIN or GAIN_ext fine-tuned from the chapter-1
classifier, differing from the default run only in that factor), and :func:`choice_scores`
measures one trained model the way chapter 7 compares them: classification in distribution
and without context, the share of the attention on the object (threshold-free), what
attention mining sees, and whether the run collapsed.

The design runs on one or more bases (:data:`BASES`, :func:`base_method`): GAIN on the small
CNN (its head pools globally), GAIN on the same CNN with a fully-connected head after the
Grad-CAM layer (where the second-order term of trainable Grad-CAM weights has parameters to
reach, as in the paper's VGG16), and GAIN_ext^p, on which the extra-supervision weight is
measured. :func:`choice_design` crosses bases and factors, :func:`choice_records` scores
every run and :func:`choice_verdicts` compares each level with its base's default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
from torch import nn

from gainbook.chapters import GAIN, Method, extra_supervision
from gainbook.paper import extra_label_count
from gainbook.profiles import BookProfile
from gainbook.runs import RunSpec
from gainbook.stats import compare_records, decided_verdict
from gainbook.studies import mining_scores
from gainlib.data import iter_batches
from gainlib.metrics import attention_mass
from gainlib.models import eval_mode
from gainlib.presets import PRESETS, preset_fields
from gainlib.trainer import evaluate

__all__ = ["FACTORS", "PROFILE_FACTORS", "PROFILE_LEVELS", "COLLAPSE_MAP", "MARGIN", "BASES",
           "EXT_PAPER_COUNT", "OnBackbone", "Level", "base_method", "choice_methods",
           "choice_design", "choice_scores", "choice_records", "choice_verdicts",
           "object_attention"]

#: factor -> levels other than gainlib's default, each ``(label, GainConfig fields)``.
FACTORS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "Grad-CAM weights": [("detached", {"detach_weights": True})],
    "map normalisation": [("min-max", {"normalization": "minmax"}),
                          ("batch min-max", {"normalization": "batch_minmax"}),
                          ("max, constant", {"detach_normalizer": True})],
    "score L_am minimises": [("logit", {"am_score": "logit"}),
                             ("softmax", {"am_score": "softmax"}),
                             ("max-softmax", {"am_score": "max_softmax"})],
    "BatchNorm in S_am": [("running averages", {"am_batchnorm": "eval"}),
                          ("masked batch's own", {"am_batchnorm": "train"})],
    "sigma / omega": [("0.25 / 100", {"sigma": 0.25, "omega": 100.0}),
                      ("0.7 / 1e5 (a step)", {"sigma": 0.7, "omega": 1e5})],
    "fill of the erased region": [("mean (Eq. 3)", {"fill": "mean"}), ("black", {"fill": "zero"}),
                                  ("noise", {"fill": "noise"})],
    "alpha (weight of L_am)": [("0.2", {"alpha": 0.2}), ("5", {"alpha": 5.0})],
    "extra-supervision weight": [("1", {"ext_weight": 1.0}), ("30", {"ext_weight": 30.0})],
    "preset": [(f"as {name}", preset_fields(name)) for name in PRESETS if name != "gainlib"],
}

#: The factors each profile measures (the full design needs more runs than the default book's
#: 20 minutes allow; ``factors=`` of chapter 7 asks for any others).
PROFILE_FACTORS: dict[str, list[str]] = {
    "ci": ["fill of the erased region"],
    # The fill first: on an independent biased set it changed a counterfactual accuracy more
    # than any other knob. More factors do not fit the default book's 20 minutes yet.
    "default": ["fill of the erased region"],
    "pretrained": ["Grad-CAM weights", "fill of the erased region", "preset"],
    "paper": list(FACTORS),
}

#: Levels a profile keeps of a factor (all levels otherwise). The default book measures the
#: mean (Eq. 3 exactly) against gainlib's blur only; black and noise did not fit its time
#: budget (chapter 5's bias family measures noise).
PROFILE_LEVELS: dict[str, dict[str, tuple[str, ...]]] = {
    "default": {"fill of the erased region": ("mean (Eq. 3)",)},
}

#: A run counts as collapsed when its validation mAP falls below this (on the synthetic
#: scenes a constant answer scores about 0.3-0.4).
COLLAPSE_MAP = 0.5

#: The smallest difference that counts: one point (of attention share or mAP).
MARGIN = 0.01

#: What the design can be run on (chapter 7's ``bases``): GAIN on the small CNN as the other
#: chapters train it (global average pooling before the MLP head), GAIN on the same CNN with a
#: fully-connected head after the Grad-CAM layer (:class:`gainlib.models.SmallCNN`,
#: ``head="fc"``; its own chapter-1 classifier), and GAIN_ext^p with masks on chapter 3's
#: largest count (:data:`EXT_PAPER_COUNT`).
BASES: tuple[str, ...] = ("GAIN", "GAIN, FC head", "GAIN_ext^p")

#: GAIN_ext^p's images with masks: the paper's 1,464 of 10,582 (Table 1, chapter 3's largest
#: count), scaled to the training set (:func:`gainbook.paper.extra_label_count`).
EXT_PAPER_COUNT = 1464


@dataclass(frozen=True)
class OnBackbone(Method):
    """A :class:`~gainbook.chapters.Method` trained on another backbone than the profile's,
    from that backbone's own classifier (e.g. ``"small_cnn_fc"``: the profile's small CNN
    with a fully-connected head, same widths)."""

    backbone: str = "small_cnn_fc"

    def spec(self, settings: BookProfile, seed: int) -> RunSpec:
        if settings.backbone != "small_cnn":
            raise ValueError(f"{self.name} swaps the small CNN's head; the profile trains "
                             f"{settings.backbone!r}, not 'small_cnn'")
        return super().spec(replace(settings, backbone=self.backbone), seed)


def base_method(name: str, n_train: int) -> Method:
    """The method :data:`BASES` names, for a training set of ``n_train`` images (the count of
    GAIN_ext^p's masks)."""
    if name == "GAIN":
        return GAIN
    if name == "GAIN, FC head":
        return OnBackbone("GAIN (FC head)", "gain", backbone="small_cnn_fc")
    if name == "GAIN_ext^p":
        return extra_supervision("p", extra_label_count(EXT_PAPER_COUNT, n_train))
    raise KeyError(f"unknown base {name!r}; choose from {list(BASES)}")


class Level(NamedTuple):
    """One row of the design: ``method`` is ``base`` with ``factor`` at ``level`` (the base's
    own row has factor ``"default"`` and level ``"gainlib"``)."""

    base: Method
    factor: str
    level: str
    method: Method


def choice_methods(base: Method, factors: Sequence[str],
                   levels: Mapping[str, Sequence[str]] | None = None,
                   ) -> list[tuple[str, str, Method]]:
    """``(factor, level, method)`` for every level of ``factors``: ``base`` (GAIN or
    GAIN_ext) with that level's fields; the first row is ``base`` itself, gainlib's default.
    ``levels`` keeps only the named levels of a factor (e.g. :data:`PROFILE_LEVELS`). The
    extra-supervision weight is measured on GAIN_ext only."""
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        raise KeyError(f"unknown factors {unknown}; choose from {list(FACTORS)}")
    levels = dict(levels or {})
    for factor, kept in levels.items():
        missing = sorted(set(kept) - {level for level, _ in FACTORS.get(factor, [])})
        if missing:
            raise KeyError(f"factor {factor!r} has no levels {missing}")
    rows = [("default", "gainlib", base)]
    for factor in factors:
        if factor == "extra-supervision weight" and base.mode != "gain_ext":
            continue
        for level, fields in FACTORS[factor]:
            if factor in levels and level not in levels[factor]:
                continue
            gain = tuple(sorted({**dict(base.gain), **fields}.items()))
            # replace keeps the base's class and backbone (OnBackbone)
            rows.append((factor, level, replace(base, name=f"{base.short}, {factor}: {level}",
                                                gain=gain)))
    return rows


def choice_design(bases: Sequence[Method], factors: Sequence[str],
                  levels: Mapping[str, Sequence[str]] | None = None) -> list[Level]:
    """:func:`choice_methods` of every base, as :class:`Level` rows (each base's own row
    first)."""
    return [Level(base, *row) for base in bases for row in choice_methods(base, factors, levels)]


def object_attention(model: nn.Module, scenes: Any, batch_size: int = 64) -> float:
    """The mean share of each true class's Grad-CAM mass inside that object's mask
    (:func:`gainlib.metrics.attention_mass`) on a synthetic split: threshold-free."""
    device = next(model.parameters()).device
    shares = []
    with eval_mode(model):
        for index, batch in iter_batches(scenes, batch_size=batch_size):
            out = model.attention(batch["image"].to(device), labels=batch["labels"].to(device))
            valid, classes = out.valid.cpu(), out.classes.cpu()
            objects = torch.as_tensor(scenes.masks[index])[:, None] == (classes + 1)[..., None, None]
            shares.append(attention_mass(out.maps.detach().cpu()[valid], objects[valid]))
    return float(torch.cat(shares).nanmean())


def choice_scores(model: nn.Module, splits: Mapping[str, Any]) -> dict[str, float]:
    """What chapter 7 measures of one model: ``mAP val`` and ``mAP no_context``, the
    ``attention on object`` (:func:`object_attention` on val), ``s(I)`` and ``s(I*)``
    (:func:`gainbook.studies.mining_scores` on val, erased with the model's own fill) and
    ``collapsed`` (1 when the val mAP is below :data:`COLLAPSE_MAP`)."""
    val, no_context = splits["val"], splits["no_context"]
    scores = {"mAP val": evaluate(model, val, attention=False)["map"],
              "mAP no_context": evaluate(model, no_context, attention=False)["map"],
              "attention on object": object_attention(model, val)}
    mining = mining_scores(model, val)
    scores.update({"s(I)": mining["s(I)"], "s(I*)": mining["s(I*)"],
                   "collapsed": float(scores["mAP val"] < COLLAPSE_MAP)})
    return scores


def choice_records(design: Sequence[Level], models: Mapping[Method, Mapping[int, nn.Module | None]],
                   splits: Mapping[str, Any], draw_of: Callable[[int], int] | None = None,
                   ) -> list[dict[str, Any]]:
    """One record per design row and seed: ``base`` (its label), ``factor``, ``level``,
    ``method``, ``seed`` (and its training-set ``draw``, given ``draw_of``) and
    :func:`choice_scores`; a diverged run (model ``None``) has only ``collapsed`` 1."""
    return [{"base": row.base.label, "factor": row.factor, "level": row.level,
             "method": row.method, **({"draw": draw_of(seed)} if draw_of else {}), "seed": seed,
             **({"collapsed": 1.0} if model is None else choice_scores(model, splits))}
            for row in design for seed, model in models[row.method].items()]


def choice_verdicts(design: Sequence[Level], records: Sequence[Mapping[str, Any]],
                    models: Mapping[Method, Mapping[int, nn.Module | None]],
                    measures: Sequence[str] = ("attention on object", "mAP val"),
                    margin: float = MARGIN) -> list[dict[str, Any]]:
    """Every level against its base's default on ``measures``: the paired difference over
    runs (seed and draw) with its bootstrap interval and the verdict on "better by more than
    ``margin``" (:func:`gainbook.stats.compare_records`); ``"diverged"`` when a run of the
    level or of its base diverged."""
    rows = []
    for row in design:
        if row.method == row.base:
            continue
        diverged = None in models[row.method].values() or None in models[row.base].values()
        for measure in measures:
            if diverged:
                found = {"metric": measure, "verdict": "diverged"}
            else:   # below 5 runs of 2 draws: "inconclusive", whatever the interval
                found = compare_records(records, measure, row.method, row.base, margin=margin)
                found["verdict"] = decided_verdict(found)
            rows.append({"base": row.base.label, "factor": row.factor, "level": row.level,
                         **found})
    return rows
