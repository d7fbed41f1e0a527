"""Preconditions of a claim: measured on trained models, printed before the claim.

An experiment can only decide a claim if it could come out either way. The Biased Boat test
(Sec. 5.1, Table 7) asks whether GAIN makes a context-biased classifier recognise boats without
water; it cannot succeed if boats are not recognisable without water at all, nor if attention
mining (Eq. 3-5) has nothing left to mine, nor if the erased image itself is a cue. Each
function here measures one of these on trained models and returns :class:`Precondition`
records (value, threshold, pass/fail) for a chapter to print before it states the claim:

* **oracle** (:func:`oracle_checks`): a classifier trained on the same task *without* the bias
  (``context_bias = 0.5``, :func:`oracle_spec`) must rank "boat without water" above "water
  without boat" (threshold-free AUC, :func:`gainlib.metrics.binary_auroc`), and each class on
  ``no_context`` above the images without it. If it cannot, the objects are not learnable
  without their context and the test measures nothing about attention.
* **something to mine** (:func:`mining_checks`): the share of the classifier's own erased images
  (its soft mask, Eq. 3-4) that still score positive (:func:`gainbook.studies.mining_scores`).
  When erasing what the classifier attends to already removes all evidence, L_am (Eq. 5) can
  only be lowered by lowering s(I) on intact images.
* **the erasure is not a cue** (:func:`erasure_checks`): erasing the attended region must lower
  the class score more than erasing a region of the same shape and area elsewhere, and a hole
  must not make a negative image score as the class (the "hole detector"); both erase with the
  model's own fill (:func:`erase_with_fill`), as S_am does in training. The deletion curves of
  :func:`gainlib.metrics.deletion_insertion` give the threshold-free version of the first.

:func:`measure_preconditions` trains (through the run cache) the oracle beside a classifier
run and returns every record; :func:`preconditions_table` lays records out for printing.
The thresholds are fixed before measuring (defaults of the functions), never fitted to a result.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from gainbook.cache import code_digest, write_text_atomic
from gainbook.formatting import significant
from gainbook.stats import compare_records
from gainbook.runs import DataSpec, RunSpec, load_split, train_runs
from gainbook.studies import mining_scores
from gainlib.data import iter_batches
from gainlib.data.render_scenes import CLASSES
from gainlib.masking import masked_image, soft_mask
from gainlib.metrics import binary_auroc, deletion_insertion
from gainlib.models import eval_mode

__all__ = ["Precondition", "oracle_spec", "counterfactual_aucs", "oracle_checks", "mining_checks",
           "shifted_masks", "erase_with_fill", "erasure_scores", "erasure_checks",
           "measure_preconditions", "preconditions_table",
           "orientation_checks", "ORIENTATION_ORACLE_MIN", "headroom_check", "HEADROOM_MIN",
           "settled_check", "SETTLED_MAX"]

BOAT = CLASSES.index("boat")


@dataclass(frozen=True)
class Precondition:
    """One measured precondition.

    Attributes:
        name: what is measured, e.g. ``"oracle: AUC boat without water vs water without boat"``.
        value: the measurement.
        threshold: the value it must reach.
        higher_is_better: pass when ``value >= threshold`` (else when ``value <= threshold``).
        detail: numbers that explain the value (not judged), e.g. ``{"s(I)": 0.65}``.
    """

    name: str
    value: float
    threshold: float
    higher_is_better: bool = True
    detail: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the value reaches the threshold (a NaN value never does)."""
        if self.value != self.value:
            return False
        return self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold

    def record(self) -> dict[str, Any]:
        """``{"precondition", "value", "threshold", "passed", **detail}`` for a table."""
        sign = ">=" if self.higher_is_better else "<="
        return {"precondition": self.name, "value": self.value, "threshold": f"{sign} {self.threshold:g}",
                "passed": self.passed, **self.detail}

    def __str__(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        return (f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.value:.3f} "
                f"(needs {sign} {self.threshold:g})")


