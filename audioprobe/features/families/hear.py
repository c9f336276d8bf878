"""Family ``hear``: any model behind the HEAR 2021 API (Turian et al., 2022), named by an
importable module: ``load_model(model_file_path)`` returns a model with ``sample_rate``;
``get_timestamp_embeddings(audio, model)`` returns (embeddings (n_sounds, n_timestamps, dim),
timestamps in ms (n_sounds, n_timestamps)); ``get_scene_embeddings(audio, model)`` returns
(n_sounds, dim).

``embedding: timestamp`` (the default) pools the timestamp embeddings of each clip as the
workflow pools every model's frames; ``embedding: scene`` stores the module's own scene
embedding. One layer, unless the module also provides ``get_timestamp_layers(audio, model)``
returning (a list of (n_sounds, n_timestamps, dim) tensors, one per layer, and the
timestamps), which is then used instead.

The API takes a padded batch without clip lengths, so a clip's embeddings may depend on what
it is batched with. At fetch time three noise clips are embedded alone and in one padded batch
(a clip's frames there: those whose timestamps fall inside it); only when every layer agrees
within 1e-4 relative does extraction run padded batches, otherwise it runs each clip alone.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from types import ModuleType

import torch

from audioprobe.errors import AudioprobeError
from audioprobe.features.families import user_code

EMBEDDINGS = {"timestamp": "get_timestamp_embeddings", "scene": "get_scene_embeddings"}


def layer_names(n_layers: int) -> list[str]:
    """The module's embedding, or its layers."""
    return ["embedding"] if n_layers == 1 else [f"layer {k}" for k in range(n_layers)]


def batching(card: dict) -> str:
    """``padded`` where the fetch-time check found batching exact, else ``alone``."""
    return "padded" if card["batched"] else "alone"


def check(name: str, spec: dict) -> ModuleType:
    """The module, checked to provide the HEAR API functions the spec needs; its ``weights``,
    to exist."""
    what = f"model {name}"
    user_code.weights_path(spec, what)
    module = user_code.import_module(spec["module"], what)
    needed = ["load_model", EMBEDDINGS[spec.get("embedding", "timestamp")]]
    missing = [f for f in needed if not callable(getattr(module, f, None))]
    if missing:
        raise AudioprobeError(f"{what}: module {spec['module']!r} does not provide the HEAR API "
                              f"function(s) {', '.join(missing)}")
    try:
        inspect.signature(module.load_model).bind(*([""] if spec.get("weights") else []),
                                                  **spec.get("options", {}))
    except TypeError as error:
        raise AudioprobeError(f"{what}: {spec['module']}.load_model does not take "
                              f"these options: {error}") from None
    return module


def fetch(name: str, spec: dict, models_dir: Path) -> dict:
    """Check the module, load its model once to learn its rate and layers, check whether
    batching is exact, and record the revision of the module's source and weights."""
    module = check(name, spec)
    weights = user_code.weights_path(spec, f"model {name}")
    card = {"model_id": f"hear {spec['module']}", "module": spec["module"],
            "embedding": spec.get("embedding", "timestamp"), "options": spec.get("options", {}),
            "weights": str(weights) if weights else None,
            "revision": user_code.revision(module, weights)}
    model = _load_model(module, card, name)
    run = _runner(module, model, card["embedding"])
    sample_rate = _sample_rate(model, name)
    with torch.inference_mode():
        layers, _ = run(0.1 * torch.randn(1, sample_rate // 2), torch.tensor([sample_rate // 2]))
    error = user_code.batching_error(run, sample_rate)
    return card | {"sample_rate": sample_rate, "n_layers": len(layers),
                   "batched": error <= user_code.CHECK_RTOL,
                   "batching_error": error if math.isfinite(error) else None}


def revision_now(card: dict) -> tuple[str, str]:
    """The module's code and weights, and their hash now."""
    return user_code.revision_now(card, card["module"])


def load(card: dict) -> user_code.UserEncoder:
    """The module's model (``load_encoder`` checks its code and weights against the card)."""
    module = user_code.import_module(card["module"], f"model {card['name']}")
    model = _load_model(module, card, card["name"])
    run = _runner(module, model, card["embedding"])
    return user_code.UserEncoder(run, model, card["sample_rate"], card["n_layers"],
                                 card["batched"], layer_names(card["n_layers"]))


def _load_model(module: ModuleType, card: dict, name: str) -> object:
    args = [card["weights"]] if card.get("weights") else []
    return user_code.build(module.load_model, f"model {name}: {card['module']}.load_model",
                           *args, **card.get("options", {}))


def _sample_rate(model: object, name: str) -> int:
    rate = getattr(model, "sample_rate", None)
    if not isinstance(rate, int) or rate <= 0:
        raise AudioprobeError(f"model {name}: the HEAR model has no integer sample_rate")
    return rate


def _runner(module: ModuleType, model: object, embedding: str) -> user_code.Run:
    """The HEAR call as a ``Run``: layers (batch, frames, dim) and each clip's valid frames."""
    rate = model.sample_rate

    def run(waves: torch.Tensor, lengths: torch.Tensor):
        if embedding == "scene":
            return [module.get_scene_embeddings(waves, model)[:, None]], torch.ones_like(lengths)
        layered = getattr(module, "get_timestamp_layers", None)
        if layered is not None:
            layers, timestamps = layered(waves, model)
        else:
            embeddings, timestamps = module.get_timestamp_embeddings(waves, model)
            layers = [embeddings]
        if waves.shape[0] == 1 and int(lengths[0]) == waves.shape[1]:
            frames = torch.full_like(lengths, layers[0].shape[1])  # a clip alone: every frame
        else:  # a padded batch: the frames whose timestamps fall inside each clip
            ends = lengths.to(timestamps.device, torch.float64)[:, None] * 1000 / rate
            frames = (timestamps.double() <= ends + 1e-6).sum(1)
        return layers, frames.to(lengths.device)

    return run
