"""Family ``transformers``: a transformers audio encoder from a hub id or a local checkpoint
folder, or built from a transformers config with random weights.

Waveform models (hubert, wav2vec2, wavlm, data2vec-audio, ...): layer 0 is the input embedding,
then one layer per transformer block. Whisper: its encoder only, same layer convention. AST:
same layer convention.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from audioprobe.errors import AudioprobeError
from audioprobe.features.families.common import (
    BaseEncoder, HUB_PATTERNS, RANDOM_SEED, config_hash, content_hash, conv_front_end, valid,
)

WAV2VEC2_FAMILY = {"hubert", "wav2vec2", "wavlm", "data2vec-audio", "wav2vec2-conformer"}
# Model types run on padded batches through their own submodules (TransformersEncoder); other
# waveform models run each clip alone through their own forward.
PADDED_EXACT = {"hubert", "wav2vec2", "wavlm", "data2vec-audio"}
FIXED_LENGTH = {"whisper", "audio-spectrogram-transformer"}


def load(card: dict) -> TransformersEncoder | WhisperEncoder | ASTEncoder:
    """Whisper's encoder, AST, or a waveform encoder, by the card's model type."""
    from transformers import AutoConfig

    model_type = card.get("model_type") or AutoConfig.from_pretrained(card["path"]).model_type
    cls = {"whisper": WhisperEncoder,
           "audio-spectrogram-transformer": ASTEncoder}.get(model_type, TransformersEncoder)
    return cls(card["path"])


def layer_names(n_layers: int) -> list[str]:
    """The input embedding, then one layer per transformer block."""
    return ["input embedding", *(f"block {k}" for k in range(1, n_layers))]


def batching(card: dict) -> str:
    """``padded`` for the model types run through their own submodules with masks, ``fixed``
    for Whisper and AST (fixed-length input, pooled frames cropped to the clip), ``alone``
    for other waveform models (each clip through the model's own forward)."""
    if card["model_type"] in FIXED_LENGTH:
        return "fixed"
    return "padded" if card["model_type"] in PADDED_EXACT else "alone"


def default_extractor(config):
    """The feature extractor a randomly initialised transformers model of ``config`` takes."""
    from transformers import ASTFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if config.model_type == "whisper":
        # The encoder takes exactly 2 * max_source_positions mel frames (10 ms hop).
        seconds = 2 * config.max_source_positions * 160 / 16000
        if seconds != int(seconds):
            raise AudioprobeError(f"whisper max_source_positions={config.max_source_positions}"
                                  " must be a multiple of 50 (whole seconds of input)")
        return WhisperFeatureExtractor(feature_size=config.num_mel_bins,
                                       chunk_length=int(seconds))
    if config.model_type == "audio-spectrogram-transformer":
        return ASTFeatureExtractor(num_mel_bins=config.num_mel_bins,
                                   max_length=config.max_length)
    if config.model_type in WAV2VEC2_FAMILY:
        # Models with layer norm in the feature encoder take attention masks (wav2vec2-large-lv60
        # style, data2vec-audio); group-norm models (hubert-base, wav2vec2-base) were trained
        # without them.
        layer_norm = (config.model_type == "data2vec-audio"
                      or getattr(config, "feat_extract_norm", "group") == "layer")
        return Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True,
                                        return_attention_mask=layer_norm)
    raise AudioprobeError(
        f"no default feature extractor for model_type {config.model_type!r}; "
        "give a checkpoint whose folder holds preprocessor_config.json"
    )


def _random_init(config, folder: Path, extractor=None) -> None:
    """Save a randomly initialised model of ``config`` (seeded) with its feature extractor."""
    from transformers import AutoModel

    if extractor is None:
        extractor = default_extractor(config)
    torch.manual_seed(RANDOM_SEED)
    AutoModel.from_config(config).save_pretrained(folder)
    extractor.save_pretrained(folder)


