"""Send a Snakemake job's log messages, warnings and progress bars to its log file; errors
meant for the user also reach the console, as one line."""

from __future__ import annotations

import functools
import logging
import sys
from types import TracebackType
from typing import TextIO

from audioprobe.errors import AudioprobeError


def to_file(path: str) -> None:
    """Redirect stderr (tqdm, warnings, tracebacks) to ``path`` and log INFO messages there.

    An uncaught AudioprobeError (bad audio with ``bad_audio: fail``, a dataset layout, a
    checkpoint) is written as one line, ``audioprobe: <message>``, to the log and to the
    console the job was started from; any other error leaves its traceback in the log.
    """
    console = sys.stderr
    sys.stderr = open(path, "w", buffering=1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    sys.excepthook = functools.partial(_report, console)


def _report(console: TextIO, kind: type[BaseException], error: BaseException,
            traceback: TracebackType | None) -> None:
    if not issubclass(kind, AudioprobeError):
        sys.__excepthook__(kind, error, traceback)
        return
    line = "audioprobe: " + " ".join(str(error).split())
    for stream in (sys.stderr, console):
        print(line, file=stream, flush=True)
