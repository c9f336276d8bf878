"""What the bring-your-own-model families (``hear``, ``custom``) share: importing the user's code
with one-line errors, the revision of that code and its weights, the check made at fetch time
that batching leaves the model's outputs unchanged, and the encoder that runs the model on
padded batches or each clip alone."""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

from audioprobe.errors import AudioprobeError
from audioprobe.features.families.common import BaseEncoder, content_hash

# (padded waves (batch, samples), lengths (batch,)) -> (layers, valid frames)
Run = Callable[[torch.Tensor, torch.Tensor], tuple[list[torch.Tensor], torch.Tensor]]

CHECK_SECONDS = (0.3, 0.55, 0.8)  # clips of the batching check
CHECK_RTOL = 1e-4


def import_module(name: str, what: str) -> ModuleType:
    """Import the user's module ``name``; an error names the module, or the package it misses."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = error.name or "?"
        if name == missing or name.startswith(missing + "."):
            raise AudioprobeError(
                f"{what}: cannot import module {name!r}: not found (install its package, or add "
                "the folder that holds it to PYTHONPATH)") from None
        raise AudioprobeError(f"{what}: module {name!r} needs the missing package {missing!r} "
                              "(pip install it)") from None
    except Exception as error:  # the user's code may raise anything on import
        raise AudioprobeError(f"{what}: importing {name!r} failed: "
                              f"{error.__class__.__name__}: {error}") from None


def build(factory: Callable, what: str, *args: object, **kwargs: object) -> object:
    """The model the user's ``factory`` (a class, or a HEAR ``load_model``) returns, in eval
    mode when it is a torch module; anything it raises becomes one line starting ``what``."""
    try:
        model = factory(*args, **kwargs)
    except Exception as error:  # the user's code may raise anything
        raise AudioprobeError(f"{what} failed: {error.__class__.__name__}: {error}") from None
    if isinstance(model, torch.nn.Module):
        model.eval()
    return model


def weights_path(spec: dict, what: str) -> Path | None:
    """The ``weights`` file or folder of a spec, checked to exist."""
    if not spec.get("weights"):
        return None
    path = Path(spec["weights"]).expanduser().resolve()
    if not path.exists():
        raise AudioprobeError(f"{what}: weights {path} do not exist")
    return path


def revision(module: ModuleType, weights: Path | None) -> str:
    """``sha256:`` over the module's source file and the weights (file, or every file of a
    folder): a change to either is a new revision."""
    digest = hashlib.sha256()
    source = getattr(module, "__file__", None)
    if source:
        digest.update(content_hash(Path(source)).encode())
    if weights is not None:
        digest.update(content_hash(weights, ("*",)).encode())
    return "sha256:" + digest.hexdigest()[:16]


def revision_now(card: dict, module_name: str) -> tuple[str, str]:
    """What the revision of a ``hear`` or ``custom`` card hashes, and its hash now."""
    module = import_module(module_name, f"model {card['name']}")
    found = revision(module, Path(card["weights"]) if card.get("weights") else None)
    return f"code and weights of {module_name}", found


def batching_error(run: Run, sample_rate: int, min_samples: int = 1) -> float:
    """Worst relative difference between each of three short noise clips alone and the same
    clip in a padded batch, over every layer and valid frame (inf where the number of layers or
    of valid frames differs)."""
    generator = torch.Generator().manual_seed(0)
    waves = [0.1 * torch.randn(max(int(s * sample_rate), min_samples), generator=generator)
             for s in CHECK_SECONDS]
    lengths = torch.tensor([w.numel() for w in waves])
    with torch.inference_mode():
        layers, frames = run(torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), lengths)
        worst = 0.0
        for i, wave in enumerate(waves):
            alone, n = run(wave[None], lengths[i:i + 1])
            if len(alone) != len(layers) or int(n[0]) != int(frames[i]):
                return math.inf
            for a, b in zip(alone, layers):
                ref, got = a[0, :int(n[0])].float(), b[i, :int(n[0])].float()
                scale = ref.abs().max().clamp(min=1e-12)
                worst = max(worst, float((got - ref).abs().max() / scale))
    return worst


class UserEncoder(BaseEncoder):
    """A user's model behind audioprobe's encoder interface: ``run`` on the padded batch when
    batching was found exact at fetch time, else on each clip alone (frames padded); layers of
    different widths are zero-padded to the widest."""

    prepares_on_device = True
    # normalizes_waveform stays False: the user's code may normalise; audioprobe does not

    def __init__(self, run: Run, model: object, sample_rate: int, n_layers: int,
                 batched: bool, layer_names: list[str], min_samples: int = 1) -> None:
        self.run, self.model, self.batched = run, model, batched
        self.sample_rate, self.n_layers, self.min_samples = sample_rate, n_layers, min_samples
        self.layer_names = layer_names

    def __getstate__(self) -> dict:
        # DataLoader workers only decode and pad; the user's model stays in the main process.
        return {k: v for k, v in self.__dict__.items() if k not in ("run", "model")}

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"waves": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)}

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        waves = batch["waves"]
        if self.batched:
            layers, frames = self.run(waves, lengths)
        else:  # each clip alone on its own samples, its frames padded to the longest
            runs = [self.run(waves[i:i + 1, :n], lengths[i:i + 1])
                    for i, n in enumerate(lengths.tolist())]
            width = max(clip[0].shape[1] for clip, _ in runs)
            layers = [torch.cat([F.pad(clip[k], (0, 0, 0, width - clip[k].shape[1]))
                                 for clip, _ in runs]) for k in range(len(runs[0][0]))]
            frames = torch.cat([n.to(lengths) for _, n in runs])
        if len(layers) != self.n_layers:
            raise AudioprobeError(f"the model returned {len(layers)} layers; at fetch time it "
                                  f"returned {self.n_layers}")
        dim = max(h.shape[2] for h in layers)
        return [F.pad(h, (0, dim - h.shape[2])) for h in layers], frames.to(lengths)
