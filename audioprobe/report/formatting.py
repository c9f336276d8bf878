"""Numbers and names as the report writes them."""

from __future__ import annotations

import math

from audioprobe.probes import ALL_LAYERS

METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
                "macro_f1": "macro-F1", "icbhi_score": "ICBHI score"}


def metric_name(metric: str) -> str:
    """A metric's name in words ("balanced accuracy" for balanced_accuracy)."""
    return METRIC_NAMES.get(metric, metric)


def sig(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits ("–" when missing)."""
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}".rstrip(".")


def percent(value: float | None) -> str:
    """A fraction in percent with one decimal ("–" when missing)."""
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def percent_interval(low: float, high: float) -> str:
    """A confidence interval of fractions in percent, one decimal."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def layer_name(layer: int) -> str:
    """A layer number, or "all" for the weighted probe's mix of all layers."""
    return "all" if int(layer) == ALL_LAYERS else str(int(layer))


def duration(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def relative_depth(layer: int, n_layers: int) -> float:
    """A layer's position from 0 (the first stored layer) to 1 (the last)."""
    return 0.0 if n_layers <= 1 else layer / (n_layers - 1)


def span(values: list[int]) -> str:
    """Whole numbers as "3" or "3–7"."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"
