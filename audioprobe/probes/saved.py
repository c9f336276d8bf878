"""The saved-probe file (``results/probes/{dataset}/{model}/{probe}.pt``): written by the probe
job, read by ``audioprobe label``.

It holds the model card, the extraction settings the probe's features were made with
(``extraction``: pooling, window length ``max_seconds``, clip limit ``max_clip_seconds``,
precision; read from the feature store) and one trained probe per evaluation round, each with
the layer its round chose on validation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audioprobe.errors import AudioprobeError

SETTINGS = ("pooling", "max_seconds", "max_clip_seconds", "precision")
PROBE_KEYS = {"card", "rounds", "classes", "architecture"}
WHAT = "results/probes/{dataset}/{model}/{probe}.pt"


def extraction_settings(attrs: dict) -> dict:
    """The ``extract()`` settings a feature store was made with, from its attributes."""
    return {key: attrs[key].item() if hasattr(attrs[key], "item") else attrs[key]
            for key in SETTINGS if key in attrs}


def write(path: str | Path, probes: dict, card: dict, store_attrs: dict) -> None:
    """Save the trained ``probes`` of one job with the model ``card`` and the extraction
    settings of the store they were trained on."""
    torch.save(probes | {"card": card, "extraction": extraction_settings(store_attrs)}, path)


def read(probe_file: str | Path) -> dict:
    """The trained probes of a probe file, or AudioprobeError in one line for a path that is
    not one (missing, a folder, a CSV, another program's checkpoint)."""
    path = Path(probe_file)
    if not path.is_file():
        raise AudioprobeError(f"{path}: {'a folder' if path.is_dir() else 'no such file'}, "
                              f"not a probe file ({WHAT})")
    try:
        probes = torch.load(path, weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not its own
        raise AudioprobeError(f"{path}: not a probe file ({WHAT}): {exc.__class__.__name__}"
                              ) from None
    if not isinstance(probes, dict) or not PROBE_KEYS <= set(probes):
        raise AudioprobeError(f"{path}: not a probe file of audioprobe ({WHAT}); it holds no "
                              "trained probes with their model card")
    return probes
