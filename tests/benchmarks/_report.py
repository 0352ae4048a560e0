"""Shared reporting for benchmark scripts: medians, ratios, a table and one JSON line."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def median_rate(fn: Callable[[], int], runs: int = 5) -> tuple[float, list[float]]:
    """Run ``fn`` (returning items processed) ``runs`` times; the median items/s and all rates."""
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates


def report(name: str, rows: list[dict[str, Any]]) -> None:
    """Print a table and a JSON line (``BENCH {...}``) for machines."""
    print(f"\n{name}")
    cols = list(rows[0])
    widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("BENCH " + json.dumps({"benchmark": name, "results": rows}))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
    return str(v)
