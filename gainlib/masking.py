"""Soft mask and masked image (GAIN, Eq. 3-4).

Defaults ``sigma = 0.5`` and ``omega = 10``: the paper does not print its values. The public
implementations differ (see :mod:`gainlib.presets` for the files and lines): ilyak93/GAIN-pytorch
uses 0.5 / 10 (as did alokwhitewolf's Chainer code until June 2018, now 0.5 / 8, and
AustinDoolittle's ``AttentionGAIN`` defaults, which its command line overrides with 0.4 / 100);
ngxbac/GAIN uses 0.25 / 100. A sigma of 0.7 with omega 1e5 — a hard step — circulates too, in
a repository other than these four. With maps normalised to a peak of 1, sigma = 0.5 erases
what the network attends to with at least half its peak response, and omega = 10 keeps the
sigmoid soft enough (T goes from 0.12 to 0.88 as A goes from 0.3 to 0.7) that the gradient of
L_am reaches the whole map rather than only pixels right at the threshold.

**The fill of the erased region.** Eq. 3, ``I* = I - T(A) ⊙ I``, sets erased pixels to 0. On
images normalised by the dataset's mean and std (gainlib's datasets, ilyak93, ngxbac) 0 *is*
the dataset mean: the erased region becomes a flat grey-brown. On raw images
(alokwhitewolf's [0, 255] pixels, AustinDoolittle's [0, 1]) the same formula paints it black.
The paper does not say which it meant, and what the erased region looks like decides what
S_am can still recognise there (a flat patch is itself a cue a network can learn), so
:func:`masked_image` writes Eq. 3 as a blend with a fill image ``F(I)``::

    I* = (1 - T) ⊙ I + T ⊙ F(I)  =  I - T ⊙ (I - F(I))

``"mean"`` (``F(I) = 0`` in normalised space) is Eq. 3 exactly, computed as ``I - T ⊙ I``
bit for bit; ``"zero"`` is black (0 intensity, normalised with the given mean/std);
``"blur"`` a Gaussian blur of the image (edges and texture gone, colour and coarse
layout kept); ``"noise"`` Gaussian noise in normalised space (the dataset's mean and spread,
a fresh draw from the torch RNG for every masked image). :func:`masked_image` defaults to Eq. 3
(``"mean"``); GAIN's streams default to ``"blur"`` (:class:`gainlib.gain.GainConfig`), the fill
that decided best across the book's family of biased scenes.
"""

from __future__ import annotations

import math
import typing
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DEFAULT_SIGMA", "DEFAULT_OMEGA", "DEFAULT_BLUR_SIGMA", "FILLS", "Fill", "soft_mask",
           "masked_image", "fill_image", "gaussian_blur"]

DEFAULT_SIGMA = 0.5
DEFAULT_OMEGA = 10.0
#: Gaussian blur of ``fill="blur"``, as a fraction of the image's shorter side (11 px at 224,
#: 3.2 px at 64): wide enough to remove object shape, not so wide the image turns flat.
DEFAULT_BLUR_SIGMA = 0.05

Fill = Literal["mean", "zero", "blur", "noise"]
FILLS: tuple[str, ...] = typing.get_args(Fill)


