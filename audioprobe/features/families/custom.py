"""Family ``custom``: the user's own PyTorch model, a class named ``package.module:Class`` and
built with the configured ``options`` as keyword arguments (and ``weights=<path>`` when the
config gives ``weights``). The class provides:

- ``sample_rate`` (int): the rate of the waves it takes;
- ``forward(waves, lengths)``: ``waves`` (batch, samples) zero-padded after each clip's end,
  ``lengths`` (batch,) each clip's samples; returns a list of (batch, frames, dim) tensors, one
  per layer (every layer on the same frames; widths may differ), and (batch,) the number of
  valid frames of each clip;
- optionally ``layer_names`` (a list of str), ``min_samples`` (shorter clips are zero-padded to
  it) and ``exact_under_batching`` (bool, default False).

``exact_under_batching = True`` promises that a clip's valid frames are the same alone and in
a padded batch: every operation that mixes time steps (attention, normalisation over time,
convolutions, pooling) ignores or zeroes the frames past each clip's end. It is checked at
fetch time (three noise clips alone against one padded batch, within 1e-4 relative) and a
broken promise stops the run; without it each clip runs alone, which is always exact.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from audioprobe.errors import AudioprobeError
from audioprobe.features.families import user_code


def layer_names(n_layers: int) -> list[str]:
    """Layers by index (a class's own ``layer_names`` take precedence)."""
    return [f"layer {k}" for k in range(n_layers)]


def batching(card: dict) -> str:
    """``padded`` when the class promises exactness and the fetch-time check confirms it."""
    return "padded" if card["batched"] else "alone"


def check(name: str, spec: dict) -> type:
    """The class, checked to exist, to provide ``sample_rate`` and ``forward``, and to take the
    configured options; its ``weights``, to exist."""
    what = f"model {name}"
    user_code.weights_path(spec, what)
    module_name, _, class_name = spec["class"].partition(":")
    module = user_code.import_module(module_name, what)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise AudioprobeError(f"{what}: module {module_name!r} has no class {class_name!r}")
    if not callable(getattr(cls, "forward", None)) or not hasattr(cls, "sample_rate"):
        raise AudioprobeError(f"{what}: class {spec['class']} must define sample_rate and "
                              "forward(waves, lengths)")
    options = spec.get("options", {}) | ({"weights": ""} if spec.get("weights") else {})
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as error:
        raise AudioprobeError(f"{what}: {spec['class']} does not take these options: "
                              f"{error}") from None
    return cls


def fetch(name: str, spec: dict, models_dir: Path) -> dict:
    """Check the class, build it once to learn its layers, check a promise of exactness under
    batching, and record the revision of its module's source and weights."""
    cls = check(name, spec)
    weights = user_code.weights_path(spec, f"model {name}")
    module = user_code.import_module(cls.__module__, f"model {name}")
    card = {"model_id": f"custom {spec['class']}", "class": spec["class"],
            "options": spec.get("options", {}), "weights": str(weights) if weights else None,
            "revision": user_code.revision(module, weights)}
    model = _build(cls, card, name)
    rate, min_samples = int(model.sample_rate), int(getattr(model, "min_samples", 1))
    n = max(rate // 2, min_samples)
    with torch.inference_mode():
        layers, _ = model(0.1 * torch.randn(1, n), torch.tensor([n]))
    names = list(getattr(model, "layer_names", None) or layer_names(len(layers)))
    if len(names) != len(layers):
        raise AudioprobeError(f"model {name}: {len(names)} layer_names for {len(layers)} layers")
    batched = bool(getattr(model, "exact_under_batching", False))
    if batched:
        error = user_code.batching_error(model, rate, min_samples)
        if not error <= user_code.CHECK_RTOL:
            raise AudioprobeError(
                f"model {name}: {spec['class']} sets exact_under_batching, but a clip in a "
                f"padded batch differs from the clip alone (relative {error:.2g}); mask the "
                "padding in every operation over time, or drop exact_under_batching")
    return card | {"sample_rate": rate, "n_layers": len(layers), "layer_names": names,
                   "batched": batched, "min_samples": min_samples}


def revision_now(card: dict) -> tuple[str, str]:
    """The class's module and weights, and their hash now."""
    return user_code.revision_now(card, card["class"].partition(":")[0])


def load(card: dict) -> user_code.UserEncoder:
    """The user's model (``load_encoder`` checks its code and weights against the card)."""
    module_name, _, class_name = card["class"].partition(":")
    module = user_code.import_module(module_name, f"model {card['name']}")
    model = _build(getattr(module, class_name), card, card["name"])
    return user_code.UserEncoder(model, model, card["sample_rate"], card["n_layers"],
                                 card["batched"], card["layer_names"], card["min_samples"])


def _build(cls: type, card: dict, name: str) -> torch.nn.Module:
    weights = {"weights": card["weights"]} if card.get("weights") else {}
    return user_code.build(cls, f"model {name}: building {card['class']}",
                           **card.get("options", {}), **weights)
