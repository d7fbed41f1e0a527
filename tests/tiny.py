"""Tiny protocol datasets and models for the core tests (fast on 2 CPU cores)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


class TinyScenes(Dataset):
    """Random 32x32 scenes: class c is a bright square in colour channel c on noise.

    Masks, boxes and a saliency prior are derived from the squares; samples listed in
    ``pixel`` / ``box`` carry the use_mask / use_boxes flags.
    """

    def __init__(self, n: int = 24, num_classes: int = 3, size: int = 32, seed: int = 0,
                 pixel: tuple[int, ...] = (), box: tuple[int, ...] = ()):
        g = torch.Generator().manual_seed(seed)
        self.samples = []
        for i in range(n):
            image = 0.3 * torch.randn(3, size, size, generator=g)
            mask = torch.zeros(size, size, dtype=torch.long)
            labels = torch.zeros(num_classes)
            boxes, box_labels = [], []
            for c in range(num_classes):
                if torch.rand(1, generator=g) < 0.5 or (c == 0 and labels.sum() == 0 and i % 5):
                    side = int(torch.randint(8, 14, (1,), generator=g))
                    y, x = (int(v) for v in torch.randint(0, size - side, (2,), generator=g))
                    image[c % 3, y:y + side, x:x + side] += 2.0
                    mask[y:y + side, x:x + side] = c + 1
                    labels[c] = 1
                    boxes.append([x, y, x + side, y + side])
                    box_labels.append(c)
            mask[0, :] = 255  # an ignore row, as VOC boundaries
            self.samples.append({
                "image": image, "labels": labels, "mask": mask,
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "box_labels": torch.tensor(box_labels, dtype=torch.long),
                "saliency": (mask > 0).float() * (mask != 255),
                "use_mask": i in pixel, "use_boxes": i in box, "id": f"tiny-{i}",
            })

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]


class TinyNet(nn.Module):
    """conv-BN-ReLU x2 (``features``), then GAP + MLP head; nothing mixes images after features."""

    def __init__(self, num_classes: int = 3, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 16), nn.ReLU(),
            nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FlattenHeadNet(nn.Module):
    """A VGG-like head (flatten + FC) so that ds/df depends on f: the second-order term matters."""

    def __init__(self, num_classes: int = 3, width: int = 8, size: int = 32):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(width * (size // 4) ** 2, 16),
                                        nn.Tanh(), nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
