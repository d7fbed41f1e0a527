"""The book's profiles: one table of every setting the chapters share, per papermill profile.

``ci`` (seconds per chapter, for the tests: nothing here is a result), ``default`` (the
published book: minutes on 2 CPU cores) and ``paper`` (the paper's networks and data on a GPU).
A profile (:class:`Profile`) holds the settings of each study: the synthetic scenes of chapters
1-5, the two orientation studies of chapter 6, and the segmentation networks of chapters 4
and 7. :func:`book_profile`, :func:`orientation_profile` and :func:`segmentation_settings`
read it; a chapter's papermill parameters override single fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from gainbook.runs import DataSpec, RunSpec
from gainlib.gain import GainConfig
from gainlib.trainer import Mode, TrainConfig
from gainlib.validation import as_int

__all__ = ["BookProfile", "Profile", "PROFILES", "book_profile", "orientation_profile",
           "decoy_profile", "DECOY_DATA_DRAWS", "segmentation_settings", "family_settings"]


@dataclass(frozen=True)
class BookProfile:
    """The settings of one study for one papermill profile.

    The baseline is a plain classifier trained from scratch (or from ImageNet weights) for
    ``classifier_epochs``. GAIN is fine-tuned from it for ``finetune_epochs`` at
    ``finetune_lr`` — as the paper starts GAIN from a trained network and the public
    implementations pre-train the classifier — and so is a "classifier, continued" run with
    the same epochs, so that GAIN is compared with a classifier that trained as long.

    ``draws`` are the training-set draws (:attr:`DataSpec.train_draw`) the seeds are spread
    over: seed ``s`` trains on draw ``draws[s % len(draws)]`` (:meth:`draw_of`), so that five
    seeds over two draws are five runs whose differences also show the variation between
    training sets, at the cost of five runs rather than ten.
    """

    name: str
    data: DataSpec
    seeds: tuple[int, ...]
    backbone: str = "small_cnn"
    widths: tuple[int, ...] | None = (32, 64, 128)
    weights: str | None = None
    classifier_epochs: int = 12
    classifier_lr: float = 0.02
    finetune_epochs: int = 5
    finetune_lr: float = 0.002
    batch_size: int = 32
    grad_clip: float | None = None
    optimizer: Literal["sgd", "adam"] = "sgd"
    draws: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not self.draws or any(not isinstance(d, int) or d < 0 for d in self.draws):
            raise ValueError(f"draws must be integers >= 0, at least one, got {self.draws!r}")
        object.__setattr__(self, "seeds", _seeds(self.seeds))

    def draw_of(self, seed: int) -> int:
        """The training-set draw that seed ``seed``'s runs train on."""
        return self.draws[seed % len(self.draws)]

    def data_for(self, seed: int) -> DataSpec:
        """The data of seed ``seed``'s runs: :attr:`data` on that seed's draw."""
        return replace(self.data, train_draw=self.draw_of(seed))

    def _train(self, mode: Mode, epochs: int, lr: float, seed: int) -> TrainConfig:
        # Validation only measures classification (the chapters measure attention themselves,
        # and Grad-CAM on the whole split costs ~10 %), and only after the last epoch: the
        # history's val mAP is a record, not a model selection, and validating after every
        # epoch cost another ~10 % of a fine-tuning run on 2 cores.
        return TrainConfig(mode=mode, epochs=epochs, lr=lr, batch_size=self.batch_size,
                           optimizer=self.optimizer, lr_schedule="cosine",
                           grad_clip=self.grad_clip, seed=seed, eval_attention=False,
                           eval_every=epochs)

    def classifier(self, seed: int) -> RunSpec:
        """The plain classifier (the Grad-CAM baseline of chapter 1)."""
        return RunSpec(self.data_for(seed), self._train("classifier", self.classifier_epochs,
                                              self.classifier_lr, seed),
                       backbone=self.backbone, widths=self.widths, weights=self.weights)

    def finetuned(self, seed: int, mode: Mode, *, pixel_labels: int = 0, box_labels: int = 0,
                  **gain: Any) -> RunSpec:
        """``mode`` (``"classifier"``, ``"gain"``, ``"gain_ext"``) fine-tuned from
        :meth:`classifier`; ``gain`` overrides :class:`GainConfig` fields."""
        base = self.classifier(seed)
        return replace(base, train=self._train(mode, self.finetune_epochs, self.finetune_lr, seed),
                       gain=GainConfig(**gain), init=base, pixel_labels=pixel_labels,
                       box_labels=box_labels)

    def from_scratch(self, seed: int, mode: Mode, *, pixel_labels: int = 0, box_labels: int = 0,
                     **gain: Any) -> RunSpec:
        """``mode`` with every stream from the first step, from the backbone's initial weights:
        :meth:`classifier`'s training (its epochs, learning rate and schedule) with the mode's
        streams, so that it differs from the classifier in the streams only."""
        base = self.classifier(seed)
        return replace(base, train=self._train(mode, self.classifier_epochs, self.classifier_lr,
                                               seed),
                       gain=GainConfig(**gain), pixel_labels=pixel_labels,
                       box_labels=box_labels)


