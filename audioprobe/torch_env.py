"""Environment of the processes that run torch (extraction, probes, the report's kernel), set
before torch is imported: it reads these once, at its first allocation.

- ``OMP_WAIT_POLICY=PASSIVE``: idle OpenMP threads sleep instead of spinning, so parallel jobs
  on few cores do not starve each other.
- ``THP_MEM_ALLOC_ENABLE=1``: torch's CPU allocator asks for transparent huge pages for tensors
  of 2 MB and more (where the kernel leaves huge pages to ``madvise``, as Debian and Ubuntu do).
  An encoder's large activations are allocated and freed every batch; with 4 kB pages a CPU
  extraction spent most of its time in page faults (bench/extract_speed.py, README).

A value already in the environment is kept.
"""

from __future__ import annotations

import os

TORCH_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1"}


def apply() -> None:
    """Set ``TORCH_ENV`` in this process's environment where it is unset (before torch is
    imported)."""
    for name, value in TORCH_ENV.items():
        os.environ.setdefault(name, value)
