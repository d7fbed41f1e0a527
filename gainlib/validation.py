"""Checks of settings, shared by every config and builder of gainlib (and the book's specs).

Each raises ``TypeError`` (wrong type) or ``ValueError`` (out of range) naming the setting as
``<Owner>.<field>`` and the value it got. numpy scalars are accepted and stored as plain
``int`` / ``float``, so that checkpoints and cache keys hold plain numbers. The checks of
tensors (images, labels, masks) live with the sample protocol, :mod:`gainlib.data.protocol`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

__all__ = ["as_int", "check_int", "check_real", "check_bool", "check_choice"]


def as_int(value: object, label: str, minimum: int) -> int:
    """``value`` as a plain ``int`` >= ``minimum``; ``label`` names it in the error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{label} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{label} must be >= {minimum}, got {value}")
    return int(value)


def check_int(owner: object, name: str, minimum: int) -> None:
    """Field ``name`` of the (possibly frozen) dataclass ``owner`` is an int >= ``minimum``."""
    object.__setattr__(owner, name, as_int(getattr(owner, name), f"{type(owner).__name__}.{name}",
                                           minimum))


def check_real(owner: object, name: str, minimum: float = 0.0, *, positive: bool = False,
               below: float | None = None, maximum: float | None = None,
               optional: bool = False) -> None:
    """Field ``name`` of ``owner`` is a finite number >= ``minimum`` (> with ``positive``),
    < ``below`` and <= ``maximum`` where given; ``None`` too with ``optional``."""
    value = getattr(owner, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{type(owner).__name__}.{name} must be a number"
                        f"{' or None' if optional else ''}, got {value!r} ({type(value).__name__})")
    bad = (not math.isfinite(value) or value < minimum or (positive and value <= minimum)
           or (below is not None and value >= below) or (maximum is not None and value > maximum))
    if bad:
        bounds = (f"{'>' if positive else '>='} {minimum}" + (f" and < {below}" if below is not None else "")
                  + (f" and <= {maximum}" if maximum is not None else ""))
        raise ValueError(f"{type(owner).__name__}.{name} must be a finite number {bounds}, got {value}")
    if not isinstance(value, (int, float)):
        object.__setattr__(owner, name, float(value))


def check_bool(owner: object, *names: str) -> None:
    """Fields ``names`` of ``owner`` are ``True`` or ``False`` (not 1, not ``"no"``)."""
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, bool):
            raise TypeError(f"{type(owner).__name__}.{name} must be True or False, got {value!r}")


def check_choice(owner: object, name: str, choices: Sequence[Any]) -> None:
    """Field ``name`` of ``owner`` is one of the strings ``choices``."""
    value = getattr(owner, name)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{type(owner).__name__}.{name} must be one of "
                         f"{', '.join(map(repr, choices))}, got {value!r}")