def oracle_spec(classifier: RunSpec) -> RunSpec:
    """The oracle of ``classifier``: the same run on the same task without the context bias
    (``context_bias = 0.5``: a class's context appears as often without the class as with it)."""
    if classifier.data.dataset != "synthetic":
        raise ValueError(f"the oracle needs the synthetic scenes (a context_bias to remove), "
                         f"got dataset {classifier.data.dataset!r}")
    return replace(classifier, data=replace(classifier.data, context_bias=0.5))


@torch.no_grad()
def _logits(model: nn.Module, dataset: Dataset, batch_size: int = 128) -> tuple[Tensor, Tensor]:
    """``(logits [N, C], labels [N, C])`` of every sample."""
    device = next(model.parameters()).device
    logits, labels = [], []
    with eval_mode(model):
        for _, batch in iter_batches(dataset, batch_size=batch_size):
            logits.append(model(batch["image"].to(device)).float().cpu())
            labels.append(batch["labels"] > 0.5)
    return torch.cat(logits), torch.cat(labels)


def counterfactual_aucs(model: nn.Module, data: DataSpec) -> dict[str, float]:
    """Threshold-free scores of ``model`` on the counterfactual splits of ``data``.

    Returns:
        ``{"biased_boat AUC": AUC of the boat logit, boats without water against water without
        boats (Table 7's two halves); "no_context AUC <class>": per class, images with the class
        (never on its context) against those without it}``.
    """
    logits, labels = _logits(model, load_split(data, "biased_boat"))
    out = {"biased_boat AUC": float(binary_auroc(logits[:, BOAT], labels[:, BOAT]))}
    scenes = load_split(data, "no_context")
    logits, labels = _logits(model, scenes)
    for name, auc in zip(scenes.classes, binary_auroc(logits, labels).tolist()):
        out[f"no_context AUC {name}"] = auc
    return out


def oracle_checks(oracle: nn.Module, data: DataSpec, *, boat_auc: float = 0.95,
                  class_auc: float = 0.90) -> list[Precondition]:
    """Is the task learnable without the bias? ``oracle`` is a model trained with
    ``context_bias = 0.5`` (:func:`oracle_spec`); ``data`` the data of the claim (its
    counterfactual splits do not depend on the bias). One record for the Biased Boat AUC
    (``>= boat_auc``) and one per class for ``no_context`` (``>= class_auc``)."""
    aucs = counterfactual_aucs(oracle, data)
    checks = [Precondition("oracle: AUC boat without water vs water without boat",
                           aucs.pop("biased_boat AUC"), boat_auc)]
    checks += [Precondition(f"oracle: {name}", value, class_auc) for name, value in aucs.items()]
    return checks


def mining_checks(classifier: nn.Module, dataset: Dataset, *,
                  min_survives: float = 0.20) -> list[Precondition]:
    """Is there something for attention mining to mine? The share of (image, true class) pairs
    of ``dataset`` whose image, erased with the classifier's own soft mask (Eq. 3-4), still
    scores above 0.5 must be at least ``min_survives``; ``s(I)`` and ``s(I*)`` come along."""
    scores = mining_scores(classifier, dataset)
    return [Precondition("mining: share of erased images still scoring positive", scores["survives"],
                         min_survives, detail={"s(I)": scores["s(I)"], "s(I*)": scores["s(I*)"],
                                               "erased": scores["erased"]})]


