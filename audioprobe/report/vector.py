"""Every report figure also as PDF and SVG (vector; raster parts at 300 dpi)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

FORMATS = ("pdf", "svg")


def save(fig: plt.Figure, stem: Path) -> None:
    """Write ``stem``.pdf and ``stem``.svg."""
    for kind in FORMATS:
        fig.savefig(stem.with_suffix(f".{kind}"), format=kind, dpi=300, bbox_inches="tight")
