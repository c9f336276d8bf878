"""Every report figure also as PDF and SVG (vector; raster parts at 300 dpi).

Writing vector files takes about as long as drawing the page, so one worker process writes
them while the page goes on; :func:`wait` returns when all are written."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt

FORMATS = ("pdf", "svg")
_pool: ProcessPoolExecutor | None = None
_pending: list[Future] = []


def _write(figure: bytes, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    fig = pickle.loads(figure)
    for kind in FORMATS:
        fig.savefig(Path(stem).with_suffix(f".{kind}"), format=kind, dpi=300,
                    bbox_inches="tight")


def save(fig: plt.Figure, stem: Path) -> None:
    """Have ``stem``.pdf and ``stem``.svg written."""
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    _pending.append(_pool.submit(_write, pickle.dumps(fig), str(stem)))


def wait() -> None:
    """Return when every figure handed to :func:`save` is written (raising its error)."""
    while _pending:
        _pending.pop(0).result()