def _snapshot(checkpoint: str, revision: str, cache: Path, name: str) -> Path:
    """Local checkpoint folder, or a hub snapshot downloaded into ``cache``."""
    local = Path(checkpoint).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise AudioprobeError(f"model {name}: {local} has no config.json")
        return local.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(
            checkpoint, revision=revision, cache_dir=cache, allow_patterns=list(HUB_PATTERNS),
        ))
    except Exception as exc:
        raise AudioprobeError(
            f"model {name}: checkpoint {checkpoint!r} (revision {revision}) is neither a local "
            f"folder nor reachable on the hub; looked in {local.resolve()} and the cache {cache} "
            f"({exc.__class__.__name__}: {exc})"
        ) from None


def fetch(name: str, spec: dict, models_dir: Path) -> dict:
    """A hub snapshot or local folder, used as it is; or a seeded random-weight model saved
    with its feature extractor into ``models_dir / name``."""
    from transformers import AutoConfig, AutoFeatureExtractor

    folder = models_dir / name
    if "checkpoint" in spec:
        source = _snapshot(spec["checkpoint"], spec.get("revision", "main"), models_dir / "hub",
                           name)
        model_id = spec["checkpoint"]
        hub = source.parent.name == "snapshots" and not Path(model_id).expanduser().is_dir()
        revision = source.name if hub else content_hash(source)
        config = AutoConfig.from_pretrained(source)
        if not spec.get("random_weights"):
            return {"model_id": model_id, "revision": revision, "model_type": config.model_type,
                    "path": str(source)}
        _random_init(config, folder, AutoFeatureExtractor.from_pretrained(source))
        checkpoint = {"checkpoint_path": str(source)}
    else:
        arch = dict(spec["architecture"])
        config = AutoConfig.for_model(arch.pop("model_type"), **arch)
        _random_init(config, folder)
        model_id, revision = f"{config.model_type} (config only)", config_hash(spec["architecture"])
        checkpoint = {}
    return {"model_id": model_id, "revision": revision, "model_type": config.model_type,
            "random_weights": True, "seed": RANDOM_SEED, "path": str(folder.resolve()),
            **checkpoint}


