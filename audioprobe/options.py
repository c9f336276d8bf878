"""Options checked against a declared signature before any job runs: a dataset adapter's
``build`` keyword arguments, or a model family's ``Options`` (a TypedDict). The type hints are
the contract: ``Literal[...]`` for a fixed set of values, ``int``, ``float`` (an int is a
float), ``str``, ``bool``, ``dict``."""

from __future__ import annotations

import typing
from typing import Any, Literal

from audioprobe.errors import OptionError


def check(hints: dict[str, Any], options: dict, owner: str, others: bool = False) -> None:
    """Raise OptionError, in one line naming the key and what is allowed, for an option not in
    ``hints`` (unless ``others``: the rest go elsewhere) or a value its hint does not admit;
    ``owner`` names what takes the options (``adapter esc50``, ``family crepe``)."""
    for key, value in options.items():
        if key not in hints:
            if others:
                continue
            raise OptionError(f"unknown key {key!r} for {owner}; allowed keys: "
                              f"{', '.join(hints) or 'none'}")
        if not admits(hints[key], value):
            raise OptionError(f"{key}: {value!r} is not allowed for {owner}; allowed: "
                              f"{describe(hints[key])}")


def admits(hint: Any, value: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` names."""
    if typing.get_origin(hint) is Literal:
        return any(value == v and type(value) is type(v) for v in typing.get_args(hint))
    if hint in (int, float) and isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def describe(hint: Any) -> str:
    """What ``hint`` admits, for an error message."""
    if typing.get_origin(hint) is Literal:
        return ", ".join(repr(v) for v in typing.get_args(hint))
    return f"any {hint.__name__}"
