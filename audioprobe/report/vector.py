"""Every report figure also as PDF and SVG (vector; raster parts at 300 dpi), written by the
page's own process as each figure is shown (nothing is pickled to another process)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

FORMATS = ("pdf", "svg")


def save(fig: plt.Figure, stem: Path) -> None:
    """Write ``stem``.pdf and ``stem``.svg."""
    for kind in FORMATS:
        fig.savefig(Path(stem).with_suffix(f".{kind}"), format=kind, dpi=300,
                    bbox_inches="tight")
