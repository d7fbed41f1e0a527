"""A family of biased scenes: when does guiding the attention change the decision?

Chapter 5 tests the paper's Table 7 on one benchmark. One benchmark is one data-generating
process, and an independent biased set disagreed with its verdict (the map moved, the decision
did not). This module measures the same comparison on a family of scenarios that differ in how
the bias arises (:class:`gainlib.data.BiasScenario`, rendered by
:class:`gainlib.data.ContextScenes`):

* whether the context predicts the label *alone* (``disjunctive``: water without a boat is rare
  in training, so water alone says "boat") or only *together with* the object
  (``conjunctive``: water is as common without boats as with them);
* single- against multi-label images; the object's size and contrast; the image size; the
  share of training images with masks.

Every scenario is measured the same way (:func:`scenario_records`): the classifier, GAIN and
GAIN_ext^p, from scratch and fine-tuned from the classifier, each with the fills ``mean``,
``blur`` and ``noise`` (:mod:`gainlib.masking`); on both counterfactual halves (the boat
without water, water without the boat) as the threshold-free AUC and as accuracies at a
threshold calibrated on the biased ``val`` split; the attention on the boat; and the hole
detector of each trained model with its own fill (does erasing a region, anywhere, lower the
boat score of a boat-free image?). The preconditions come first (:func:`scenario_checks`): an
oracle trained without the bias separates the counterfactual halves, the classifier has taken
the bias, there is something left to mine, and erasing is not a cue by itself.

The whole family does not fit the default build. ``python -m gainbook.bias_family --out
book/family/bias_family.json`` trains it (through the run cache, resumable) and writes the
per-run records with a digest of the code they ran (:mod:`gainbook.records`); the chapter
reads the record, checks the digest, and computes every interval from the runs
(:mod:`gainbook.family_report`, which is not part of the digest: reading the runs anew does not
change them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from gainbook.chapters import CLASSIFIER, CONTINUED, Method, extra_supervision
from gainbook.profiles import BookProfile
from gainbook.runs import DataSpec, load_split, train_runs
from gainlib.data import BiasScenario, iter_batches
from gainlib.masking import soft_mask
from gainlib.models import eval_mode

__all__ = ["FamilyMember", "FAMILY", "FILLS", "PROTOCOLS", "member_profile", "member_methods",
           "oracle_method", "scenario_records", "scenario_checks", "attention_iou",
           "hole_scores", "ORACLE_MIN_AUC", "BIAS_MIN_GAP", "run_family", "load_family",
           "family_changed_since",
           "FAMILY_METRICS"]

#: The fills of the erased region every GAIN model is trained with (Eq. 3, :mod:`gainlib.masking`).
FILLS = ("mean", "blur", "noise")
#: How GAIN starts: from random weights with every stream ("scratch") or fine-tuned from the
#: classifier ("fine-tuned"), each compared with the classifier trained as long.
PROTOCOLS = ("scratch", "fine-tuned")
#: What each run is scored on (fractions in [0, 1]), besides the preconditions.
FAMILY_METRICS = ("val", "boat without water", "water without boat", "AUC",
                  "boat w/o water, val threshold", "water w/o boat, val threshold",
                  "p(boat), water", "attention IoU", "hole rise")


@dataclass(frozen=True)
class FamilyMember:
    """One scenario of the family: what it changes, its data and its training.

    Attributes:
        name: a short handle (table rows, the figure's axis).
        scenario: the generator's settings (:class:`gainlib.data.BiasScenario`).
        image_size: side of the images in pixels.
        varies: the axis it moves away from the first member, in words.
    """

    name: str
    scenario: BiasScenario
    image_size: int = 32
    varies: str = ""


# The reference: a small boat in washed-out colours, so that the water is the easier cue (with
# a large boat in full colours the classifier learns the boat and there is no bias to remove:
# the "large, clear" member).
_BASE = BiasScenario(name="disjunctive", object_scale=0.15, contrast=0.5)
#: The family. The first member is the independent set's mechanism: water without a boat is
#: rare in training, so water alone predicts "boat"; each other member changes one property.
FAMILY: tuple[FamilyMember, ...] = (
    FamilyMember("disjunctive", _BASE, varies="the reference: water alone predicts the boat"),
    FamilyMember("conjunctive", replace(_BASE, name="conjunctive", context_given_no_object=0.5),
                 varies="water as common without boats: it predicts only with the boat"),
    FamilyMember("multi-label", replace(_BASE, name="multi-label", multi_label=True),
                 varies="four classes per image, as in the scenes"),
    FamilyMember("large, clear", replace(_BASE, name="large, clear", object_scale=0.25,
                                          contrast=1.0),
                 varies="a larger boat in its own colours"),
    FamilyMember("48 px", replace(_BASE, name="48 px"), image_size=48,
                 varies="larger images"),
    FamilyMember("more masks", replace(_BASE, name="more masks", mask_share=0.2),
                 varies="masks on a fifth of the training images"),
)

#: What the oracle's mean AUC (boats without water against water without boats) must reach:
#: the task is learnable without the bias.
ORACLE_MIN_AUC = 0.9
#: How far below the oracle's the classifier's AUC must lie: it took the bias, so there is
#: something for guidance to remove.
BIAS_MIN_GAP = 0.1

#: Training of every member (the scenes' schedule of the default book, at the family's sizes).
_TRAINING = dict(seeds=(0, 1, 2, 3, 4), draws=(0, 1), widths=(16, 32, 64), classifier_lr=0.1,
                 classifier_epochs=10, finetune_epochs=3, finetune_lr=0.02)
_N_TRAIN, _N_EVAL = 1000, 250


def member_profile(member: FamilyMember, *, unbiased: bool = False, **overrides: Any) -> BookProfile:
    """The runs' settings of ``member`` (``unbiased``: its oracle's data, the context
    independent of the boat); ``overrides``: ``n_train`` and ``n_eval`` (the data's sizes) or
    fields of :class:`BookProfile` (e.g. ``seeds``, ``classifier_epochs``: a smaller family
    for the tests)."""
    scenario = member.scenario.unbiased() if unbiased else member.scenario
    sizes = {"n_train": _N_TRAIN, "n_eval": _N_EVAL}
    sizes.update({k: overrides.pop(k) for k in list(overrides) if k in sizes})
    data = DataSpec("context", image_size=member.image_size, design=scenario, **sizes)
    return BookProfile(f"family: {member.name}", data, **{**_TRAINING, **overrides})


def oracle_method() -> Method:
    """The oracle: the classifier's training on the member's unbiased data."""
    return replace(CLASSIFIER, name="oracle (no bias)")


def _masks(member: FamilyMember, n_train: int) -> int:
    return max(1, round(member.scenario.mask_share * n_train))


def member_methods(member: FamilyMember, fills: Sequence[str] = FILLS,
                   protocols: Sequence[str] = PROTOCOLS,
                   n_train: int | None = None) -> list[tuple[str, str, str, Method]]:
    """``(method, protocol, fill, Method)`` of every run kind measured on ``member``: the
    classifier (its baseline from scratch) and the classifier continued (fine-tuned), then GAIN
    and GAIN_ext^p for each protocol and fill (masks on the member's ``mask_share`` of
    ``n_train`` training images)."""
    out: list[tuple[str, str, str, Method]] = [("classifier", "scratch", "", CLASSIFIER),
                                               ("classifier", "fine-tuned", "", CONTINUED)]
    for protocol in protocols:
        for fill in fills:
            start = "scratch" if protocol == "scratch" else "classifier"
            gain = Method("GAIN", "gain", gain=(("fill", fill),), start=start)
            masks = _masks(member, _N_TRAIN if n_train is None else n_train)
            ext = replace(extra_supervision("p", masks, fill=fill), start=start)
            out += [("GAIN", protocol, fill, gain), ("GAIN_ext^p", protocol, fill, ext)]
    return [row for row in out if row[1] in protocols]


# -- measurements -----------------------------------------------------------------------------

@torch.no_grad()
def attention_iou(model: nn.Module, dataset: Any, threshold: float = 0.5,
                  batch_size: int = 128) -> float:
    """Mean IoU of the boat's attention map, thresholded at ``threshold`` of its peak, with the
    boat's mask, over the images of ``dataset`` that hold a boat (label 0)."""
    device = next(model.parameters()).device
    boats = np.flatnonzero(dataset.labels[:, 0] > 0.5).tolist()
    total, count = 0.0, 0
    with eval_mode(model):
        for chunk, batch in iter_batches(dataset, boats, batch_size):
            images = batch["image"].to(device)
            classes = torch.zeros(len(chunk), 1, dtype=torch.long, device=device)
            with torch.enable_grad():
                maps = model.attention(images, classes=classes).maps[:, 0].detach().cpu()
            hit = maps > threshold
            boat = torch.from_numpy(dataset.masks[chunk] == 1)
            union = (hit | boat).flatten(1).sum(1).clamp(min=1)
            total += float(((hit & boat).flatten(1).sum(1) / union).sum())
            count += len(chunk)
    return total / max(count, 1)


@torch.no_grad()
def hole_scores(model: nn.Module, dataset: Any, *, batch_size: int = 128,
                seed: int = 0) -> dict[str, float]:
    """The hole detector with the model's own fill: on the boat-free images of ``dataset``,
    the mean boat probability before and after erasing a region where no boat is (the soft
    mask of a boat image's own attention, moved to a random place), and their difference
    ``"hole rise"``. A model that calls erased images "no boat" whatever was erased shows a
    negative rise: it can satisfy attention mining's loss (Eq. 5) by reading the hole."""
    from gainbook.preconditions import erase_with_fill, shifted_masks

    device = next(model.parameters()).device
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    boats = np.flatnonzero(dataset.labels[:, 0] > 0.5).tolist()
    empty = np.flatnonzero(dataset.labels[:, 0] < 0.5).tolist()
    with eval_mode(model):
        probe = torch.stack([dataset[i]["image"] for i in boats[:batch_size]]).to(device)
        classes = torch.zeros(len(probe), 1, dtype=torch.long, device=device)
        with torch.enable_grad():
            maps = model.attention(probe, classes=classes).maps[:, 0].detach()
        holes = shifted_masks(soft_mask(maps, config.sigma, config.omega), generator)
        before = after = 0.0
        for chunk, batch in iter_batches(dataset, empty, batch_size):
            images = batch["image"].to(device)
            pick = holes[torch.randint(len(holes), (len(chunk),), generator=generator)]
            erased = erase_with_fill(model, images, pick)
            before += float(torch.sigmoid(model(images)[:, 0]).sum())
            after += float(torch.sigmoid(model(erased)[:, 0]).sum())
    n = max(len(empty), 1)
    return {"p(boat), boat-free": before / n, "p(boat), boat-free with a hole": after / n,
            "hole rise": (after - before) / n}


def _scores(model: nn.Module, data: DataSpec) -> dict[str, float]:
    from gainbook.studies import biased_boat_accuracy

    val = load_split(data, "val")
    scores = biased_boat_accuracy(model, val, load_split(data, "counterfactual"), 0)
    return {**{k: scores[k] for k in FAMILY_METRICS if k in scores},
            "attention IoU": attention_iou(model, val),
            "hole rise": hole_scores(model, val)["hole rise"]}


def scenario_records(member: FamilyMember, *, fills: Sequence[str] = FILLS,
                     protocols: Sequence[str] = PROTOCOLS, device: str = "cpu",
                     workers: int | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Train (through the run cache) and score every run of ``member``: one record per run,
    ``{"scenario", "method", "protocol", "fill", "seed", "draw", **FAMILY_METRICS}``, the
    oracle's runs (the first seed of each draw) with method ``"oracle"``; ``overrides`` as for
    :func:`member_profile`."""
    settings = member_profile(member, **overrides)
    plan = _plan(member, fills, protocols, **overrides)
    runs = train_runs([spec for _, spec in plan], device=device, workers=workers)
    records = []
    for (meta, spec), run in zip(plan, runs):
        # The oracle trains on unbiased data and is scored on the member's own splits.
        records.append({**meta, **_scores(run.model, settings.data_for(meta["seed"]))})
    return records


def scenario_checks(member: FamilyMember, records: Sequence[Mapping[str, Any]],
                    *, device: str = "cpu", **overrides: Any) -> list[Any]:
    """The preconditions of ``member``'s comparisons, from its records and its first seed's
    classifier: the oracle separates the halves (mean AUC >= :data:`ORACLE_MIN_AUC`), the
    classifier took the bias (its AUC at least :data:`BIAS_MIN_GAP` below the oracle's), there
    is something to mine (>= 20 % of erased images still score positive) and erasing is not a
    cue by itself (:func:`gainbook.preconditions.erasure_checks`, with the classifier's fill)."""
    from gainbook.preconditions import Precondition, erasure_checks, mining_checks

    def mean(method: str, metric: str, protocol: str = "scratch") -> float:
        values = [r[metric] for r in records if r["method"] == method and r["protocol"] == protocol
                  and r["scenario"] == member.name]
        return float(np.mean(values)) if values else float("nan")

    settings = member_profile(member, **overrides)
    first = settings.seeds[0]
    classifier = train_runs([CLASSIFIER.spec(settings, first)], device=device,
                            progress=False)[0].model
    val = load_split(settings.data_for(first), "val")
    oracle_auc, classifier_auc = mean("oracle", "AUC"), mean("classifier", "AUC")
    return [
        Precondition("oracle: AUC boat without water vs water without boat", oracle_auc,
                     ORACLE_MIN_AUC),
        Precondition("bias taken: oracle AUC - classifier AUC", oracle_auc - classifier_auc,
                     BIAS_MIN_GAP),
        *mining_checks(classifier, val),
        *erasure_checks(classifier, val),
    ]


# -- the record ---------------------------------------------------------------------------------

# What scores the runs (the runs themselves are named by their cache keys, which cover their
# settings and the code they train with).
_SCORING = ("gainbook.studies", "gainbook.preconditions")


def _digests() -> dict[str, str]:
    from gainbook.records import module_digest, module_digests

    return {**module_digests(_SCORING), "gainbook.bias_family": module_digest("gainbook.bias_family")}


def _plan(member: FamilyMember, fills: Sequence[str] = FILLS,
          protocols: Sequence[str] = PROTOCOLS, **overrides: Any,
          ) -> list[tuple[dict[str, Any], Any]]:
    """``(what, RunSpec)`` of every run of ``member``: each method of :func:`member_methods`
    for every seed, and the oracle on the first seed of each draw."""
    settings = member_profile(member, **overrides)
    oracle = member_profile(member, unbiased=True, **overrides)
    first_of_draw: dict[int, int] = {}
    for seed in settings.seeds:
        first_of_draw.setdefault(settings.draw_of(seed), seed)
    plan: list[tuple[dict[str, Any], Any]] = []
    for seed in settings.seeds:
        base = {"scenario": member.name, "seed": seed, "draw": settings.draw_of(seed)}
        for method, protocol, fill, how in member_methods(member, fills, protocols,
                                                          settings.data.n_train):
            plan.append(({**base, "method": method, "protocol": protocol, "fill": fill},
                         how.spec(settings, seed)))
        if first_of_draw[settings.draw_of(seed)] == seed:
            plan.append(({**base, "method": "oracle", "protocol": "scratch", "fill": ""},
                         oracle_method().spec(oracle, seed)))
    return plan


def run_family(members: Iterable[FamilyMember] = FAMILY, *, out: str | os.PathLike | None = None,
               device: str = "cpu", workers: int | None = None, **overrides: Any) -> dict[str, Any]:
    """Train and score every member (:func:`scenario_records`, :func:`scenario_checks`) and
    return the record; with ``out``, write it there as JSON (each member as soon as it is done,
    so an interrupted run keeps what it measured). ``overrides`` as for :func:`member_profile`;
    the record keeps them."""
    from gainbook.cache import write_text_atomic

    from gainbook.records import current_commit

    overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
    record: dict[str, Any] = {"recorded": "", "command": " ".join(sys.argv), "machine": "",
                              "commit": current_commit(), "modules": _digests(), "settings": overrides,
                              "members": {}, "seconds": {}}
    for member in members:
        started = time.perf_counter()
        records = scenario_records(member, device=device, workers=workers, **_tuples(overrides))
        checks = scenario_checks(member, records, device=device, **_tuples(overrides))
        record["members"][member.name] = {
            "varies": member.varies, "image_size": member.image_size,
            "scenario": {k: v for k, v in vars(member.scenario).items()},
            "checks": [c.record() for c in checks], "records": records,
            "runs": [spec.key() for _, spec in _plan(member, **_tuples(overrides))]}
        record["seconds"][member.name] = round(time.perf_counter() - started, 1)
        record["recorded"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
        if out is not None:
            write_text_atomic(Path(out), json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"{member.name}: {len(records)} runs in {record['seconds'][member.name]:.0f} s",
              flush=True)
    return record


def _tuples(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings read back from JSON, lists as the tuples :class:`BookProfile` holds."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def load_family(path: str | os.PathLike) -> dict[str, Any]:
    """A record :func:`run_family` wrote (``ValueError`` naming the file if it is not one)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a bias-family record ({error})") from error
    for key in ("recorded", "command", "commit", "machine", "modules", "settings", "members"):
        if key not in record:
            raise ValueError(f"{path}: not a bias-family record (no {key!r})")
    order = [m.name for m in FAMILY]     # the family's order, not the file's sorted keys
    members = record["members"]
    record["members"] = {name: members[name] for name in
                         sorted(members, key=lambda n: (order.index(n) if n in order else len(order), n))}
    return record


def family_changed_since(record: Mapping[str, Any]) -> list[str]:
    """What differs from what the record ran (empty: nothing): the scoring modules whose code
    changed, and each member whose runs the current code would train differently (their
    cache keys cover the settings and the training code)."""
    now, then = _digests(), record["modules"]
    changed = sorted(name for name in set(now) | set(then) if now.get(name) != then.get(name))
    members = {m.name: m for m in FAMILY}
    overrides = _tuples(record.get("settings", {}))
    for name, stored in record["members"].items():
        member = members.get(name)
        if member is None or [s.key() for _, s in _plan(member, **overrides)] != stored.get("runs"):
            changed.append(f"the runs of {name!r}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the record's JSON file")
    parser.add_argument("--only", nargs="*", default=None, help="member names (default: all)")
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    members = [m for m in FAMILY if args.only is None or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in FAMILY}
    if unknown:
        parser.error(f"unknown members {sorted(unknown)}; choose from {[m.name for m in FAMILY]}")
    overrides = {"seeds": tuple(args.seeds)} if args.seeds else {}
    run_family(members, out=args.out, workers=args.workers, **overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
