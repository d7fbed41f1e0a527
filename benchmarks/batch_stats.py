"""Cost of recording BatchNorm's batch statistics for S_am (``gainlib.gain``), and of training
several seeds of one small network stacked into one (grouped convolutions, which is what
``torch.func.vmap`` over stacked weights lowers a convolution to).

    python benchmarks/batch_stats.py

On one thread. ``Tensor.var`` over dims (0, 2, 3) against the two-pass mean of squared
deviations that ``gainlib.gain`` uses; then one small CNN's forward+backward against N of
them stacked (the per-model time; below the single time would mean stacking pays).
"""

from __future__ import annotations

import time

import torch
from torch import nn


def _time(step, repeats: int) -> float:
    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def variance_cost() -> None:
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(32, 16, 48, 48).contiguous(memory_format=fmt)
        dims = [0, 2, 3]

        def two_pass() -> torch.Tensor:
            mean = x.mean(dims, keepdim=True)
            return (x - mean).square().mean(dims)

        library = _time(lambda: x.var(dims, unbiased=False), 20)
        ours = _time(two_pass, 20)
        error = (x.var(dims, unbiased=False) - two_pass()).abs().max().item()
        print(f"{str(fmt):26} Tensor.var {1000 * library:6.2f} ms   two-pass {1000 * ours:6.2f} ms"
              f"   max difference {error:.1e}")


def stacked(n: int, widths=(16, 32), classes: int = 20, hidden: int = 128) -> nn.Module:
    layers, channels = [], 3
    for i, width in enumerate(widths):
        layers += [nn.Conv2d(channels * n, width * n, 3, padding=1, groups=n),
                   nn.BatchNorm2d(width * n), nn.ReLU()]
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1),
                         nn.Conv2d(channels * n, hidden * n, 1, groups=n), nn.ReLU(),
                         nn.Conv2d(hidden * n, classes * n, 1, groups=n))


def stacking_cost(widths=(16, 32), side: int = 48, batch: int = 32) -> None:
    def step_time(n: int) -> float:
        model = stacked(n, widths)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(batch, 3 * n, side, side)

        def step() -> None:
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()
        return _time(step, 10)

    single = step_time(1)
    for n in (5, 10):
        per_model = step_time(n) / n
        print(f"widths {widths} at {side} px: one model {1000 * single:.1f} ms/step, "
              f"{n} stacked {1000 * per_model:.1f} ms/step per model "
              f"(speed-up {single / per_model:.2f}x)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    variance_cost()
    stacking_cost((16, 32), 48)
    stacking_cost((16, 32, 64), 64)