def positional_conv(embed: nn.Module, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A transformers convolutional positional embedding of (batch, frames, dim), padded frames
    zeroed before each convolution as a clip alone is zero-padded: one convolution (HuBERT,
    wav2vec2, WavLM; after batch norm where ``conv_pos_batch_norm``) or a stack of them
    (data2vec-audio)."""
    pad = ~keep[:, None, :]
    h = x.transpose(1, 2)
    if hasattr(embed, "layers"):
        for layer in embed.layers:
            h = layer(h.masked_fill(pad, 0))
    else:
        if getattr(embed, "batch_norm", None) is not None:
            h = embed.batch_norm(h)
        h = embed.activation(embed.padding(embed.conv(h.masked_fill(pad, 0))))
    return h.transpose(1, 2)


class TransformersEncoder(BaseEncoder):
    """A transformers waveform encoder saved in a folder (hub snapshot or local checkpoint):
    hubert, wav2vec2, wavlm, data2vec-audio and the like.

    Layer 0 is the transformer's input (after the positional convolution, and the layer norm
    of post-norm models), then one layer per block: the model's ``hidden_states``. HuBERT,
    wav2vec2, WavLM (relative position bias, gated per frame) and data2vec-audio run padded
    batches through the model's own submodules: ``conv_front_end``, feature projection, padded
    frames zeroed, ``positional_conv``, then the encoder layers with an attention mask. Other
    model types (wav2vec2-conformer: convolutions inside every layer) run each clip alone.
    """

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor

        self.extractor = AutoFeatureExtractor.from_pretrained(folder)
        if self.extractor.model_input_names[0] != "input_values":
            raise AudioprobeError(f"{folder}: its feature extractor makes "
                                  f"{self.extractor.model_input_names[0]}, not waveforms "
                                  "(input_values); only waveform models are supported")
        self.model = AutoModel.from_pretrained(folder).eval()
        self.sample_rate = int(self.extractor.sampling_rate)
        self.min_samples = 400
        self.n_layers = self.model.config.num_hidden_layers + 1
        # The wav2vec2 extractor (hubert, wavlm, data2vec-audio, ...) only normalises and pads:
        # its steps are replayed with torch operations, on the device (tests/test_encoders.py
        # checks them against the extractor). Other extractors run as they are, in the workers.
        self.prepares_on_device = isinstance(self.extractor, Wav2Vec2FeatureExtractor)

    @property
    def normalizes_waveform(self) -> bool:
        """Zero mean and unit variance per clip: the wav2vec2 extractor's ``do_normalize`` (True
        for wav2vec2 large, False for HuBERT base, pretrained without it)."""
        return self.prepares_on_device and bool(self.extractor.do_normalize)

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each clip prepared alone (an extractor given a padded batch without attention mask
        would normalise over the padding too), then padded."""
        if not self.prepares_on_device:
            waves = [self.extractor(w.cpu().numpy(), sampling_rate=self.sample_rate,
                                    return_tensors="pt")["input_values"][0] for w in waves]
        elif self.extractor.do_normalize:  # zero mean, unit variance over the clip's samples
            waves = [(w - w.mean()) / torch.sqrt(w.var(correction=0) + 1e-7) for w in waves]
        values = torch.nn.utils.rnn.pad_sequence(
            waves, batch_first=True, padding_value=self.extractor.padding_value)
        return {"input_values": values}

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        if self.model.config.model_type not in PADDED_EXACT:
            return self.each_alone(batch["input_values"], lengths)
        from transformers.masking_utils import create_bidirectional_mask

        model, config = self.model, self.model.config
        x, frames = conv_front_end(model.feature_extractor.conv_layers, batch["input_values"],
                                   lengths)
        hidden = model.feature_projection(x.transpose(1, 2))
        if isinstance(hidden, tuple):  # (projected, normalised features) but for HuBERT
            hidden = hidden[0]
        keep = valid(frames, hidden.shape[1])
        hidden = hidden.masked_fill(~keep[..., None], 0)
        hidden = hidden + positional_conv(model.encoder.pos_conv_embed, hidden, keep)
        if not getattr(config, "do_stable_layer_norm", False):
            hidden = model.encoder.layer_norm(hidden)
        wavlm = config.model_type == "wavlm"  # takes the padding mask; bias passed on
        mask = keep if wavlm else create_bidirectional_mask(
            config=config, inputs_embeds=hidden, attention_mask=keep)
        layers, bias = [hidden], None
        for layer in model.encoder.layers:
            if wavlm:
                hidden, bias = layer(hidden, attention_mask=keep, position_bias=bias)
            else:
                hidden = layer(hidden, attention_mask=mask)
            layers.append(hidden)
        return layers, frames

    def each_alone(self, values: torch.Tensor, lengths: torch.Tensor):
        """Each clip through the model's own forward on its own samples, frames padded."""
        outs = [self.model(values[i:i + 1, :n], output_hidden_states=True).hidden_states
                for i, n in enumerate(lengths.tolist())]
        width = max(out[0].shape[1] for out in outs)
        layers = [torch.cat([F.pad(out[k], (0, 0, 0, width - out[k].shape[1])) for out in outs])
                  for k in range(len(outs[0]))]
        frames = torch.tensor([out[0].shape[1] for out in outs], device=lengths.device)
        return layers, frames


