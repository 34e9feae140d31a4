"""Text formatting of the results: numbers, ratios, sizes, aligned tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.stats import MiB, ratio


def num(value: float | None, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals, thousands without; ``-`` if missing."""
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def times(value: float, ceiling: float | None) -> str:
    """``value / ceiling`` with two significant decimals; ``-`` if missing."""
    r = ratio(value, math.nan if ceiling is None else ceiling)
    if math.isnan(r):
        return "-"
    return f"{r:.3f}" if r < 0.1 else f"{r:.2f}"


def share(value: float) -> str:
    """A share as a percentage with one decimal."""
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def size(nbytes: int) -> str:
    """``1 MiB``, ``16 MiB``, ``5.3 MiB``."""
    if nbytes % MiB == 0:
        return f"{nbytes // MiB} MiB"
    return f"{nbytes / MiB:.1f} MiB"


def yes_no(met: bool) -> str:
    """``yes`` or ``NO``, so that a miss stands out."""
    return "yes" if met else "NO"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    everything = [headers, *rows]
    widths = [max(len(r[i]) for r in everything) for i in range(len(headers))]
    lines = []
    for r in everything:
        cells = [r[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines
