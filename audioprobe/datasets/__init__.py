"""Dataset adapters: each reads one dataset's published layout and returns a manifest.

An adapter is a function ``build(root: Path, **options) -> pandas.DataFrame`` whose frame follows
``audioprobe.manifest`` (made with ``manifest.make``). To add a dataset, write a module here and
register its ``build`` in ``ADAPTERS``. The options a dataset's config may give are the
keyword arguments of its ``build``; their type hints (``Literal[...]`` for a fixed set of values)
are what ``check_options`` holds a config to before any job runs (``audioprobe.options``).
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from audioprobe import manifest, options as typed_options
from audioprobe.datasets import (
    custom,
    esc50,
    icbhi,
    librispeech,
    nsynth,
    speechcommands,
    urbansound8k,
)

Adapter = Callable[..., pd.DataFrame]

ADAPTERS: dict[str, Adapter] = {
    "custom": custom.build,
    "esc50": esc50.build,
    "urbansound8k": urbansound8k.build,
    "speechcommands": speechcommands.build,
    "nsynth": nsynth.build,
    "librispeech": librispeech.build,
    "icbhi": icbhi.build,
}


def build_manifest(adapter: str, root: str | Path, options: dict | None = None) -> pd.DataFrame:
    """Run the named adapter on ``root`` and validate the manifest it returns."""
    if adapter not in ADAPTERS:
        raise KeyError(f"unknown dataset adapter {adapter!r}; known: {sorted(ADAPTERS)}")
    check_options(adapter, options)
    df = ADAPTERS[adapter](Path(root), **(options or {}))
    manifest.validate(df, name=f"{adapter} dataset at {root}")
    return df


def check_options(adapter: str, options: dict | None) -> None:
    """Raise OptionError, in one line naming the key and what is allowed, for an option the
    adapter's ``build`` does not take or a value its type hint does not admit."""
    build = ADAPTERS[adapter]
    hints = typing.get_type_hints(build)
    keys = [name for name in inspect.signature(build).parameters if name != "root"]
    typed_options.check({key: hints[key] for key in keys}, options or {}, f"adapter {adapter}")


def with_defaults(adapter: str, options: dict | None) -> dict[str, Any]:
    """An adapter's options with the defaults of its ``build`` filled in (the one place they
    are given)."""
    return {
        name: (options or {}).get(name, parameter.default)
        for name, parameter in inspect.signature(ADAPTERS[adapter]).parameters.items()
        if name != "root"
    }
