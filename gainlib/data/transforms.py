"""Joint transforms that keep masks aligned with images (torchvision v2 + tv_tensors).

torchvision's v2 ``Resize`` resamples ``tv_tensors.Mask`` with ``NEAREST``, which takes input
pixel ``floor(i * scale)`` instead of the pixel under the output pixel's centre; when
downscaling, masks drift towards the bottom-right by up to half an output pixel relative to
the (bilinear) image and the (exactly rescaled) boxes. :class:`AlignedResize` is ``Resize``
with ``NEAREST_EXACT`` (pixel-centre) sampling for masks -- the class-index mask and the
saliency prior, which travels as a mask.
"""

from __future__ import annotations

from typing import Any, Sequence

from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

__all__ = ["AlignedResize"]


class AlignedResize(v2.Transform):
    """Resize to ``size = (height, width)``: images bilinear with antialiasing, boxes exactly,
    masks with pixel-centre nearest neighbour."""

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        self.size = [int(s) for s in size]

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Resize one input of the sample by its kind (image, mask or boxes)."""
        if isinstance(inpt, tv_tensors.Mask):
            return TF.resize(inpt, self.size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
        return TF.resize(inpt, self.size, antialias=True)
