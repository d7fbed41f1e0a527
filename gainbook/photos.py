"""Real photographs for the book: scikit-image's bundled photos through an ImageNet network.

Book helpers, not library: they load a few photographs that ship inside the scikit-image
wheel (no download) and compute Grad-CAM (GAIN's Eq. 1-2) on them with gainlib and, for
comparison, with the ``grad-cam`` package, for the predicted class and for chosen ImageNet
classes. Plots come from the book's ``attention_panels``::

    records = photo_gradcam()                      # efficientnet_lite0, ImageNet weights
    attention_panels(torch.stack([r["rgb"] for r in records]),
                     {"photo": None, "gainlib": torch.stack([r["gainlib"] for r in records]),
                      "grad-cam": torch.stack([r["grad_cam"] for r in records])},
                     row_labels=[f"{r['photo']}: {r['class_name']}" for r in records],
                     normalized=False)

Needs ``gainlib[pretrained]`` (the weights), scikit-image and grad-cam (the ``book`` extra).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from gainlib.attention import GradCAM
from gainlib.models import (EFFICIENTNET_LITE0_PREPROCESSING, build_classifier,
                            imagenet_class_names, resolve_layer)

__all__ = ["PHOTOS", "PHOTO_CLASSES", "load_photo", "photo_batch", "imagenet_class_index",
           "photo_gradcam"]

#: Photo name -> file in scikit-image's bundled data directory (``skimage.data.data_dir``).
PHOTOS: dict[str, str] = {
    "chelsea": "chelsea.png", "coffee": "coffee.png", "astronaut": "astronaut.png",
    "motorcycle_left": "motorcycle_left.png", "motorcycle_right": "motorcycle_right.png",
    "rocket": "rocket.jpg", "horse": "horse.png", "camera": "camera.png",
}

#: Photo -> ImageNet classes worth explaining besides the predicted one. ImageNet has no
#: "person": the astronaut (predicted: football helmet, her helmet) is explained by her suit
#: ("jersey") and the space shuttle behind her.
PHOTO_CLASSES: dict[str, tuple[str, ...]] = {
    "chelsea": ("tabby",),
    "coffee": ("espresso", "cup"),
    "astronaut": ("space shuttle", "jersey"),
    "motorcycle_right": ("moped", "crash helmet"),
}


def _data_dir() -> Path:
    try:
        import skimage.data
    except ImportError as err:
        raise ImportError("the photos ship in scikit-image: pip install scikit-image "
                          "(part of the book and test extras)") from err
    return Path(skimage.data.data_dir)


def load_photo(name: str, size: int = 224) -> Tensor:
    """A bundled photo as ``[3, size, size]`` RGB in [0, 1], ready to display.

    The shorter side is resized to ``size * resize / crop`` (256/224, bicubic) and the centre
    cropped: the evaluation preprocessing of the ``efficientnet_lite0`` ImageNet weights.
    """
    if name not in PHOTOS:
        raise KeyError(f"unknown photo {name!r}; choose from {sorted(PHOTOS)}")
    path = _data_dir() / PHOTOS[name]
    image = Image.open(path).convert("RGB")          # horse is RGBA, camera greyscale
    p = EFFICIENTNET_LITE0_PREPROCESSING
    short = round(size * p["resize"] / p["size"])
    w, h = image.size
    scale = short / min(w, h)
    image = image.resize((max(short, round(w * scale)), max(short, round(h * scale))),
                         Image.Resampling.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def photo_batch(names: Sequence[str], size: int = 224,
                mean: Sequence[float] = EFFICIENTNET_LITE0_PREPROCESSING["mean"],
                std: Sequence[float] = EFFICIENTNET_LITE0_PREPROCESSING["std"]) -> Tensor:
    """Photos ``names`` as a normalised batch ``[N, 3, size, size]``: ``(rgb - mean) / std``."""
    return _normalise(torch.stack([load_photo(n, size) for n in names]), mean, std)


def _normalise(rgb: Tensor, mean: Sequence[float] = EFFICIENTNET_LITE0_PREPROCESSING["mean"],
               std: Sequence[float] = EFFICIENTNET_LITE0_PREPROCESSING["std"]) -> Tensor:
    return (rgb - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def imagenet_class_index(name: str) -> int:
    """The output index of ImageNet class ``name`` (as in :func:`gainlib.models.imagenet_class_names`).

    Raises:
        KeyError: an unknown name, with the closest names.
    """
    names = imagenet_class_names()
    if name not in names:
        raise KeyError(f"unknown ImageNet class {name!r}; close names: "
                       f"{difflib.get_close_matches(name, names, n=5)}")
    return names.index(name)


def _package_gradcam(model: nn.Module, layer: nn.Module, images: Tensor, classes: Tensor) -> Tensor:
    """The ``grad-cam`` package's maps ``[N, H, W]`` for ``images [N, 3, H, W]`` and ``classes [N]``."""
    from pytorch_grad_cam import GradCAM as PackageGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with PackageGradCAM(model=model, target_layers=[layer]) as cam:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return torch.from_numpy(maps)


