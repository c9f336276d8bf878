"""Every report figure also as PDF and SVG (vector; raster parts at 300 dpi).

A figure's tight bounding box is measured once (``tight_box``) and used for its PNG, PDF and
SVG alike. The PDF and SVG are written by a forked copy of the page's process while the page
goes on to its next figure (the report job has two threads): the child inherits the figure in
memory, so nothing is pickled. At most two children run at a time, so the page waits on
them only when it gets ahead by more than a figure. On other systems than Linux (macOS, where
forking a process that has loaded system frameworks is unsafe; Windows, which has no fork) the
page writes them itself. Text stays text: TrueType fonts in the PDF
(``pdf.fonttype`` 42, as journals ask) and ``<text>`` elements in the SVG, editable in a vector
editor."""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.transforms import Bbox

FORMATS = ("pdf", "svg")
MAX_CHILDREN = 2
TEXT_AS_TEXT = {"pdf.fonttype": 42, "svg.fonttype": "none"}


def tight_box(fig: plt.Figure) -> Bbox:
    """The figure's tight bounding box in inches, padded as ``bbox_inches="tight"`` pads it."""
    fig.draw_without_rendering()
    return fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])


def write(fig: plt.Figure, stem: Path, box: Bbox) -> None:
    """Write ``stem``.pdf and ``stem``.svg, cropped to ``box`` (inches)."""
    with plt.rc_context(TEXT_AS_TEXT):
        for kind in FORMATS:
            fig.savefig(Path(stem).with_suffix(f".{kind}"), format=kind, dpi=300,
                        bbox_inches=box)


def _child(fig: plt.Figure, stem: Path, box: Bbox) -> None:
    """A forked child's work: its Python streams are the kernel's, served by threads the child
    does not have, so it prints nothing through them; a failure goes to file descriptor 2 (the
    report job's log) and the exit status."""
    sys.stdout = sys.stderr = open(os.devnull, "w")
    try:
        write(fig, stem, box)
    except Exception:
        os.write(2, f"{stem}: {traceback.format_exc()}".encode())
        raise SystemExit(1)


class Writer:
    """Writes figures' PDF and SVG beside the page; ``close`` waits for them and fails if any
    was not written."""

    def __init__(self) -> None:
        self.forks = sys.platform == "linux"
        self.running: list[multiprocessing.Process] = []
        self.failed: list[str] = []

    def save(self, fig: plt.Figure, stem: Path, box: Bbox) -> None:
        """Write ``stem``.pdf and ``stem``.svg of ``fig`` (which the caller may close)."""
        if not self.forks:
            write(fig, stem, box)
            return
        self._wait(MAX_CHILDREN - 1)
        child = multiprocessing.get_context("fork").Process(
            target=_child, args=(fig, Path(stem), box), name=f"figure {Path(stem).name}")
        child.start()
        self.running.append(child)

    def _wait(self, running: int) -> None:
        """Wait until at most ``running`` children run (the oldest first)."""
        while len(self.running) > running:
            child = self.running.pop(0)
            child.join()
            if child.exitcode:
                self.failed.append(child.name)

    def close(self) -> None:
        """Wait for the last figures; raise if any figure's PDF or SVG failed."""
        self._wait(0)
        if self.failed:
            raise RuntimeError(f"PDF/SVG not written for {', '.join(self.failed)}: see the "
                               "report job's log")