def shifted_masks(masks: Tensor, generator: torch.Generator) -> Tensor:
    """Each ``[H, W]`` mask of ``masks [N, H, W]`` moved circularly by a random offset of a quarter
    to three quarters of the image each way: the same shape and area, elsewhere (as the
    ``"shifted"`` baseline of :func:`gainlib.metrics.deletion_insertion`)."""
    height, width = masks.shape[-2:]
    out = torch.empty_like(masks)
    for i in range(masks.shape[0]):
        dy = int(torch.randint(height // 4, height - height // 4 + 1, (1,), generator=generator))
        dx = int(torch.randint(width // 4, width - width // 4 + 1, (1,), generator=generator))
        out[i] = torch.roll(masks[i], (dy, dx), dims=(-2, -1))
    return out


def erase_with_fill(model: nn.Module, images: Tensor, masks: Tensor) -> Tensor:
    """``images [B, 3, H, W]`` erased by ``masks [B, H, W]`` (Eq. 4) with ``model``'s own fill
    and its settings (``model.config``: fill, blur sigma, normalisation), so that a check sees the
    erased images S_am showed the model in training, not Eq. 3's mean when it trained with
    another fill."""
    config = model.config
    return masked_image(images, masks[:, None], config.fill, blur_sigma=config.blur_sigma,
                        mean=config.image_mean, std=config.image_std)[:, 0]


def erasure_scores(model: nn.Module, dataset: Dataset, *, batch_size: int = 64, steps: int = 8,
                   seed: int = 0) -> dict[str, float]:
    """What erasing does to the class score, beside what erasing the attended region does.

    Over (image, true class) pairs, with the model's soft masks ``T(A^c)`` (Eq. 3-4, its sigma
    and omega), erased with the model's own fill (:func:`erase_with_fill`):

    * ``s(I)``, ``s(I*) attended``: the class probability of the image and of the image with
      the attended region erased; ``s(I*) elsewhere``: with the same mask moved elsewhere
      (:func:`shifted_masks`), so the same area erased where the model did not look;
    * ``deletion AUC attended`` / ``deletion AUC elsewhere``: the areas under the deletion
      curves of :func:`gainlib.metrics.deletion_insertion` (``steps`` steps, orders
      ``"attention"`` and ``"shifted"``): the threshold-free version of the two above.

    Over (image, absent class) pairs, the *hole detector*: ``negatives s(I)`` and ``negatives
    s(I with hole)``, the absent class's probability before and after erasing a hole: the
    moved mask of a random (image, true class) pair of the batch (the typical erased area);
    ``negatives turned positive``: the share of negatives below 0.5 before and above after.
    """
    device = next(model.parameters()).device
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    sums = {k: 0.0 for k in ("s(I)", "s(I*) attended", "s(I*) elsewhere", "deletion AUC attended",
                             "deletion AUC elsewhere", "negatives s(I)", "negatives s(I with hole)",
                             "negatives turned positive")}
    n_pos = n_neg = 0

    def prob(images: Tensor) -> Tensor:
        return torch.sigmoid(model(images)).float()

    with eval_mode(model):
        for _, batch in iter_batches(dataset, batch_size=batch_size):
            images, labels = batch["image"].to(device), batch["labels"].to(device)
            out = model.attention(images, labels=labels)
            if not out.valid.any():
                continue
            with torch.no_grad():
                maps = out.maps.detach()[out.valid]                       # [P, H, W]
                owner = torch.nonzero(out.valid)[:, 0]                    # the image of each pair
                classes = out.classes[out.valid]
                mask = soft_mask(maps, config.sigma, config.omega)
                elsewhere = shifted_masks(mask, generator)
                pair_images = images[owner]
                pick = classes[:, None]
                sums["s(I)"] += prob(pair_images).gather(1, pick).sum().item()
                for key, m in (("s(I*) attended", mask), ("s(I*) elsewhere", elsewhere)):
                    erased = erase_with_fill(model, pair_images, m)
                    sums[key] += prob(erased).gather(1, pick).sum().item()
                for key, order in (("deletion AUC attended", "attention"), ("deletion AUC elsewhere", "shifted")):
                    curves = deletion_insertion(prob, pair_images, maps, classes, steps=steps,
                                                order=order, seed=seed)
                    sums[key] += curves["deletion_auc"].sum().item()
                n_pos += len(classes)

                # The hole detector: every image gets a hole borrowed from a random pair.
                holes = elsewhere[torch.randint(len(elsewhere), (len(images),), generator=generator)]
                before = prob(images)
                after = prob(erase_with_fill(model, images, holes))
                negative = labels < 0.5
                sums["negatives s(I)"] += before[negative].sum().item()
                sums["negatives s(I with hole)"] += after[negative].sum().item()
                sums["negatives turned positive"] += ((before < 0.5) & (after > 0.5))[negative].sum().item()
                n_neg += int(negative.sum())
    return {k: v / max(n_neg if k.startswith("negatives") else n_pos, 1) for k, v in sums.items()}


def erasure_checks(model: nn.Module, dataset: Dataset, *, min_gap: float = 0.10,
                   max_hole_rise: float = 0.05, seed: int = 0) -> list[Precondition]:
    """Is the erasure itself no cue? Two records (from :func:`erasure_scores`):

    * erasing the attended region lowers the class score at least ``min_gap`` more than
      erasing the same area elsewhere (``s(I*) elsewhere - s(I*) attended``; a smaller gap
      means the hole, not what it removed, moves the score, or the map points at nothing);
    * a hole raises an absent class's mean probability by at most ``max_hole_rise``.
    """
    s = erasure_scores(model, dataset, seed=seed)
    return [
        Precondition("erasure: s(I*) elsewhere - s(I*) attended", s["s(I*) elsewhere"] - s["s(I*) attended"],
                     min_gap, detail={k: s[k] for k in ("s(I)", "s(I*) attended", "s(I*) elsewhere",
                                                        "deletion AUC attended", "deletion AUC elsewhere")}),
        Precondition("erasure: hole detector, rise of an absent class's s(I)",
                     s["negatives s(I with hole)"] - s["negatives s(I)"], max_hole_rise,
                     higher_is_better=False,
                     detail={k: s[k] for k in ("negatives s(I)", "negatives s(I with hole)",
                                               "negatives turned positive")}),
    ]


def measure_preconditions(classifier: RunSpec, cache_dir: str | os.PathLike | None = None, *,
                          split: str = "val", device: str = "cpu", progress: bool = False,
                          oracle: bool = True,
                          mining_runs: Sequence[RunSpec] = ()) -> list[Precondition]:
    """Every precondition of the Biased Boat claim for the classifier run ``classifier``.

    Trains (or loads from the run cache) the classifier and its oracle (:func:`oracle_spec`),
    then measures :func:`oracle_checks` on the oracle and :func:`mining_checks` and
    :func:`erasure_checks` on the classifier, on its ``split`` (default ``"val"``: held-out
    images of the training distribution, a quarter of the cost of ``"train"``, the images
    attention mining sees while GAIN trains). ``oracle=False`` leaves the oracle out (chapter
    2 judges attention mining, not the bias).

    ``mining_runs`` are more classifier runs (the other seeds): "something to mine" is then the
    mean of every run's share, with the runs' count and their lowest and highest share in its
    detail. It is the check nearest its threshold on the book's benchmarks, where one seed's
    classifier may pass it and the benchmark not.

    Each classifier's checks are stored beside its cached model, keyed by the split and by
    this module's code, so a second chapter asking for them reads them instead of measuring
    again (the deletion curves are most of a chapter's non-training time).
    """
    for run in (classifier, *mining_runs):
        if run.train.mode != "classifier":
            raise ValueError(f"the preconditions are measured on a plain classifier run, got "
                             f"mode {run.train.mode!r}")
    specs = [classifier, oracle_spec(classifier)] if oracle else [classifier]
    trained, *oracles = train_runs(specs, cache_dir, device=device, progress=progress)
    others = train_runs(list(mining_runs), cache_dir, device=device, progress=progress)
    dataset = None

    def stored(run: Any, what: str, measure: Any) -> list[Precondition]:
        nonlocal dataset
        path = run.path / f"preconditions-{what}-{split}-{code_digest(__name__)[:16]}.json"
        if path.exists():
            return [Precondition(**fields) for fields in json.loads(path.read_text())]
        if dataset is None:
            dataset = load_split(classifier.data, split)
        checks = measure(run.model, dataset)
        write_text_atomic(path, json.dumps([asdict(check) for check in checks]))
        return checks

    minings = [stored(run, "mining", mining_checks)[0] for run in (trained, *others)]
    erasure = stored(trained, "erasure",
                     lambda model, data: erasure_checks(model, data, seed=classifier.train.seed))
    found = [*oracle_checks(oracles[0].model, classifier.data)] if oracle else []
    return [*found, _mean_of_runs(minings), *erasure]


def _mean_of_runs(checks: Sequence[Precondition]) -> Precondition:
    """One check from the same check measured on several runs: the mean value and detail, and
    (for more than one run) the runs' count and lowest and highest value."""
    if len(checks) == 1:
        return checks[0]
    values = [check.value for check in checks]
    detail = {key: sum(c.detail[key] for c in checks) / len(checks) for key in checks[0].detail}
    detail.update({"runs": float(len(checks)), "lowest run": min(values),
                   "highest run": max(values)})
    return replace(checks[0], value=sum(values) / len(values), detail=detail)


#: What the orientation oracle must reach on set 2 (:func:`orientation_checks`).
ORIENTATION_ORACLE_MIN = 0.9


def orientation_checks(records: Sequence[Mapping[str, Any]], *, oracle: Any, classifier: Any,
                       min_accuracy: float = ORIENTATION_ORACLE_MIN,
                       test_set: str = "set 2") -> list[Precondition]:
    """The preconditions of an orientation claim (Sec. 5.2-5.3), from chapter 6's records
    (``{"method", "seed", "accuracy, set 2", "follows lighting, set 2", ...}``) on
    ``test_set`` (set 2, the shifted domain, or ``"random lamp"``, the training domain with the
    lamp's bias broken), where the lamp comes from a random direction:

    * the ``oracle`` (trained where the lamp tells nothing) reaches ``min_accuracy``: the task
      can be solved there at this scale;
    * the ``classifier`` names the class the lamp points to more often than the true class
      (``follows lighting - accuracy >= 0``): there is a shortcut for the extra labels to
      remove. (On set 1 the lamp points at the true class, so following it there says
      nothing.)

    >>> rows = [{"method": "o", "accuracy, set 2": 0.95, "follows lighting, set 2": 0.5},
    ...         {"method": "c", "accuracy, set 2": 0.5, "follows lighting, set 2": 0.9}]
    >>> [c.passed for c in orientation_checks(rows, oracle="o", classifier="c")]
    [True, True]
    """
    def mean(method: Any, metric: str) -> float:
        values = [float(r[metric]) for r in records if r["method"] == method]
        return sum(values) / len(values) if values else float("nan")

    follows = mean(classifier, f"follows lighting, {test_set}")
    accuracy = mean(classifier, f"accuracy, {test_set}")
    return [Precondition(f"oracle (no shortcut): accuracy on {test_set}",
                         mean(oracle, f"accuracy, {test_set}"), min_accuracy),
            Precondition(f"classifier follows the lamp more than the object on {test_set}: "
                         "follows lighting - accuracy", follows - accuracy, 0.0,
                         detail={"follows lighting": follows, "accuracy": accuracy})]


#: How far an upper bound must stay above what it bounds (:func:`headroom_check`): the paired
#: interval above zero and not all within a point of it, the scorecard's standard of a
#: difference that matters (:data:`gainbook.scorecard.NEGLIGIBLE`).
HEADROOM_MIN = 0.01


def headroom_check(records: Sequence[Mapping[str, Any]], metric: str, bound: Any, best: Any,
                   *, what: str, also: Any = None, min_gap: float = HEADROOM_MIN,
                   **filters: Any) -> Precondition:
    """Is there room for more of something to help? A claim like "more labels give better
    attention" (the smallest count against the largest) can come out either way only if the
    smallest count, ``best`` here, stays measurably below an upper ``bound`` (the same labels
    on every training image). Measurably, as the scorecard reads a difference: the paired
    interval of ``bound - best`` on ``metric`` lies above zero and reaches ``min_gap`` (a
    point; an interval all within it is a negligible gap). The value is
    ``min(low, high - min_gap)``, which is at least 0 exactly then. Where the smallest count
    sits at the bound, a flat curve would say nothing. ``also`` (the largest count) adds its
    own gap to the bound to the detail: how far the claim's range reaches towards the
    ceiling. ``records`` are paired by run as in :func:`gainbook.stats.compare_records`;
    ``filters`` select records (e.g. ``split="val"``); ``what`` names the bound in the
    check's name. One run has no interval: the check then fails.

    >>> rows = [{"method": m, "seed": s, "draw": s % 2, "iou": v + s / 100}
    ...         for s in range(5) for m, v in (("all", 0.6), ("19", 0.5), ("138", 0.6))]
    >>> check = headroom_check(rows, "iou", "all", "19", what="masks on every image", also="138")
    >>> check.passed, round(check.detail["largest's gap"], 2)
    (True, 0.0)
    """
    chosen = [r for r in records if all(r.get(k) == v for k, v in filters.items())]
    row = compare_records(chosen, metric, bound, best)
    detail = {"difference": row["difference"], "low": row["low"], "high": row["high"]}
    if also is not None:
        detail["largest's gap"] = compare_records(chosen, metric, bound, also)["difference"]
    low, high = row["low"], row["high"]
    value = float("nan") if low != low or high != high else min(low, high - min_gap)
    return Precondition(f"headroom: {what} above {best}, {metric} (the interval above 0 and "
                        f"reaching {min_gap:g})", value, 0.0, detail=detail)


#: How much a learning curve may still move in its last epoch to count as settled: one point.
SETTLED_MAX = 0.01


def settled_check(curves: Mapping[str, Sequence[Sequence[float]]], *, what: str,
                  max_change: float = SETTLED_MAX) -> Precondition:
    """Have the networks finished learning? ``curves`` maps each kind of network to the
    learning curves of its runs (a metric after every epoch, e.g. val mIoU); for each kind the
    mean over runs of the last epoch's change must be at most ``max_change`` in size. The value
    is the largest such mean change; the detail gives every kind's.

    >>> curves = {"SEC": [[0.2, 0.29, 0.30], [0.2, 0.28, 0.285]], "Fig. 4": [[0.1, 0.2, 0.25]]}
    >>> check = settled_check(curves, what="val mIoU")
    >>> check.passed, round(check.value, 3)
    (False, 0.05)
    """
    changes = {kind: sum(abs(c[-1] - c[-2]) for c in runs) / len(runs)
               for kind, runs in curves.items() if runs and all(len(c) >= 2 for c in runs)}
    if not changes:
        raise ValueError(f"no learning curve of two epochs or more among {sorted(curves)}")
    return Precondition(f"training length: {what} settled (largest mean change in the last "
                        "epoch)", max(changes.values()), max_change, higher_is_better=False,
                        detail=changes)


def preconditions_table(checks: Sequence[Precondition]) -> Any:
    """``checks`` as a short pandas table for a chapter to print, one row per check (its name
    the index): the value, the threshold it must reach, ✓ or ✗, and its details as one line
    of text ("–" when it has none), every number as :func:`gainbook.formatting.significant`
    writes it."""
    import pandas as pd

    rows = [{"check": c.name, "value": significant(c.value),
             "threshold": f"{'≥' if c.higher_is_better else '≤'} {c.threshold:g}",
             "passed": "✓" if c.passed else "✗",
             "detail": ", ".join(f"{k} {significant(v)}" for k, v in c.detail.items()) or "–"}
            for c in checks]
    return pd.DataFrame(rows, columns=["check", "value", "threshold", "passed", "detail"]).set_index("check")
