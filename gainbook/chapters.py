"""What the chapters share: their set-up, the methods they compare, and the measurements and
figures several chapters make.

A chapter's set-up is one call, :func:`setup`. The methods a chapter compares are
:class:`Method` records — the classifier, the classifier fine-tuned as long as GAIN ("continued"),
GAIN, and GAIN_ext with pixel masks, boxes or both on ``n`` images — that build their own run
specs; tables and figures show their :attr:`Method.label`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from gainbook.profiles import BookProfile, book_profile
from gainbook.cache import Trained, cache_root, refuse_symlinks, write_text_atomic
from gainbook.runs import RunSpec, load_split, train_runs
from gainlib.trainer import Mode, NonFiniteLossError, evaluate

__all__ = ["Method", "CLASSIFIER", "CONTINUED", "GAIN", "ORACLE", "extra_supervision", "setup",
           "PROTOCOL_VARIANTS", "protocol_variant",
           "positive_control",
           "method_runs", "train_methods", "map_records", "Shown", "one_class_images"]

ExtraKind = Literal["p", "b", "b,p"]


@dataclass(frozen=True)
class Method:
    """One way of training an attention model, as the chapters compare them.

    Attributes:
        name: ``"classifier"`` (trained from scratch, the Grad-CAM baseline), ``"classifier,
            continued"`` (fine-tuned from it as long as GAIN), ``"GAIN"`` or ``"GAIN_ext"``.
        mode: the trainer's mode of the fine-tuning (``None``: the baseline classifier itself).
        pixel_labels, box_labels: images whose mask / boxes feed the S_e stream (GAIN_ext).
        gain: :class:`~gainlib.gain.GainConfig` fields that differ from the defaults, as
            ``(name, value)`` pairs (e.g. ``(("alpha", 0.0),)`` for S_cl + S_e only).
        train: :class:`~gainlib.trainer.TrainConfig` fields that differ from the profile's,
            as pairs (e.g. ``(("ext_sampling", "natural"),)``).
        start: ``"classifier"``: fine-tuned from the baseline classifier (the paper's start
            from a trained network); ``"scratch"``: every stream from the first step, from
            random weights, with the classifier's training schedule
            (:meth:`~gainbook.profiles.BookProfile.from_scratch`).
    """

    name: str
    mode: Mode | None
    pixel_labels: int = 0
    box_labels: int = 0
    gain: tuple[tuple[str, Any], ...] = ()
    train: tuple[tuple[str, Any], ...] = ()
    start: Literal["classifier", "scratch"] = "classifier"

    @property
    def kind(self) -> ExtraKind | None:
        """``"p"``, ``"b"`` or ``"b,p"``: the extra labels of a GAIN_ext method."""
        if not (self.pixel_labels or self.box_labels):
            return None
        return "b,p" if self.pixel_labels and self.box_labels else "p" if self.pixel_labels else "b"

    @property
    def short(self) -> str:
        """The name without label counts (``"GAIN_ext^p"``), for figure columns."""
        return f"{self.name}^{self.kind}" if self.kind else self.name

    @property
    def extra_labels(self) -> int:
        """Images with extra labels (0 for the other methods)."""
        return self.pixel_labels + self.box_labels

    @property
    def variant(self) -> str:
        """How the run departs from the chapters' protocol, e.g. ``"from scratch"`` (``""``
        for none)."""
        parts = ["from scratch"] if self.start == "scratch" else []
        parts += [f"S_e {value}" if name == "ext_sampling" else f"{name} {value}"
                  for name, value in self.train]
        return ", ".join(parts)

    @property
    def label(self) -> str:
        """The name tables show, e.g. ``"GAIN_ext^p (19)"`` or ``"GAIN_ext^p (19), from
        scratch"``."""
        label = f"{self.short} ({self.extra_labels})" if self.kind else self.name
        return f"{label}, {self.variant}" if self.variant else label

    def __str__(self) -> str:
        return self.label

    def spec(self, settings: BookProfile, seed: int) -> RunSpec:
        """The run of this method for ``seed`` under ``settings``."""
        if self.mode is None:
            return settings.classifier(seed)
        start = settings.from_scratch if self.start == "scratch" else settings.finetuned
        spec = start(seed, self.mode, pixel_labels=self.pixel_labels,
                     box_labels=self.box_labels, **dict(self.gain))
        return replace(spec, train=replace(spec.train, **dict(self.train))) if self.train else spec


CLASSIFIER = Method("classifier", None)
CONTINUED = Method("classifier, continued", "classifier")
GAIN = Method("GAIN", "gain")
#: The positive control's reference: the "classifier, continued" schedule on data whose
#: shortcut tells nothing (:func:`positive_control`).
ORACLE = Method("oracle (no shortcut)", "classifier")


