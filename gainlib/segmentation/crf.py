"""The fully connected CRF (Krähenbühl & Koltun 2011) with DeepLab's and SEC's parameters:
:func:`dense_crf` on one image, :func:`crf_refine` over a batch. SEC's constrain loss
(:mod:`gainlib.segmentation.sec`) refines the network's output with it while training;
:func:`~gainlib.segmentation.evaluation.predict_segmentation` with ``crf=True`` post-processes
predictions with it. Runs pydensecrf (``pip install 'gainlib[crf]'``), imported on first use.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD
from gainlib.segmentation.cues import to_uint8_images

__all__ = ["Refiner", "dense_crf", "crf_refine"]

#: ``refine(images_uint8 [B, h, w, 3], probs [B, C + 1, h, w]) -> Q [B, C + 1, h, w]``.
Refiner = Callable[[np.ndarray, Tensor], Union[Tensor, np.ndarray]]


def _densecrf() -> Any:
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the dense CRF needs pydensecrf2 (it imports as `pydensecrf`): "
            "pip install 'gainlib[crf]' (or pip install pydensecrf2)") from error
    return dcrf


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    iterations: int = 10,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: float = 10.0,
    scale_factor: float = 1.0,
    min_prob: float = 1e-4,
) -> np.ndarray:
    """Fully connected CRF (Krähenbühl & Koltun 2011) with DeepLab's and SEC's parameters.

    Unary ``-log p`` (``p`` floored at ``min_prob``, SEC's floor); a Gaussian kernel
    (``sxy = 3``, compat 3) and a bilateral kernel (``sxy = 80``, ``srgb = 13``, compat 10);
    10 mean-field iterations. ``scale_factor`` divides both spatial standard deviations: SEC's
    constrain loss uses 12 on its 41x41 output
    (:data:`~gainlib.segmentation.sec.SEC_CRF_SCALE`), inference 1.
    Runs pydensecrf (``pip install 'gainlib[crf]'``), imported on first use.

    Args:
        image: ``uint8 [H, W, 3]`` RGB image at the resolution of ``probs``.
        probs: ``[C, H, W]`` class probabilities.

    Returns:
        ``float32 [C, H, W]``: the CRF's marginals, a distribution over ``C`` at every pixel.
    """
    dcrf = _densecrf()
    image = np.ascontiguousarray(image, dtype=np.uint8)
    probs = np.asarray(probs, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3 or probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"expected image [H, W, 3] and probs [C, H, W] of the same H, W; got "
                         f"image {list(image.shape)}, probs {list(probs.shape)}")
    n_labels, height, width = probs.shape
    unary = np.ascontiguousarray(-np.log(np.clip(probs, min_prob, None)).reshape(n_labels, -1))
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=gaussian_sxy / scale_factor, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy / scale_factor, srgb=bilateral_srgb, rgbim=image,
                             compat=bilateral_compat)
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(n_labels, height, width)


def crf_refine(
    images: Tensor | np.ndarray,
    probs: Tensor,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    **crf_params: Any,
) -> Tensor:
    """:func:`dense_crf` over a batch.

    Args:
        images: ``uint8 [B, H, W, 3]`` or normalised float ``[B, 3, H, W]`` (see
            :func:`~gainlib.segmentation.cues.to_uint8_images`), resized to the size of
            ``probs`` when they differ.
        probs: ``[B, C, h, w]`` probabilities (detached; the CRF is not differentiated).
        crf_params: keyword arguments of :func:`dense_crf`.

    Returns:
        ``[B, C, h, w]`` refined probabilities, with the dtype and device of ``probs``.
    """
    if probs.ndim != 4:
        raise ValueError(f"probs must be [B, C, h, w], got {list(probs.shape)}")
    pixels = to_uint8_images(images, mean, std, size=tuple(probs.shape[-2:]))
    if pixels.shape[0] != probs.shape[0]:
        raise ValueError(f"{pixels.shape[0]} images for {probs.shape[0]} probability maps")
    array = probs.detach().float().cpu().numpy()
    refined = np.stack([dense_crf(pixels[i], array[i], **crf_params) for i in range(len(array))])
    return torch.from_numpy(refined).to(device=probs.device, dtype=probs.dtype)
