"""Family ``panns``: PANNs CNN14 (``panns_inference.models.Cnn14``) from its published checkpoint
file, or with random weights; one vector per window and layer (conv blocks 1-6, then the
embedding)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from audioprobe.errors import AudioprobeError
from audioprobe.features.families.common import (
    BaseEncoder, RANDOM_SEED, config_hash, content_hash, reflect_pad, safe_torch_load, valid,
)


def load(card: dict) -> PannsEncoder:
    """CNN14 with the checkpoint's weights or seeded random ones."""
    return PannsEncoder(card["sample_rate"], card.get("path"), card.get("random_weights", False),
                        card.get("seed", 0), card.get("classes_num", 527),
                        card.get("trust_checkpoint", False))


def layer_names(n_layers: int) -> list[str]:
    """Conv blocks 1-6, then the embedding."""
    return [*(f"conv block {k}" for k in range(1, n_layers)), "embedding"]


def batching(card: dict) -> str:
    """Padded batches, padded frames zeroed and left out of every average."""
    return "padded"


def fetch(name: str, spec: dict, models_dir: Path) -> dict:
    """The configured checkpoint file, checked and hashed in place; or random weights."""
    if "checkpoint" in spec:
        path = Path(spec["checkpoint"]).expanduser()
        if not path.is_file():
            raise AudioprobeError(f"PANNs checkpoint {path} is not a file (give the .pth file, "
                                  "e.g. Cnn14_mAP=0.431.pth or Cnn14_16k_mAP=0.438.pth)")
        info = panns_checkpoint_info(panns_state_dict(path, spec.get("trust_checkpoint", False)))
        card = {"model_id": f"panns Cnn14 {path.name}", "revision": content_hash(path),
                "path": str(path.resolve()), **info}
        if spec.get("random_weights"):
            card |= {"random_weights": True, "seed": RANDOM_SEED}
        return card
    if not spec.get("random_weights"):
        raise AudioprobeError("PANNs needs a checkpoint file, or random_weights: true")
    sample_rate = spec.get("sample_rate", 32000)
    if sample_rate not in PANNS_PRESETS:
        raise AudioprobeError(f"PANNs Cnn14 runs at {sorted(PANNS_PRESETS)} Hz, not {sample_rate}")
    return {"model_id": "panns Cnn14 (random weights)", "sample_rate": sample_rate,
            "classes_num": 527, "revision": config_hash({"model": "Cnn14",
                                                         "sample_rate": sample_rate}),
            "random_weights": True, "seed": RANDOM_SEED}


# Cnn14 front ends of the released checkpoints, by sample rate: Cnn14_mAP=0.431.pth (32 kHz)
# and Cnn14_16k_mAP=0.438.pth (16 kHz). 64 mel bins from fmin 50 Hz in both.
PANNS_PRESETS = {
    32000: {"window_size": 1024, "hop_size": 320, "fmax": 14000},
    16000: {"window_size": 512, "hop_size": 160, "fmax": 8000},
}
PANNS_DIM = 2048
PANNS_LAYERS = 7  # conv blocks 1-6, then the embedding


def panns_models() -> types.ModuleType:
    """``panns_inference.models`` (its Cnn14), imported without the package's ``__init__``.

    ``import panns_inference`` runs ``panns_inference.config``, which on first use calls
    ``wget`` to download the AudioSet label list into ~/panns_data (no network on compute nodes:
    it leaves an empty file) and imports librosa and matplotlib for its inference helpers; only
    the model definitions are needed here, so they are loaded under a private package name.
    """
    name = "_audioprobe_panns"
    if f"{name}.models" in sys.modules:
        return sys.modules[f"{name}.models"]
    spec = importlib.util.find_spec("panns_inference")
    if spec is None or not spec.submodule_search_locations:
        raise AudioprobeError("family panns needs panns-inference: "
                              "pip install 'audioprobe[panns]'")
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = package
    return importlib.import_module(f"{name}.models")


def panns_state_dict(path: str | Path, trust: bool = False) -> dict:
    """The model weights of a PANNs checkpoint file ({"model": state_dict, ...}, or the state
    dict itself, e.g. as .safetensors); one that pickles more than tensors only with ``trust``
    (``safe_torch_load``)."""
    checkpoint = safe_torch_load(path, trust)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "spectrogram_extractor.stft.conv_real.weight" not in state:
        raise AudioprobeError(f"{path} is not a PANNs checkpoint (no model state dict with a "
                              "spectrogram extractor)")
    return state