def _seeds(seeds: Any) -> tuple[int, ...]:
    """``seeds`` as a tuple of distinct plain ints >= 0 (numpy ints and arrays accepted)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"BookProfile.seeds must be a sequence of ints, got {seeds!r}")
    checked = tuple(as_int(s, f"BookProfile.seeds[{i}]", 0) for i, s in enumerate(seeds))
    if not checked:
        raise ValueError("BookProfile.seeds must hold at least one seed, got none")
    twice = sorted({s for s in checked if checked.count(s) > 1})
    if twice:
        raise ValueError(f"BookProfile.seeds holds seed {twice[0]} twice: {list(checked)}")
    return checked


@dataclass(frozen=True)
class Profile:
    """Every study's settings for one papermill profile.

    Attributes:
        scenes: the synthetic scenes of chapters 1-5 (or VOC at the paper's scale).
        camera, workpiece: the orientation studies of chapter 6 (Sec. 5.2-5.3).
        decoy: the positive control of chapter 5 (:class:`~gainlib.data.DecoyShapes`): its
            ``seeds`` are model seeds, spread over the data draws of :data:`DECOY_DATA_DRAWS`.
        segmentation: fields of :class:`gainbook.segmentation_runs.SegmentationSpec` other than
            data, framework, cues and seed.
        family: the bias family's slice in chapter 5 (:mod:`gainbook.bias_family`): overrides
            of :func:`gainbook.bias_family.member_profile` (empty: the family's own settings,
            those of its record).
    """

    scenes: BookProfile
    camera: BookProfile
    workpiece: BookProfile
    decoy: BookProfile
    segmentation: dict[str, Any] = field(default_factory=dict)
    family: dict[str, Any] = field(default_factory=dict)


# The orientation studies' sizes follow the paper where it gives them: the camera set has 700
# training images and two test sets of 100; the workpiece set 6,118 training and 2,059 test
# images (the ``paper`` profile uses those sizes, and the paper's VGG16 and DenseNet-121).
# ``paper`` segmentation: SEC's settings of the paper's Sec. 4.1 — DeepLab-LargeFOV from
# ImageNet VGG16, 321x321 inputs, batch 15, lr 1e-3 divided by 10 every 2,000 of 8,000
# iterations (8,000 x 15 / 10,582 images = 11.3 epochs, a step every 2.8 epochs).
PROFILES: dict[str, Profile] = {
    "ci": Profile(
        scenes=BookProfile("ci", DataSpec(design="v3", image_size=32, n_train=96, n_eval=48),
                           seeds=(0,),
                           widths=(8, 16), classifier_epochs=2, finetune_epochs=1),
        camera=BookProfile("ci", DataSpec("camera", image_size=32, n_train=64, n_eval=32,
                                          design="v2-camera"),
                           seeds=(0,), widths=(8, 16), classifier_epochs=2, finetune_epochs=1),
        workpiece=BookProfile("ci", DataSpec("workpiece", image_size=32, n_train=64, n_eval=32,
                                                design="v2-workpiece"),
                              seeds=(0,), backbone="densenet_small", widths=None,
                              classifier_epochs=2, finetune_epochs=1),
        decoy=BookProfile("ci", DataSpec("decoy", image_size=32, n_train=64, n_eval=32,
                                         shortcut_strength=1.0),
                          seeds=(0, 1), widths=(8, 16), classifier_epochs=2, finetune_epochs=1,
                          classifier_lr=0.003, finetune_lr=0.001, optimizer="adam"),
        segmentation={"widths": (8, 8, 16), "epochs": 2, "batch_size": 32, "lr": 0.05},
        family={"n_train": 64, "n_eval": 32, "widths": (8, 16), "classifier_epochs": 2,
                "finetune_epochs": 1, "seeds": (0, 1)},
    ),
    # The scenes (book/datasets.md, "What each change did to the preconditions"): v3 at 64 px
    # and a 3-block CNN (an 18 px receptive field, a 16 x 16 Grad-CAM map) at the learning rate
    # it trains at in 12 epochs, where the boat's oracle, the erasure checks and attention
    # mining all pass. Five seeds over two training-set draws: the fewest runs a verdict may
    # rest on (gainbook.stats.MIN_RUNS, MIN_DRAWS). Fine-tunes take 3 epochs at a fifth of
    # the classifier's learning rate, which moves the attention as far as 5 at a tenth; at a
    # fiftieth (0.002) 19 masks already reached what masks on every image reach
    # (book/datasets.md, "How far a fine-tune moves the attention").
    "default": Profile(
        scenes=BookProfile("default", DataSpec(design="v3", image_size=64, n_train=1000,
                                               n_eval=250),
                           seeds=(0, 1, 2, 3, 4), draws=(0, 1), widths=(16, 32, 64),
                           classifier_lr=0.1, classifier_epochs=12, finetune_epochs=3,
                           finetune_lr=0.02),
        # The orientation sets' v2 designs (book/datasets.md, "Which part of the shift an
        # unbiased classifier cannot cross"): a random surface per training image and a shift
        # the oracle, trained without the lamp, crosses. The surfaces take more epochs to learn
        # than one desk did: the camera 20, the workpiece (four classes) 30. Fine-tunes as the
        # scenes'.
        camera=BookProfile("default", DataSpec("camera", image_size=64, n_train=700, n_eval=100,
                                               design="v2-camera"),
                           seeds=(0, 1, 2, 3, 4), draws=(0, 1), widths=(16, 32, 64),
                           classifier_lr=0.1, classifier_epochs=20, finetune_epochs=3,
                           finetune_lr=0.02),
        workpiece=BookProfile("default", DataSpec("workpiece", image_size=64, n_train=700,
                                                  n_eval=300, design="v2-workpiece"),
                              seeds=(0, 1, 2, 3, 4), draws=(0, 1), widths=(16, 32, 64),
                              classifier_lr=0.1, classifier_epochs=30, finetune_epochs=3,
                              finetune_lr=0.02),
        # SGD at the scenes' lr 0.02 did not learn even the patch in 12 epochs (val accuracy
        # 0.56), Adam did (benchmarks/positive_control.py, settings chosen on val). With 600
        # images and 10 + 5 epochs the oracle reached a test AUC of only 0.81 (5 seeds x 2
        # draws): too little to test anything; 1,000 images and 12 + 6 epochs gave 0.95 at
        # 48 px and 0.99 at 32 px, whose runs cost under half as much (the 20-minute book).
        decoy=BookProfile("default", DataSpec("decoy", image_size=32, n_train=1000, n_eval=500,
                                              shortcut_strength=1.0),
                          seeds=(0, 1, 2, 3, 4), widths=(16, 32), classifier_epochs=12,
                          finetune_epochs=6, classifier_lr=0.003, finetune_lr=0.001,
                          optimizer="adam"),
        # 4 epochs: chapter 4 checks on each network's learning curve that the last moved
        # val mIoU by at most a point (with 3, Grad-CAM's SEC network still moved by 1.3);
        # its upper bound trains four times as long. Widths 8, 16, 32 cost about two thirds
        # of 16, 32, 64 and gave the same verdicts on the first benchmark.
        segmentation={"widths": (8, 16, 32), "epochs": 4, "batch_size": 32, "lr": 0.05},
    ),
    # The paper's networks and data (Sec. 4.1): VGG16 from ImageNet on VOC 2012 + SBD at
    # 321 px, GAIN fine-tuned with SGD at lr 1e-5; needs a GPU and voc_root, the folder that
    # data_scripts/get_voc.py prepared.
    "paper": Profile(
        scenes=BookProfile("paper", DataSpec("voc", image_size=321), seeds=(0, 1, 2),
                           backbone="vgg16", widths=None, weights="DEFAULT", classifier_epochs=10,
                           classifier_lr=1e-3, finetune_epochs=35, finetune_lr=1e-5,
                           batch_size=16),
        camera=BookProfile("paper", DataSpec("camera", image_size=224, n_train=700, n_eval=100,
                                             design="v2-camera"),
                           seeds=(0, 1, 2), backbone="vgg16", widths=None, weights="DEFAULT",
                           classifier_epochs=10, classifier_lr=1e-3, finetune_epochs=35,
                           finetune_lr=1e-5, batch_size=16),
        workpiece=BookProfile("paper", DataSpec("workpiece", image_size=224, n_train=6118,
                                                n_eval=2059, design="v2-workpiece"),
                              seeds=(0, 1, 2), backbone="densenet121", widths=None,
                              weights="DEFAULT", classifier_epochs=10, classifier_lr=1e-3,
                              finetune_epochs=35, finetune_lr=1e-5, batch_size=16),
        decoy=BookProfile("paper", DataSpec("decoy", image_size=64, n_train=1000, n_eval=500,
                                            shortcut_strength=1.0),
                          seeds=(0, 1, 2, 3, 4), widths=(16, 32), classifier_epochs=12,
                          finetune_epochs=6, classifier_lr=0.003, finetune_lr=0.001,
                          optimizer="adam"),
        segmentation={"network": "largefov", "weights": "IMAGENET1K_V1", "epochs": 11,
                      "batch_size": 15, "lr": 1e-3, "lr_step": 2.8},
    ),
}


# The analogue of the paper's ImageNet start (opt-in, not built by `make book`): the scenes'
# chapters with an ImageNet EfficientNet-Lite0 (weights shipped offline, gainlib[pretrained])
# fine-tuned at 128 px, where its Grad-CAM map is 4 x 4 (at the default 64 px it would be
# 2 x 2). Cost on 2 CPU cores (benchmarks/pretrained_cost.py): ~92 ms per image and training
# step at 128 px on one thread, ~15x the small CNN's step, so chapters 1-5 take hours rather
# than minutes. The other studies keep the default profile's settings.
PROFILES["pretrained"] = replace(
    PROFILES["default"],
    scenes=replace(PROFILES["default"].scenes, name="pretrained",
                   data=replace(PROFILES["default"].scenes.data, image_size=128),
                   backbone="efficientnet_lite0", widths=None, weights="DEFAULT",
                   classifier_epochs=3, classifier_lr=0.01, finetune_epochs=2,
                   finetune_lr=0.002))


def _profile(name: str) -> Profile:
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
    return PROFILES[name]


def book_profile(name: str, **overrides: Any) -> BookProfile:
    """The scenes' settings of profile ``name`` with ``overrides`` (``None`` values are
    ignored): fields of :class:`BookProfile` or of its :class:`DataSpec` (``dataset``,
    ``image_size``, ...)."""
    return _with_overrides(_profile(name).scenes, overrides)


def orientation_profile(study: Literal["camera", "workpiece"], name: str,
                        **overrides: Any) -> BookProfile:
    """The settings of an orientation study for profile ``name``, with ``overrides`` as in
    :func:`book_profile`."""
    if study not in ("camera", "workpiece"):
        raise KeyError(f"unknown study {study!r}; choose 'camera' or 'workpiece'")
    return _with_overrides(getattr(_profile(name), study), overrides)


#: The data seeds of the positive control: seed ``s`` trains on draw ``s % 2`` (new images, and
#: a new draw of the images whose masks feed S_e), five runs over two draws as in the scenes.
DECOY_DATA_DRAWS = (0, 1)


def decoy_profile(name: str, **overrides: Any) -> BookProfile:
    """The positive control's settings for profile ``name`` (``overrides`` as in
    :func:`book_profile`)."""
    return _with_overrides(_profile(name).decoy, overrides)


def family_settings(name: str) -> dict[str, Any]:
    """The bias family's overrides for profile ``name`` (:attr:`Profile.family`)."""
    return dict(_profile(name).family)


def segmentation_settings(name: str) -> dict[str, Any]:
    """The segmentation networks' settings of profile ``name``."""
    return dict(_profile(name).segmentation)


def _with_overrides(profile: BookProfile, overrides: dict[str, Any]) -> BookProfile:
    given = {k: v for k, v in overrides.items() if v is not None}
    data_fields = {f.name for f in dataclasses.fields(DataSpec)}
    profile_fields = {f.name for f in dataclasses.fields(BookProfile)}
    unknown = sorted(set(given) - data_fields - profile_fields)
    if unknown:
        raise TypeError(f"unknown profile settings {unknown}")
    data = replace(profile.data, **{k: v for k, v in given.items() if k in data_fields})
    rest = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items()
            if k in profile_fields}
    return replace(profile, data=data, **rest)


