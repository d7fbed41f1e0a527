"""How the book's tables write a number: one rule for every table, so that none shows
``0.020115`` beside ``0.02``, and "–" wherever nothing was measured.

Kept apart from :mod:`gainbook.viz` (figures, torch) so that the modules whose code a record's
digest covers (:mod:`gainbook.preconditions`) depend on these few lines only.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["significant", "dashed", "MAX_DECIMALS"]

#: No table shows more decimals than this: a smaller value is written to this many decimals.
MAX_DECIMALS = 4


def significant(value: Any, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, at most :data:`MAX_DECIMALS` decimals,
    thousands separated, "–" for a missing value (NaN or None); anything else as ``str``.

    >>> [significant(v) for v in (0.020115, -0.00612, 0.000012, 12345.6, 0.5, float("nan"))]
    ['0.0201', '-0.0061', '0.0000', '12,346', '0.5', '–']
    >>> significant(-0.0), significant(-0.00001), significant(True), significant("mean")
    ('0', '0.0000', 'True', 'mean')
    """
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "–"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    text = f"{value:.{digits}g}"
    if "e" in text or len(text.split(".")[-1]) > MAX_DECIMALS and "." in text:
        text = f"{value:.{MAX_DECIMALS}f}"
    # A value that rounds to zero has no sign worth showing.
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def dashed(frame: Any) -> Any:
    """A copy of the pandas DataFrame ``frame`` with "–" wherever nothing was measured (NaN,
    None), as :func:`significant` writes a missing value.

    >>> import pandas as pd
    >>> dashed(pd.DataFrame({"seconds": [1.5, None]}))
      seconds
    0     1.5
    1       –
    """
    return frame.astype(object).where(frame.notna(), "–")