def extra_supervision(kind: ExtraKind, n: int, **gain: Any) -> Method:
    """GAIN_ext with ``n`` images of extra labels: pixel masks (``"p"``), boxes (``"b"``) or
    half of each (``"b,p"``, the odd image a mask); ``gain`` overrides GainConfig fields."""
    pixel, boxes = {"p": (n, 0), "b": (0, n), "b,p": ((n + 1) // 2, n // 2)}[kind]
    return Method("GAIN_ext", "gain_ext", pixel_labels=pixel, box_labels=boxes,
                  gain=tuple(sorted(gain.items())))


#: The protocol variants chapter 3 can train beside a GAIN_ext method (its ``protocol``
#: parameter): S_e at its natural rate instead of cycling through the labelled images, and
#: every stream from random weights instead of fine-tuning the classifier (#16, item 5).
PROTOCOL_VARIANTS: dict[str, dict[str, Any]] = {
    "natural": {"train": (("ext_sampling", "natural"),)},
    "scratch": {"start": "scratch"},
}


def protocol_variant(method: Method, variant: str) -> Method:
    """``method`` trained under one of :data:`PROTOCOL_VARIANTS`."""
    if variant not in PROTOCOL_VARIANTS:
        raise KeyError(f"unknown protocol variant {variant!r}; choose from "
                       f"{sorted(PROTOCOL_VARIANTS)}")
    return replace(method, **PROTOCOL_VARIANTS[variant])


def setup(profile: str, **overrides: Any) -> BookProfile:
    """A chapter's settings: :func:`gainbook.profiles.book_profile` with the chapter's papermill
    parameters as ``overrides`` (``None``: the profile's value); prints what it runs."""
    settings = book_profile(profile, **overrides)
    print(f"profile {settings.name!r}: {settings.data}, seeds {list(settings.seeds)} on "
          f"training-set draws {[settings.draw_of(s) for s in settings.seeds]}, "
          f"{settings.backbone}, {settings.classifier_epochs} epochs")
    return settings


#: The file that marks a run whose training diverged (``method_runs(diverged="record")``).
DIVERGED_FILE = "diverged.json"


def _divergence(error: BaseException | None) -> NonFiniteLossError | None:
    """The :class:`~gainlib.trainer.NonFiniteLossError` behind ``error`` (raised here, or by a
    worker and then chained), or ``None`` when ``error`` is not a run diverging."""
    while error is not None:
        if isinstance(error, NonFiniteLossError):
            return error
        error = error.__cause__
    return None


def _train_recording_divergence(specs: Sequence[RunSpec], device: str) -> list[Trained | None]:
    """:func:`train_runs`, but a run whose loss or weights become non-finite is marked
    diverged in its cache folder (so a rebuild does not train it again) and returned as
    ``None``. The runs train side by side; the pool stops at the first failure, naming the
    run: that one is marked and the rest go on side by side again (from their checkpoints).
    Only when the failure names none of them (a run they depend on, or a few runs trained in
    this process) do they go on one by one, to find which diverged."""
    import json

    root = cache_root(None)

    def marked(spec: RunSpec) -> bool:
        return (root / spec.key() / DIVERGED_FILE).exists()

    def mark(spec: RunSpec, failure: NonFiniteLossError) -> None:
        folder = root / spec.key()
        refuse_symlinks(folder, folder / DIVERGED_FILE)
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / DIVERGED_FILE,
                          json.dumps({"error": f"{type(failure).__name__}: {failure}"}))

    pending = [s for s in specs if not marked(s)]
    while pending:
        try:
            train_runs(pending, device=device)
            break
        except Exception as error:
            failure = _divergence(error)
            if failure is None:
                raise
            words = str(error).split()
            named = {s.key() for s in pending if s.key() in words}
            if len(named) == 1:     # the pool's message names the run that diverged
                mark(next(s for s in pending if s.key() in named), failure)
                pending = [s for s in pending if s.key() not in named]
                continue
            for spec in pending:
                try:
                    train_runs([spec], device=device, progress=False)
                except Exception as one:
                    if (diverged := _divergence(one)) is None:
                        raise
                    mark(spec, diverged)
            break
    return [None if marked(s) else train_runs([s], device=device, progress=False)[0]
            for s in specs]


def method_runs(settings: BookProfile, methods: Sequence[Method], *, device: str = "cpu",
                log: bool = True, diverged: Literal["raise", "record"] = "raise",
                ) -> dict[Method, dict[int, Trained | None]]:
    """The trained run of every method and seed, ``{method: {seed: run}}``; runs not in the
    cache train first, side by side. With ``log``, one line per method: how many runs were
    trained now, and the last epoch's validation mAP of each seed.

    ``diverged="record"`` (chapter 7, where a configuration may blow up): a run whose loss or
    weights become non-finite (:class:`~gainlib.trainer.NonFiniteLossError`) is ``None``
    instead of stopping the chapter, and is not trained again on a rebuild."""
    specs = [(method, seed, method.spec(settings, seed)) for method in methods
             for seed in settings.seeds]
    if diverged == "record":
        trained = _train_recording_divergence([spec for _, _, spec in specs], device)
    else:
        trained = train_runs([spec for _, _, spec in specs], device=device)
    runs: dict[Method, dict[int, Trained | None]] = {method: {} for method in methods}
    for (method, seed, _), run in zip(specs, trained):
        runs[method][seed] = run
    if log:
        for method, by_seed in runs.items():
            fresh = sum(run is not None and not run.cached for run in by_seed.values())
            final = ", ".join("diverged" if run is None else
                              f"{run.history[-1].get('val_map', float('nan')):.3f}"
                              for run in by_seed.values())
            print(f"{method.label}: {fresh} of {len(by_seed)} runs trained now; "
                  f"val mAP after the last epoch {final}")
    return runs


def train_methods(settings: BookProfile, methods: Sequence[Method], *, device: str = "cpu",
                  log: bool = True) -> dict[Method, dict[int, nn.Module]]:
    """The trained model of every method and seed, ``{method: {seed: model}}``
    (:func:`method_runs`)."""
    runs = method_runs(settings, methods, device=device, log=log)
    return {method: {seed: run.model for seed, run in by_seed.items()}
            for method, by_seed in runs.items()}


def map_records(models: Mapping[Any, Mapping[int, nn.Module]], settings: BookProfile,
                splits: Sequence[str]) -> list[dict[str, Any]]:
    """Mean average precision of every model on each split, one record per (method, seed) with
    its training-set ``"draw"`` and a column ``"mAP <split>"``; on VOC also the attention
    scores against the masks."""
    synthetic = settings.data.dataset == "synthetic"
    records = []
    for method, by_seed in models.items():
        for seed, model in by_seed.items():
            record: dict[str, Any] = {"method": method, "draw": settings.draw_of(seed),
                                      "seed": seed}
            for split in splits:
                scores = evaluate(model, load_split(settings.data, split), attention=not synthetic)
                record[f"mAP {split}"] = scores["map"]
                record.update({f"{k} {split}": v for k, v in scores.items()
                               if k.startswith("attention")})
            records.append(record)
    return records


class Shown(NamedTuple):
    """Images picked for a figure, with what the figure needs of them."""

    indices: list[int]
    images: Tensor          # [N, 3, H, W]
    labels: Tensor          # [N, C]
    names: list[str]        # the class of each image
    objects: Tensor         # [N, H, W] the mask of each image's object (float)


def one_class_images(scenes: Any, count: int = 6) -> Shown:
    """The first ``count`` images of a synthetic split that hold a single object."""
    picked = [i for i in range(len(scenes)) if scenes.labels[i].sum() == 1][:count]
    classes = scenes.labels[picked].argmax(1)
    return Shown(picked, torch.stack([scenes[i]["image"] for i in picked]),
                 torch.from_numpy(scenes.labels[picked]),
                 [scenes.classes[int(c)] for c in classes],
                 torch.from_numpy(scenes.masks[picked] == classes[:, None, None] + 1).float())


def positive_control(settings: BookProfile, extra: Method, draws: Sequence[int], *,
                     device: str = "cpu") -> list[dict[str, Any]]:
    """Train and score the positive control (:class:`~gainlib.data.DecoyShapes`): every seed
    on one data draw (seed ``s`` on ``draws[s % len(draws)]``, new images and a new draw of the
    images whose masks feed S_e, as the scenes' seeds are spread over training-set draws),
    the :data:`ORACLE` (trained where the corner patch tells nothing; on the first seed of
    each draw only, as it checks a precondition and compares with nothing), the classifier
    continued on the shortcut data, and ``extra`` (GAIN_ext with masks on a few of its
    images), each scored on its draw's ``test`` split (the patch random) and, for the
    shortcut's hold, on its ``val`` split (the patch as in training).

    Returns:
        One record per (method, seed): ``"draw"``, :func:`gainbook.studies.decoy_scores` on
        test, and ``"val accuracy"``.
    """
    from gainbook.studies import decoy_scores

    plan, first = {}, {}
    for seed in settings.seeds:
        draw = draws[seed % len(draws)]
        first.setdefault(draw, seed)
        biased = replace(settings, data=replace(settings.data, seed=draw))
        unbiased = replace(biased, data=replace(biased.data, shortcut_strength=0.25))
        for method, where in ((ORACLE, unbiased), (CONTINUED, biased), (extra, biased)):
            if method != ORACLE or first[draw] == seed:
                plan[method, draw, seed] = (biased.data, method.spec(where, seed))
    runs = train_runs([spec for _, spec in plan.values()], device=device)
    records = []
    for ((method, draw, seed), (data, _)), run in zip(plan.items(), runs):
        scores = decoy_scores(run.model, load_split(data, "test"))
        val = decoy_scores(run.model, load_split(data, "val"))["accuracy"]
        records.append({"method": method, "draw": draw, "seed": seed, **scores,
                        "val accuracy": val})
    return records