def panns_checkpoint_info(state: dict) -> dict:
    """Sample rate and number of classes of a PANNs Cnn14 state dict."""
    fc1 = state.get("fc1.weight")
    if "conv_block6.conv2.weight" not in state or fc1 is None or tuple(fc1.shape) != (2048, 2048):
        raise AudioprobeError("not a Cnn14 checkpoint (six conv blocks, 2048-dim fc1); "
                              "panns-inference 0.1.1 defines Cnn14 only, not Cnn10 or Cnn6")
    window = state["spectrogram_extractor.stft.conv_real.weight"].shape[-1]
    rates = {p["window_size"]: sr for sr, p in PANNS_PRESETS.items()}
    if window not in rates:
        raise AudioprobeError(f"PANNs checkpoint with a {window}-sample STFT window: known "
                              f"Cnn14 front ends have {sorted(rates)}")
    return {"sample_rate": rates[window],
            "classes_num": int(state.get("fc_audioset.weight", torch.empty(527)).shape[0])}


class PannsEncoder(BaseEncoder):
    """PANNs CNN14 (``panns_inference.models.Cnn14``) from a checkpoint file, or random weights.

    Layers (``n_layers`` = 7), one vector per window each: the outputs of conv blocks 1-6
    (64, 128, 256, 512, 1024, 2048 channels, each after its 2x2 average pooling, block 6
    without), averaged over time and mel frequency; then the 2048-dim embedding (fc1 + ReLU on
    the max + mean over time of block 6 averaged over frequency: the model's own
    ``embedding`` output). The feature store holds one dimension for all layers, so blocks
    1-5 are zero-padded to 2048 (their trailing dimensions are constant zero). A window is a
    single frame: long clips (windowed at extraction's ``max_seconds``) average their windows
    with equal weights, and ``mean+std`` pooling gives zero std for single-window clips.
    Padded batches: each clip is reflection-padded at its own ends for the centred STFT,
    padded frames are zeroed before every convolution (as a clip alone is zero-padded) and
    left out of every average and maximum; 2x2 pooling keeps floor(frames / 2).
    """

    prepares_on_device = True

    def __init__(self, sample_rate: int = 32000, path: str | None = None,
                 random_weights: bool = False, seed: int = 0, classes_num: int = 527,
                 trust_checkpoint: bool = False) -> None:
        if sample_rate not in PANNS_PRESETS:
            raise AudioprobeError(f"PANNs Cnn14 runs at {sorted(PANNS_PRESETS)} Hz, "
                                  f"not {sample_rate}")
        preset = PANNS_PRESETS[sample_rate]
        torch.manual_seed(seed)
        self.model = panns_models().Cnn14(
            sample_rate=sample_rate, window_size=preset["window_size"],
            hop_size=preset["hop_size"], mel_bins=64, fmin=50, fmax=preset["fmax"],
            classes_num=classes_num)
        if not random_weights:
            if path is None:
                raise AudioprobeError("PANNs: the card names no checkpoint file")
            self.model.load_state_dict(panns_state_dict(path, trust_checkpoint))
        self.model.eval()
        self.sample_rate = sample_rate
        # five 2x2 poolings in time: at least 32 STFT frames (centred: samples // hop + 1)
        self.min_samples = 32 * preset["hop_size"]
        self.n_layers = PANNS_LAYERS

    def __getstate__(self) -> dict:
        # DataLoader workers only decode and prepare; the model's class lives in a private package
        # that a spawned worker could not import, so it is not sent to them.
        return {k: v for k, v in self.__dict__.items() if k != "model"}

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"waves": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)}

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        m = self.model
        stft = m.spectrogram_extractor.stft  # torchlibrosa's, on each clip's own padding
        x = reflect_pad(batch["waves"], lengths, stft.n_fft // 2)[:, None]
        power = (stft.conv_real(x) ** 2 + stft.conv_imag(x) ** 2)[:, None].transpose(2, 3)
        x = m.logmel_extractor(power)  # (B, 1, T, 64)
        x = m.bn0(x.transpose(1, 3)).transpose(1, 3)
        frames = lengths // stft.hop_length + 1
        pooled = []
        blocks = [m.conv_block1, m.conv_block2, m.conv_block3, m.conv_block4, m.conv_block5,
                  m.conv_block6]
        for i, block in enumerate(blocks):
            pad = ~valid(frames, x.shape[2])[:, None, :, None]
            x = F.relu_(block.bn1(block.conv1(x.masked_fill(pad, 0))))
            x = F.relu_(block.bn2(block.conv2(x.masked_fill(pad, 0))))
            if i < 5:
                x = F.avg_pool2d(x, kernel_size=(2, 2))
                frames = frames // 2
                pad = ~valid(frames, x.shape[2])[:, None, :, None]
            pooled.append(x.masked_fill(pad, 0).sum((2, 3)) / (frames * x.shape[3])[:, None])
        x = x.mean(dim=3)
        pad = pad[..., 0]
        peak = x.masked_fill(pad, -torch.inf).amax(dim=2)
        mean = x.masked_fill(pad, 0).sum(dim=2) / frames[:, None]
        pooled.append(F.relu(m.fc1(peak + mean)))
        layers = [F.pad(p, (0, PANNS_DIM - p.shape[1]))[:, None, :] for p in pooled]
        return layers, torch.ones_like(lengths)