def soft_mask(attention: Tensor, sigma: float = DEFAULT_SIGMA, omega: float = DEFAULT_OMEGA) -> Tensor:
    """Eq. 4: ``T(A) = sigmoid(omega * (A - sigma))``, a differentiable threshold of A at sigma.

    ``attention`` has any shape (``[B, K, H, W]`` in GAIN); the result has the same shape.

    >>> soft_mask(torch.tensor([0.0, 0.5, 1.0]), sigma=0.5, omega=10.0)
    tensor([0.0067, 0.5000, 0.9933])
    """
    if omega <= 0:
        raise ValueError(f"omega must be positive, got {omega}")
    return torch.sigmoid(omega * (attention - sigma))


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """A separable Gaussian blur of ``images [B, C, H, W]`` with standard deviation ``sigma``
    pixels (kernel radius 3 sigma, edges replicated so the borders keep their colour)."""
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def fill_image(images: Tensor, fill: Fill, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD, blur_sigma: float = DEFAULT_BLUR_SIGMA,
               noise_std: float = 1.0, copies: int = 1,
               generator: torch.Generator | None = None) -> Tensor:
    """``F(I)`` of the module notes for normalised ``images [B, 3, H, W]``:
    ``[B, 1, 3, H, W]`` (``[B, copies, 3, H, W]`` for ``"noise"``, one draw per copy)."""
    if fill == "mean":
        return images.new_zeros(1, 1, 1, 1, 1)
    if fill == "zero":
        mean_t, std_t = (torch.as_tensor(v, dtype=images.dtype, device=images.device) for v in (mean, std))
        if mean_t.shape != (images.shape[1],) or std_t.shape != (images.shape[1],):
            raise ValueError(f"mean and std need one value per channel ({images.shape[1]}), "
                             f"got {list(mean)} and {list(std)}")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {list(std)}")
        return (-mean_t / std_t).view(1, 1, -1, 1, 1)         # 0 intensity, normalised
    if fill == "blur":
        return gaussian_blur(images, blur_sigma * min(images.shape[-2:])).unsqueeze(1)
    if fill == "noise":
        shape = (images.shape[0], copies, *images.shape[1:])
        return noise_std * torch.randn(shape, generator=generator, dtype=images.dtype,
                                       device=images.device)
    raise ValueError(f"fill must be one of {', '.join(repr(f) for f in FILLS)}, got {fill!r}")


def masked_image(images: Tensor, mask: Tensor, fill: Fill = "mean", *,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 blur_sigma: float = DEFAULT_BLUR_SIGMA, noise_std: float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """Eq. 3 with a choice of fill: ``I*^c = (1 - T(A^c)) * I + T(A^c) * F(I)``.

    ``fill="mean"`` is the paper's ``I - T(A^c) * I`` exactly (see the module notes for why
    the fill is a choice, and what the others are).

    Args:
        images: ``[B, 3, H, W]``, normalised by the dataset's ``mean`` and ``std``.
        mask: ``[B, K, H, W]`` soft masks ``T(A^c)``, one per class slot.
        fill: ``"mean"``, ``"zero"`` (black), ``"blur"`` or ``"noise"``.
        mean, std: the normalisation of ``images`` (ImageNet's by default, as gainlib's
            datasets); only ``"zero"`` needs them.
        blur_sigma: the Gaussian blur's standard deviation as a fraction of the shorter
            image side (``"blur"``).
        noise_std: the noise's standard deviation in normalised units (``"noise"``; 1 is
            the dataset's own pixel spread).
        generator: the RNG of ``"noise"`` (the global torch RNG if ``None``).

    Returns:
        ``[B, K, 3, H, W]``: one masked copy of each image per class slot.

    >>> images = torch.ones(1, 3, 2, 2)
    >>> mask = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])      # one class slot
    >>> masked_image(images, mask)[0, 0, 0]
    tensor([[0.0000, 1.0000],
            [0.5000, 1.0000]])
    >>> masked_image(images, mask, "zero", mean=(0.5,) * 3, std=(0.25,) * 3)[0, 0, 0]
    tensor([[-2.0000,  1.0000],
            [-0.5000,  1.0000]])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
    if mask.ndim != 4 or mask.shape[0] != images.shape[0] or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask must be [B={images.shape[0]}, K, {images.shape[-2]}, "
                         f"{images.shape[-1]}], got {list(mask.shape)}")
    erased = images.unsqueeze(1)
    if fill != "mean":          # "mean": F(I) = 0, so T * I as Eq. 3 prints it
        erased = erased - fill_image(images, fill, mean, std, blur_sigma, noise_std,
                                     mask.shape[1], generator)
    return images.unsqueeze(1) - mask.unsqueeze(2) * erased
