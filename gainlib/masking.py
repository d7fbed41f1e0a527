"""Soft mask and masked image (GAIN, Eq. 3-4).

Defaults ``sigma = 0.5`` and ``omega = 10``: the paper does not print its values; the public
implementations use these two (one uses sigma 0.7 with omega 1e5, a hard step). With maps
normalised to a peak of 1, sigma = 0.5 erases what the network attends to with at least
half its peak response, and omega = 10 keeps the sigmoid soft enough (T goes from 0.12 to
0.88 as A goes from 0.3 to 0.7) that the gradient of L_am reaches the whole map rather than
only pixels right at the threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DEFAULT_SIGMA", "DEFAULT_OMEGA", "soft_mask", "masked_image"]

DEFAULT_SIGMA = 0.5
DEFAULT_OMEGA = 10.0


def soft_mask(attention: Tensor, sigma: float = DEFAULT_SIGMA, omega: float = DEFAULT_OMEGA) -> Tensor:
    """Eq. 4: ``T(A) = sigmoid(omega * (A - sigma))``, a differentiable threshold of A at sigma.

    ``attention`` has any shape (``[B, K, H, W]`` in GAIN); the result has the same shape.

    >>> soft_mask(torch.tensor([0.0, 0.5, 1.0]), sigma=0.5, omega=10.0)
    tensor([0.0067, 0.5000, 0.9933])
    """
    if omega <= 0:
        raise ValueError(f"omega must be positive, got {omega}")
    return torch.sigmoid(omega * (attention - sigma))


def masked_image(images: Tensor, mask: Tensor) -> Tensor:
    """Eq. 3: ``I*^c = I - T(A^c) * I``, the image with the attended regions erased.

    Args:
        images: ``[B, 3, H, W]`` (normalised, so erased pixels become the dataset mean).
        mask: ``[B, K, H, W]`` soft masks ``T(A^c)``, one per class slot.

    Returns:
        ``[B, K, 3, H, W]``: one masked copy of each image per class slot.

    >>> images = torch.ones(1, 3, 2, 2)
    >>> mask = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])      # one class slot
    >>> masked_image(images, mask)[0, 0, 0]
    tensor([[0.0000, 1.0000],
            [0.5000, 1.0000]])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
    if mask.ndim != 4 or mask.shape[0] != images.shape[0] or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask must be [B={images.shape[0]}, K, {images.shape[-2]}, "
                         f"{images.shape[-1]}], got {list(mask.shape)}")
    images = images.unsqueeze(1)
    return images - mask.unsqueeze(2) * images
