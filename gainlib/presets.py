"""The public GAIN implementations as :class:`~gainlib.gain.GainConfig` presets.

``GainConfig.preset(name)`` returns the configuration one implementation's code runs with,
in gainlib's terms, so a chapter can change one choice at a time between them. Each preset
below cites, for every value, the file and line of the repository snapshot it was read from
(newest commit of each at the time: alokwhitewolf/Guided-Attention-Inference-Network
``cd1cb0a`` 2018-10-06, ilyak93/GAIN-pytorch ``d67855b`` 2023-04-24, ngxbac/GAIN ``8378093``
2019-09-08, AustinDoolittle/Pytorch-Gain ``ec71886`` 2018-07-23). Where a repository does not
decide a value, the entry says "not set there; gainlib's default".

Translations:

* **Loss weights.** gainlib writes ``L = L_cl + alpha L_am + ext_weight L_e`` (Eq. 6, 8, 10).
  A repository that also weighs L_cl (``w_cl L_cl + w_am L_am``) becomes
  ``alpha = w_am / w_cl``; the common factor ``w_cl`` only rescales the gradient, which all
  four hand to Adam, whose steps hardly depend on that scale (only through its epsilon).
* **Black.** ``fill="zero"`` puts 0 intensity in the erased region, expressed in the
  normalisation of gainlib's images (``image_mean``/``image_std``, ImageNet's by default);
  the two repositories that feed raw pixels get black from ``I - T(A) I`` the same way.
* **Normalisation at batch size one.** alokwhitewolf's and AustinDoolittle's code take
  the minimum and maximum of the whole attention tensor but only run one image with one
  class per step, so their min-max is per map (``"minmax"``); ngxbac's runs batches of 32
  and the same two calls span the batch (``"batch_minmax"``).

Each docstring ends with what the preset does *not* reproduce: choices outside
:class:`GainConfig` (the backbone, which class a map is computed for, the optimiser).

The sigma/omega pairs quoted for "the public implementations": 0.5 / 10 is ilyak93's (and
AustinDoolittle's class defaults, and alokwhitewolf's before 2018-06-27); 0.25 / 100 is
ngxbac's; 0.7 / 1e5 (a hard step) is in none of these four repositories — a further PyTorch
GAIN class (``alpha = 0.01``, a cross-entropy L_cl) carries it.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["PRESETS", "preset_fields", "gainlib", "alokwhitewolf", "ilyak93", "ngxbac",
           "austindoolittle"]


def gainlib() -> dict[str, Any]:
    """gainlib's defaults (the field defaults of :class:`~gainlib.gain.GainConfig`).

    sigma 0.5, omega 10 (:mod:`gainlib.masking`); alpha 1 and ext_weight 10 (the paper,
    Sec. 3-4); normalization "max", the normaliser in the graph (detach_normalizer False);
    am_score "sigmoid" (:mod:`gainlib.losses`); detach_weights False (the paper's trainable
    attention, :mod:`gainlib.attention`); fill "blur" (chosen on the decision across the book's
    bias family; "mean" is Eq. 3 exactly, on normalised images);
    am_batchnorm "batch" (:mod:`gainlib.gain`).
    """
    return {}


def alokwhitewolf() -> dict[str, Any]:
    """alokwhitewolf/Guided-Attention-Inference-Network (Chainer, FCN-8s/VGG-16 on VOC).

    * sigma 0.5, omega 8: ``GAIN.py`` line 86, ``get_mask(gcam, sigma=.5, w=8)``
      (0.5 / 10 until commit 2f82094 of 2018-06-27, then 0.15 / 4, then 0.5 / 8).
    * alpha 0.2: ``train_GAIN.py`` lines 21-22 (``--lambda1`` 5 on L_cl, ``--lambda2`` 1 on
      L_am), summed in ``updater.py`` line 81; 1 / 5 with Adam (``train_GAIN.py`` line 71).
    * ext_weight 10 — not set there; gainlib's default. Its third term (``lambd3`` 1.5,
      ``updater.py`` line 41; ``--lambda3`` is parsed but not passed on, ``train_GAIN.py``
      line 74) weighs FCN-8s's own segmentation cross-entropy (``models/fcn8.py`` line
      204), not a loss on the attention maps.
    * normalization "minmax", detach_normalizer True: ``GAIN.py`` line 87 subtracts
      ``F.min(gcam).data`` and divides by ``(F.max(gcam) - F.min(gcam)).data`` — both
      constants — over the tensor of one image's one map (``updater.py`` line 55 asserts
      a batch of one).
    * am_score "sigmoid": ``updater.py`` lines 72 and 75.
    * detach_weights True: the map's weights are ``activations.grad_var`` after a
      ``backward`` without ``enable_double_backprop`` (``GAIN.py`` lines 45-47), constants.
    * fill "zero": the images are chainercv's ``VOCSemanticSegmentationDataset`` with no
      transform (``train_GAIN.py`` line 68), RGB in [0, 255], so ``img - img * mask``
      (``GAIN.py`` lines 92-95) paints black.
    * am_batchnorm "batch" — not set there (FCN-8s/VGG-16 has no BatchNorm); gainlib's default.

    Not reproduced: Grad-CAM of the sigmoid *probability* (the ``'prob'`` layer ends in
    ``F.sigmoid``, ``models/fcn8.py`` line 92, and ``updater.py`` line 72 applies another,
    so L_am is ``sigmoid(sigmoid(s))``); one ground-truth class drawn at random per image
    and step (``GAIN.py`` line 61); the frozen classifier head (``models/fcn8.py`` line 97).
    """
    return {"sigma": 0.5, "omega": 8.0, "alpha": 0.2, "ext_weight": 10.0,
            "normalization": "minmax", "detach_normalizer": True, "am_score": "sigmoid",
            "detach_weights": True, "fill": "zero", "am_batchnorm": "batch"}


def ilyak93() -> dict[str, Any]:
    """ilyak93/GAIN-pytorch (PyTorch, VGG-19 on VOC: ``main_GAIN_VOC.py`` with
    ``models/batch_GAIN_VOC.py``, the README's batched approach).

    * sigma 0.5, omega 10: ``models/batch_GAIN_VOC.py`` lines 74-75.
    * alpha 1: ``main_GAIN_VOC.py`` lines 34-35 (``--cl_loss_factor`` 1,
      ``--am_loss_factor`` 1), summed at line 182.
    * ext_weight 1: the VOC script has no S_e; the repository's medical script weighs its
      pixel loss — a squared error averaged over pixels, like gainlib's L_p — by
      ``--ex_weight`` 1 (``main_MedT.py`` line 497, used at lines 351-359).
    * normalization "minmax", detach_normalizer False: per image, ``Ac.view(B, -1).min(1)``
      and ``.max(1)`` in the graph (``models/batch_GAIN_VOC.py`` lines 160-166).
    * am_score "softmax": the softmax probabilities of the image's ground-truth classes,
      averaged (``main_GAIN_VOC.py`` lines 168-177).
    * detach_weights True: the gradients come from a backward hook after ``backward``
      without ``create_graph`` (``models/batch_GAIN_VOC.py`` lines 89-90 and 148).
    * fill "mean": ImageNet mean/std normalisation (``configs/VOCconfig.py`` lines 36-37,
      ``utils/image.py`` lines 145-148), then ``images - images * mask`` (line 168).
    * am_batchnorm "eval": S_am runs through ``FreezedBnModel``, which switches every
      BatchNorm to eval mode and freezes its affine parameters for that pass
      (``models/batch_GAIN_VOC.py`` lines 20-41, 176; the VOC script's torchvision VGG-19,
      ``main_GAIN_VOC.py`` line 62, has no BatchNorm, so there it changes nothing).

    Not reproduced: one map per image for the sum of all its ground-truth classes
    (``models/batch_GAIN_VOC.py`` line 147) and hence one masked image per image, where
    gainlib masks once per class; AutoAugment on the training images; 5 epochs without
    L_am first (``--npretrain``, ``main_GAIN_VOC.py`` line 38).
    """
    return {"sigma": 0.5, "omega": 10.0, "alpha": 1.0, "ext_weight": 1.0,
            "normalization": "minmax", "detach_normalizer": False, "am_score": "softmax",
            "detach_weights": True, "fill": "mean", "am_batchnorm": "eval"}


def ngxbac() -> dict[str, Any]:
    """ngxbac/GAIN (PyTorch/Catalyst, ResNet-50, single-label IP102 insects).

    * sigma 0.25, omega 100: ``src/models/gain.py`` lines 30-31.
    * alpha 0.25: ``src/callbacks.py`` lines 55 and 59 (0.8 L_cl + 0.2 L_am); 0.2 / 0.8 with
      Adam (``configs/config_gain.yml`` line 44).
    * ext_weight 10 — not set there; gainlib's default. ``GAINMaskCriterionCallback``
      (``src/callbacks.py`` lines 128-134: 0.8 / 0.1 / 0.1 with a BCE on the soft mask) is
      not used by the shipped config (``configs/config_gain.yml`` line 60) and no model
      there outputs the soft mask it reads.
    * normalization "batch_minmax", detach_normalizer False: ``Ac.min()`` and ``Ac.max()``
      over the batch, in the graph (``src/models/gain.py`` lines 137-139).
    * am_score "max_softmax": ``F.softmax(outputs_am)`` then ``.max(dim=1)`` — the largest
      probability of any class, averaged over the batch (``src/callbacks.py`` lines 56-58).
    * detach_weights True: backward hook after ``backward`` without ``create_graph``
      (``src/models/gain.py`` lines 37-38 and 88).
    * fill "mean": albumentations' ``Normalize()`` (ImageNet mean/std by default;
      ``src/augmentation.py`` line 8), then ``images - images * mask``
      (``src/models/gain.py`` line 141).
    * am_batchnorm "train": the model stays in train mode for the masked batch
      (``src/models/gain.py`` lines 76, 92 and 143), so ResNet-50's BatchNorms normalise it
      with its own statistics and update their running averages.

    Not reproduced: the single-label cross-entropy L_cl (``configs/config_gain.yml`` line
    24); ``upsample_bilinear`` (``align_corners=True``, ``src/models/gain.py`` line 130).
    """
    return {"sigma": 0.25, "omega": 100.0, "alpha": 0.25, "ext_weight": 10.0,
            "normalization": "batch_minmax", "detach_normalizer": False,
            "am_score": "max_softmax", "detach_weights": True, "fill": "mean",
            "am_batchnorm": "train"}


def austindoolittle() -> dict[str, Any]:
    """AustinDoolittle/Pytorch-Gain (PyTorch, its own small CNNs, one image per step).

    * sigma 0.4, omega 100: ``main.py`` lines 176-179, the command line's defaults, which
      it passes on; the ``AttentionGAIN`` constructor's own are 0.5 / 10 (``gain.py`` line 46).
    * alpha 1: ``main.py`` line 174; ``loss_cl + self.alpha * loss_am`` (``gain.py`` line 423).
    * ext_weight 10 — not set there (no S_e stream); gainlib's default.
    * normalization "minmax", detach_normalizer False: ``gcam.min()`` and ``gcam.max()`` in
      the graph (``gain.py`` lines 400-402), over one image's map (batch size 1,
      ``main.py`` line 184).
    * am_score "sigmoid": ``F.sigmoid(output_am) * label`` over the label count
      (``gain.py`` lines 419-420).
    * detach_weights True: backward hook after ``backward`` without ``create_graph``
      (``gain.py`` lines 119-120 and 376).
    * fill "zero": images are scaled to [0, 1] per image with no mean subtracted
      (``data.py`` line 48), so ``image - image * mask`` (``gain.py`` line 404) paints black.
    * am_batchnorm "train": BatchNorm is on unless ``--no-batch-norm`` (``main.py`` line 157,
      ``models.py`` lines 32-53) and the network is never put in eval mode; S_am is a
      train-mode forward pass (``gain.py`` line 416).

    Not reproduced: the command line's ``--pretrain-epochs`` 100 exceeds its
    ``--num-epochs`` 50 (``main.py`` lines 180-183), so by default L_am never trains;
    the per-image [0, 1] rescaling of the inputs.
    """
    return {"sigma": 0.4, "omega": 100.0, "alpha": 1.0, "ext_weight": 10.0,
            "normalization": "minmax", "detach_normalizer": False, "am_score": "sigmoid",
            "detach_weights": True, "fill": "zero", "am_batchnorm": "train"}


#: Preset name -> function returning the GainConfig fields it sets (its docstring cites them).
PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "gainlib": gainlib,
    "alokwhitewolf": alokwhitewolf,
    "ilyak93": ilyak93,
    "ngxbac": ngxbac,
    "austindoolittle": austindoolittle,
}


def preset_fields(name: str) -> dict[str, Any]:
    """The GainConfig fields of preset ``name``; ``KeyError`` listing the presets if unknown."""
    if name not in PRESETS:
        raise KeyError(f"unknown GainConfig preset {name!r}; the presets are "
                       f"{', '.join(repr(n) for n in PRESETS)}")
    return PRESETS[name]()
