"""What the model families share: the encoders' base class, padding masks, the wav2vec2-style
convolutional front end on padded batches, the hashes and seed that identify a model's weights in its card, and the one
way a family loads a checkpoint file (``safe_torch_load``). torch is imported where it is used,
so that the hashes serve the fetch of a weight-free model without it."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audioprobe.errors import UnsafeCheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

HUB_PATTERNS = ("*.json", "*.safetensors", "*.bin", "*.txt", "*.model")
RANDOM_SEED = 0


class BaseEncoder:
    """What every family's encoder shares: ``to(device)`` moves its torch module (the attribute
    ``device_module`` names; the user's model only where it is one), and waveforms are given
    as they are unless the encoder says it normalises them (``normalizes_waveform``)."""

    device_module = "model"
    normalizes_waveform = False

    def to(self, device: torch.device) -> BaseEncoder:
        from torch import nn

        module = getattr(self, self.device_module)
        if isinstance(module, nn.Module):
            setattr(self, self.device_module, module.to(device))
        return self


def config_hash(spec: dict) -> str:
    """A short, stable hash of a configuration mapping."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def content_hash(path: Path, patterns: tuple[str, ...] = HUB_PATTERNS) -> str:
    """``sha256:`` and 16 hex digits over a file, or a folder's files matching ``patterns``
    (names and contents, in name order)."""
    digest = hashlib.sha256()
    if path.is_file():
        files = [path]
    else:
        files = sorted({f for p in patterns for f in path.rglob(p) if f.is_file()})
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


def untrusted_checkpoint(path: str | Path) -> UnsafeCheckpointError:
    """The error for a checkpoint that holds more than tensors, saying what to do."""
    return UnsafeCheckpointError(
        f"{path} pickles more than tensors, and loading it could run code: resave its state dict "
        "as .safetensors (or with torch.save of tensors only), or, only if you trust the file, "
        "set trust_checkpoint: true on the model")


def _numpy_globals() -> list:
    """What unpickles numpy arrays, scalars and dtypes (data, no code: an object array's items
    are unpickled under the same restrictions), under numpy 2's names and numpy 1's: training
    checkpoints such as PANNs' keep their sampler's state as numpy arrays."""
    from numpy._core import multiarray

    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [np.ndarray, np.dtype, *dtypes, multiarray._reconstruct, multiarray.scalar,
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
            (multiarray.scalar, "numpy.core.multiarray.scalar")]


def safe_torch_load(path: str | Path, trust: bool = False) -> Any:
    """A checkpoint file's contents, on the CPU. ``.safetensors`` files are read as such; other
    files with ``torch.load(weights_only=True)``, which unpickles tensors, numpy arrays and plain
    containers only. A file that needs more (any other pickled object, which can run code as it
    is loaded) is refused (UnsafeCheckpointError) unless ``trust``: the model's explicit
    ``trust_checkpoint: true``, which its card carries so that every job that loads it makes the
    same choice."""
    import torch

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            raise untrusted_checkpoint(path) from None
    log.warning("%s pickles more than tensors; loading it in full (trust_checkpoint: true)", path)
    return torch.load(path, map_location="cpu", weights_only=False)


def checked_weights(card: dict, module: Any) -> None:
    """Refuse what is on disk when it is not what the card's revision names, for every family
    alike: the family's ``revision_now(card)`` (the user's code and weights, for ``hear`` and
    ``custom``) where it has one, else a local checkpoint (or downloaded weights, ``path``)
    hashed at fetch time. Hub snapshots (named by their commit) and random weights (built from
    the card) are what they say."""
    revision, path = card.get("revision", ""), card.get("path")
    if hasattr(module, "revision_now"):
        what, found = module.revision_now(card)
    elif revision.startswith("sha256:") and path is not None and not card.get("random_weights"):
        what = f"weights at {path}"
        found = content_hash(Path(path)) if Path(path).exists() else "missing"
    else:
        return
    if found != revision:
        from audioprobe.errors import AudioprobeError

        raise AudioprobeError(
            f"model {card.get('name', card.get('model_id'))}: the {what} are {found}, not "
            f"{revision} as when its card was written (they changed): run the workflow again "
            "to fetch and extract it anew, and label with a probe trained on these weights")


def valid(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(batch, width) mask of each clip's first ``lengths`` positions, on the lengths' device."""
    import torch

    return torch.arange(width, device=lengths.device) < lengths[:, None]


def reflect_pad(waves: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad each clip of a padded batch (batch, samples) by ``pad`` samples at both ends,
    reflected at the clip's own ends, as a centred STFT pads a clip alone."""
    import torch

    index = torch.arange(-pad, waves.shape[1] + pad, device=waves.device).abs()[None]
    last = lengths[:, None] - 1
    index = torch.where(index > last, 2 * last - index, index).clamp(min=0)
    return waves.gather(1, index)


def masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` on (batch, channels, frames) with each clip's statistics over its own first
    ``lengths`` frames (the module itself would count the padding in); two-pass statistics in
    fp32, as autocast runs group norm."""
    import torch

    batch, channels, frames = x.shape
    x = x.float()
    pad = ~valid(lengths, frames)[:, None, :]
    count = lengths.clamp(min=1)[:, None] * (channels // norm.num_groups)

    def group_mean(sums: torch.Tensor) -> torch.Tensor:  # per channel sums -> group means
        means = sums.view(batch, norm.num_groups, -1).sum(2) / count
        return means.repeat_interleave(channels // norm.num_groups, dim=1)

    mean = group_mean(x.masked_fill(pad, 0).sum(2))
    centred = (x - mean[..., None]).masked_fill_(pad, 0)
    var = group_mean(torch.linalg.vector_norm(centred, dim=2).square())
    del centred
    scale = torch.rsqrt(var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = -mean * scale + (norm.bias if norm.affine else 0)
    return torch.addcmul(shift[..., None], x, scale[..., None])


def conv_front_end(layers: nn.ModuleList, waves: torch.Tensor, lengths: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A wav2vec2-style convolutional feature encoder (transformers' or torchaudio's layers) on
    padded waves (batch, samples), group norm (base models) over each clip's own frames.
    Layer-norm layers normalise each frame and convolutions see no further than their kernel,
    so a clip's valid frames are its own. Returns (batch, channels, frames), valid frames."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchaudio.models.wav2vec2.components import ConvLayerBlock

    x = waves[:, None]
    for layer in layers:
        conv, norm = layer.conv, getattr(layer, "layer_norm", None)
        lengths = torch.div(lengths - conv.kernel_size[0], conv.stride[0],
                            rounding_mode="floor") + 1
        if isinstance(norm, nn.GroupNorm):
            x = getattr(layer, "activation", F.gelu)(masked_group_norm(conv(x), lengths, norm))
        elif isinstance(layer, ConvLayerBlock):
            x, _ = layer(x, None)
        else:
            x = layer(x)
    return x, lengths

