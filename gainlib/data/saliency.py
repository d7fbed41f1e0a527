"""Saliency priors S for the bounding-box attention loss L_bbox (Li et al., Eq. 9).

Eq. 9 asks the attention map inside a box of class ``c`` to follow a *foreground prior*
``S``: ``[B^c * (A^c - S)]^2``. The paper uses "a saliency map" without naming one. A prior
is any callable with this contract (:data:`SaliencyPrior`):

* input: an RGB image as ``uint8`` numpy array ``[..., H, W, 3]`` (leading batch dims allowed);
* output: ``float32`` ``[..., H, W]`` with values in ``[0, 1]``.

The default, :func:`spectral_residual_saliency`, needs no pretrained network: it is the
spectral-residual method of Hou & Zhang (CVPR 2007), re-implemented in a few lines of torch
because OpenCV ships it only in ``opencv-contrib-python`` (``cv2.saliency``), which the
headless OpenCV wheel we depend on does not include. Our version follows OpenCV's
``StaticSaliencySpectralResidual``: grey image resized to 64 x 64 (area averaging rather
than OpenCV's bilinear, to avoid aliasing on large photos), log-amplitude spectrum
minus its 3 x 3 box-filtered version, back-transform with the original phase, squared
magnitude, Gaussian blur, min-max normalisation, resize back. :func:`uniform_saliency`
(all ones: "everything inside the box is foreground") is the prior-free baseline, and
:func:`per_image` adapts a single-image function to batches.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

SaliencyPrior = Callable[[np.ndarray], np.ndarray]

__all__ = ["SaliencyPrior", "spectral_residual_saliency", "uniform_saliency", "per_image"]


def _gaussian_blur(maps: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, H, W]`` with reflect-101 borders (OpenCV's default)."""
    x = torch.arange(size, dtype=maps.dtype) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    pad = size // 2
    out = F.pad(maps[:, None], (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, g.view(1, 1, 1, size))
    return F.conv2d(out, g.view(1, 1, size, 1))[:, 0]


@torch.no_grad()
def spectral_residual_saliency(image: np.ndarray, work_size: int = 64, blur_sigma: float = 2.5) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang, CVPR 2007) of ``uint8 [..., H, W, 3]`` images.

    Returns ``float32 [..., H, W]`` in ``[0, 1]``, each map min-max normalised (a constant
    image gives all zeros). Deterministic; no network, no download.
    """
    array = np.asarray(image)
    if array.ndim < 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [..., H, W, 3], got shape {array.shape}")
    lead, (height, width) = array.shape[:-3], array.shape[-3:-1]
    rgb = torch.from_numpy(np.ascontiguousarray(array.reshape(-1, height, width, 3))).float()
    luma = torch.tensor([0.299, 0.587, 0.114])                             # cv2.COLOR_RGB2GRAY weights
    grey = (rgb @ luma)[:, None]                                           # [B, 1, H, W]
    # float64 spectrum: flat synthetic regions have near-zero amplitudes whose float32 log is noise.
    small = F.interpolate(grey, size=(work_size, work_size), mode="area")[:, 0].double()
    spectrum = torch.fft.fft2(small)
    log_amplitude = torch.log(spectrum.abs().clamp_min(1e-12))
    smoothed = F.avg_pool2d(F.pad(log_amplitude[:, None], (1, 1, 1, 1), mode="reflect"), 3, stride=1)[:, 0]
    # exp(residual + i * phase) with residual = log|F| - smoothed equals F * exp(-smoothed):
    # the same spectral residual without computing the phase or a complex exponential.
    saliency = (torch.fft.ifft2(spectrum * torch.exp(-smoothed)).abs() ** 2).float()
    saliency = _gaussian_blur(saliency, 2 * int(np.ceil(2 * blur_sigma)) + 1, blur_sigma)
    saliency = F.interpolate(saliency[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    low = saliency.amin(dim=(1, 2), keepdim=True)
    span = saliency.amax(dim=(1, 2), keepdim=True) - low
    saliency = torch.where(span > 1e-12, (saliency - low) / span.clamp_min(1e-12), torch.zeros_like(saliency))
    return saliency.clamp(0, 1).numpy().astype(np.float32).reshape(*lead, height, width)


def uniform_saliency(image: np.ndarray) -> np.ndarray:
    """The prior-free baseline: ``S = 1`` everywhere (Eq. 9 then pulls attention to 1 in boxes)."""
    array = np.asarray(image)
    return np.ones(array.shape[:-1], dtype=np.float32)


def per_image(prior: Callable[[np.ndarray], np.ndarray]) -> SaliencyPrior:
    """Wrap a prior that accepts one ``[H, W, 3]`` image so that it also accepts batches."""

    def batched(image: np.ndarray) -> np.ndarray:
        array = np.asarray(image)
        if array.ndim == 3:
            return np.asarray(prior(array), dtype=np.float32)
        flat = array.reshape(-1, *array.shape[-3:])
        maps = np.stack([np.asarray(prior(one), dtype=np.float32) for one in flat])
        return maps.reshape(*array.shape[:-1])

    batched.__name__ = getattr(prior, "__name__", "per_image_prior")
    batched.__doc__ = prior.__doc__
    return batched
