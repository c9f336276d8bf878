"""Typed settings: the ``extraction`` and ``protocol`` sections of a config, one frozen object each.

``config.schema.yaml`` is the one source of every default: the workflow's ``validate`` fills
them into the config, and ``from_config`` fills what a section leaves out from the same schema,
so code that runs outside the workflow (tests, benchmarks, ``audioprobe label``) gets the same
values. A new option is one schema entry and one field here (``tests/test_config.py`` holds the
fields to the schema's properties).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

SCHEMA = Path(__file__).resolve().parent.parent / "config.schema.yaml"


@functools.cache
def schema() -> dict:
    """The configuration schema, read once."""
    return yaml.safe_load(SCHEMA.read_text())


def defaults(node: dict) -> dict[str, Any]:
    """The defaults of a schema object's properties, nested objects' own defaults included."""
    found = {}
    for key, spec in node["properties"].items():
        if "default" in spec:
            found[key] = spec["default"]
            if "properties" in spec:
                found[key] = defaults(spec) | spec["default"]
    return found


def section(name: str) -> dict:
    """The schema of one top-level section (``extraction``, ``protocol``)."""
    return schema()["properties"][name]


def probe_spec(spec: dict) -> dict:
    """A probe's config entry with the schema's defaults filled in (``hidden``, ``dropout``,
    ``batch_norm``)."""
    return defaults(section("probes")["additionalProperties"]) | spec


class Settings:
    """Building a section's settings from its config values, the schema's defaults beneath."""

    SECTION = ""

    @classmethod
    def from_config(cls, values: dict | None = None, **overrides: Any):
        """The settings of a config section (``values``, validated or partial); keyword
        arguments override single fields."""
        merged = defaults(section(cls.SECTION)) | (values or {}) | overrides
        return cls(**{f.name: merged[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class ExtractionSettings(Settings):
    """How features are extracted (the ``extraction`` section; meanings in the schema).

    pooling, precision, bad_audio, max_seconds and max_clip_seconds change the stored features
    and shard_size how extraction is split (the workflow passes these to extraction jobs as
    params, so a change re-extracts); the others only change how fast the same features come.
    """

    SECTION = "extraction"

    batch_size: int
    batch_seconds: float | str
    pooling: str
    num_workers: int | str
    cpus: dict
    device: str
    precision: str
    resample: str
    bad_audio: str
    shard_size: int
    max_seconds: float
    max_clip_seconds: float

    def processes(self, cpus: int, on_gpu: bool) -> tuple[int, int]:
        """DataLoader workers and torch threads of a job with ``cpus`` CPUs.

        ``num_workers: auto``: on a GPU every CPU but one decodes and resamples (the main process
        only feeds the device). On a CPU the model takes the CPUs: decoding costs it a few
        percent, and a worker pays off only with a core of its own, as one sharing a core with
        the model's threads stalls them (bench/extract_speed.py), so one worker from four CPUs
        up, none below. Torch gets the CPUs the workers leave, at least one.
        """
        workers = self.num_workers
        if workers == "auto":
            workers = max(1, cpus - 1) if on_gpu else int(cpus >= 4)
        return workers, max(1, cpus - workers)


@dataclass(frozen=True)
class ProtocolSettings(Settings):
    """How probes are trained and selected (the ``protocol`` section; meanings in the schema)."""

    SECTION = "protocol"

    seeds: int
    learning_rates: list[float]
    weight_decays: list[float]
    max_epochs: int
    patience: int
    batch_size: int