class WhisperEncoder(BaseEncoder):
    """Whisper's encoder (the decoder is dropped).

    The feature extractor always pads (or truncates) the log-mel input to ``chunk_length``
    seconds (30 s), so the encoder sees the same input whether a clip is alone or batched.
    Extraction windows clips at ``max_seconds`` = ``chunk_length`` so nothing is truncated.
    Pooling covers the clip's own frames only: the encoder's two convolutions
    (stride 1, then 2) give ceil(samples / hop_length / 2) frames of the clip; the frames over
    the padding (which the model still attends to, as it always does) are cropped. Layers: the
    encoder's hidden states, ``encoder_layers + 1`` (the last one after the final layer norm).
    """

    prepares_on_device = False
    # normalizes_waveform stays False: its extractor is called without do_normalize

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoFeatureExtractor, AutoModel

        self.extractor = AutoFeatureExtractor.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).get_encoder().eval()
        config = self.model.config
        self.sample_rate = int(self.extractor.sampling_rate)
        self.hop = int(self.extractor.hop_length)
        self.max_seconds = self.extractor.n_samples / self.sample_rate
        self.max_frames = int(config.max_source_positions)
        if self.extractor.n_samples // self.hop != 2 * self.max_frames:
            raise AudioprobeError(
                f"whisper in {folder}: the feature extractor's {self.extractor.n_samples} "
                f"samples give {self.extractor.n_samples // self.hop} mel frames, the encoder "
                f"takes {2 * self.max_frames} (max_source_positions={self.max_frames})")
        self.min_samples = 2 * self.hop
        self.n_layers = int(config.encoder_layers) + 1

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = self.extractor(
            [w.cpu().numpy() for w in waves], sampling_rate=self.sample_rate, padding="max_length",
            truncation=True, return_attention_mask=False, return_tensors="pt")
        return {"input_features": inputs["input_features"]}

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames covering each clip: ceil(samples / (2 hop)), at most the context."""
        return torch.clamp(-(-lengths // (2 * self.hop)), min=1, max=self.max_frames)

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        out = self.model(batch["input_features"], output_hidden_states=True)
        frames = self.frames(lengths)
        keep = int(frames.max())  # frames past every clip's end are never pooled
        return [h[:, :keep] for h in out.hidden_states], frames


class ASTEncoder(BaseEncoder):
    """Audio Spectrogram Transformer (``ASTModel``).

    The feature extractor pads (or truncates) every clip's Kaldi fbank to ``max_length``
    frames (10 ms hop: 1024 frames = 10.24 s), so the model always sees the same input for a
    clip, alone or in a batch. Extraction windows clips at ``max_seconds`` = ``max_length`` x 10 ms
    so nothing is truncated. Pooling covers the patches over the clip only: the fbank has
    1 + (samples - window) // hop frames of the clip, and a patch column t (frames
    t x time_stride onwards) covers the clip when it starts inside it, so the first
    ceil(frames / time_stride) columns of every frequency row are pooled. The [CLS] and
    distillation tokens and the patches over the padding (which the model still attends to, as
    it always does) are left out. Patches are laid out frequency-major; they are reordered
    time-major so that the clip's patches are a prefix. Layers: ``num_hidden_layers + 1``
    hidden states (layer 0: patch embeddings plus positions).
    """

    prepares_on_device = False
    # normalizes_waveform stays False: its extractor normalises the fbank, not the wave

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoFeatureExtractor, AutoModel

        self.extractor = AutoFeatureExtractor.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        config = self.model.config
        self.sample_rate = int(self.extractor.sampling_rate)
        self.max_seconds = int(self.extractor.max_length) * 0.010  # Kaldi fbank: 10 ms shift
        self.window = int(0.025 * self.sample_rate)  # one 25 ms fbank window
        self.hop = int(0.010 * self.sample_rate)
        self.min_samples = self.window
        self.n_layers = int(config.num_hidden_layers) + 1
        self.rows, self.columns = self.model.embeddings.get_shape(config)  # frequency, time
        self.time_stride = int(config.time_stride)

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = self.extractor([w.cpu().numpy() for w in waves], sampling_rate=self.sample_rate,
                                return_tensors="pt")
        return {"input_values": inputs["input_values"]}

    def columns_covered(self, lengths: torch.Tensor) -> torch.Tensor:
        """Patch columns (time positions) that start inside each clip of ``lengths`` samples."""
        frames = 1 + (lengths - self.window) // self.hop
        return torch.clamp(-(-frames // self.time_stride), min=1, max=self.columns)

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        out = self.model(batch["input_values"], output_hidden_states=True)
        covered = self.columns_covered(lengths)
        keep = int(covered.max())  # columns past every clip's end are never pooled
        patches = self.rows * self.columns
        layers = [h[:, -patches:].unflatten(1, (self.rows, self.columns))[:, :, :keep]
                  .transpose(1, 2).flatten(1, 2) for h in out.hidden_states]
        return layers, covered * self.rows