def photo_gradcam(photos: Sequence[str] = tuple(PHOTO_CLASSES),
                  classes: Mapping[str, Sequence[str]] | None = None, size: int = 224,
                  model: tuple[nn.Module, str] | None = None) -> list[dict[str, Any]]:
    """Grad-CAM (Eq. 1-2) of the predicted class and of chosen classes on bundled photos.

    Args:
        photos: names from :data:`PHOTOS`.
        classes: photo -> ImageNet class names to explain besides the prediction
            (default :data:`PHOTO_CLASSES`; a class equal to the prediction is not repeated).
        size: input side in pixels.
        model: ``(classifier, target layer name)`` with ImageNet outputs; default
            ``build_classifier("efficientnet_lite0", 1000, weights="DEFAULT")``.

    Returns:
        One record per (photo, class): ``photo``, ``class_name``, ``class_index``,
        ``probability`` (softmax), ``predicted`` (True for the top-1 class), ``rgb``
        ``[3, H, W]`` in [0, 1], and the min-max normalised maps ``[H, W]`` of gainlib's
        :class:`~gainlib.attention.GradCAM` (``gainlib``) and of ``pytorch_grad_cam.GradCAM``
        (``grad_cam``), the same layer and class.
    """
    classes = PHOTO_CLASSES if classes is None else classes
    classifier, layer = model if model is not None else build_classifier(
        "efficientnet_lite0", 1000, weights="DEFAULT")
    classifier.eval()
    names = imagenet_class_names()
    rgb = torch.stack([load_photo(p, size) for p in photos])
    images = _normalise(rgb)
    with torch.no_grad():
        probabilities = classifier(images).softmax(dim=1)
    rows: list[tuple[int, int, bool]] = []              # (photo index, class index, predicted)
    for i, photo in enumerate(photos):
        top = int(probabilities[i].argmax())
        rows.append((i, top, True))
        rows += [(i, c, False) for c in dict.fromkeys(map(imagenet_class_index, classes.get(photo, ())))
                 if c != top]
    index = torch.tensor([r[0] for r in rows])
    targets = torch.tensor([r[1] for r in rows])
    # The package's normalisation (min-max per map, after upsampling) so the two compare 1:1.
    with GradCAM(classifier, layer, normalization="minmax") as cam:
        ours = cam(images[index], classes=targets).maps[:, 0]
    theirs = _package_gradcam(classifier, resolve_layer(classifier, layer), images[index], targets)
    return [{"photo": photos[i], "class_name": names[c], "class_index": c,
             "probability": float(probabilities[i, c]), "predicted": predicted,
             "rgb": rgb[i], "gainlib": ours[k], "grad_cam": theirs[k]}
            for k, (i, c, predicted) in enumerate(rows)]
