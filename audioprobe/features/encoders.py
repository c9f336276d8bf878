"""Encoders: models that turn a batch of waveforms into per-frame features for every layer.

An encoder exposes ``sample_rate``, ``min_samples`` (shorter clips are zero-padded to it),
``n_layers``, optionally ``max_seconds`` (the longest window the model takes whole; extraction
windows longer clips at the smaller of this and its configured ``max_seconds``), ``prepare``
(turns waves at the model's rate into the model's inputs, padded to the longest; it is made of
torch operations that run wherever the waves are when ``prepares_on_device``, so that resampling
and preparation can move to the GPU; if not, both run in the DataLoader workers) and
``__call__`` (runs on the device; takes the prepared batch and each clip's length in samples, a
tensor on the device) returning a list of (batch, frames, dim) tensors, one per layer, and the
number of valid frames of each clip.

Every encoder is exact on padded batches of mixed lengths: a clip's valid frames are those it
gets alone. Waveform transformers (HuBERT, wav2vec2, WavLM, data2vec-audio, in transformers or
torchaudio) run their convolutional front end on the padded batch with group norm over each
clip's own frames, then their transformer on the padded frames with an attention mask, padded
frames zeroed before each positional convolution (``WaveformStack``). Log-mel and PANNs pad
each clip's end by reflection as its own centred STFT does and zero the padded frames before
every convolution. Whisper and AST always take fixed-length input. Masks are built on the
device from the lengths tensor.

Families (``family`` in the config, ``load_encoder`` below):

- ``logmel``: log-mel frames, one "layer".
- ``transformers``: a transformers checkpoint folder. Waveform models (hubert, wav2vec2, wavlm,
  data2vec-audio, ...): layer 0 is the input embedding, then one layer per transformer block.
  Whisper: its encoder only, same layer convention. AST: same layer convention.
- ``torchaudio``: a ``torchaudio.pipelines`` wav2vec2/HuBERT/WavLM bundle; one layer per
  transformer block (``extract_features``), no input-embedding layer, so torchaudio layer k is
  transformers layer k + 1.
- ``panns``: PANNs CNN14 (``panns_inference.models.Cnn14``); one vector per window and layer.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import pickle
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio.transforms as T
from torch import nn

from audioprobe.errors import AudioprobeError

log = logging.getLogger(__name__)


def valid(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(batch, width) mask of each clip's first ``lengths`` positions, on the lengths' device."""
    return torch.arange(width, device=lengths.device) < lengths[:, None]


def reflect_pad(waves: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad each clip of a padded batch (batch, samples) by ``pad`` samples at both ends,
    reflected at the clip's own ends, as a centred STFT pads a clip alone."""
    index = torch.arange(-pad, waves.shape[1] + pad, device=waves.device).abs()[None]
    last = lengths[:, None] - 1
    index = torch.where(index > last, 2 * last - index, index).clamp(min=0)
    return waves.gather(1, index)


def masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` on (batch, channels, frames) with each clip's statistics over its own first
    ``lengths`` frames (the module itself would count the padding in); two-pass statistics in
    fp32, as autocast runs group norm."""
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


class LogMelEncoder:
    """Weight-free baseline: log-mel spectrogram frames as a single "layer". Centred frames:
    each clip is reflection-padded at its own ends (``reflect_pad``), so the last frames of a
    clip in a padded batch are those it gets alone."""

    prepares_on_device = True

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64) -> None:
        self.sample_rate = sample_rate
        self.hop = sample_rate // 100
        self.min_samples = 2 * self.hop
        self.n_fft = 2 * self.hop * 2
        self.melspec = T.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.n_fft, hop_length=self.hop, n_mels=n_mels,
            center=False,
        )
        self.n_layers = 1

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"waves": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)}

    def to(self, device: torch.device) -> "LogMelEncoder":
        self.melspec = self.melspec.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        mel = self.melspec(reflect_pad(batch["waves"], lengths, self.n_fft // 2))  # (B, mels, T)
        frames = torch.log(mel + 1e-6).transpose(1, 2)
        return [frames], lengths // self.hop + 1


# Model types run on padded batches through their own submodules (TransformersEncoder); other
# waveform models run each clip alone through their own forward.
PADDED_EXACT = {"hubert", "wav2vec2", "wavlm", "data2vec-audio"}


class TransformersEncoder:
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

    def to(self, device: torch.device) -> "TransformersEncoder":
        self.model = self.model.to(device)
        return self

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


class WhisperEncoder:
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

    def to(self, device: torch.device) -> "WhisperEncoder":
        self.model = self.model.to(device)
        return self

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames covering each clip: ceil(samples / (2 hop)), at most the context."""
        return torch.clamp(-(-lengths // (2 * self.hop)), min=1, max=self.max_frames)

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        out = self.model(batch["input_features"], output_hidden_states=True)
        frames = self.frames(lengths)
        keep = int(frames.max())  # frames past every clip's end are never pooled
        return [h[:, :keep] for h in out.hidden_states], frames


class ASTEncoder:
    """Audio Spectrogram Transformer (``ASTModel``).

    The feature extractor pads (or truncates) every clip's Kaldi fbank to ``max_length``
    frames (10 ms hop: 1024 frames = 10.24 s), so the model always sees the same input for a
    clip: ``pads_exactly``. Extraction windows clips at ``max_seconds`` = ``max_length`` x 10 ms
    so nothing is truncated. Pooling covers the patches over the clip only: the fbank has
    1 + (samples - window) // hop frames of the clip, and a patch column t (frames
    t x time_stride onwards) covers the clip when it starts inside it, so the first
    ceil(frames / time_stride) columns of every frequency row are pooled. The [CLS] and
    distillation tokens and the patches over the padding (which the model still attends to, as
    it always does) are left out. Patches are laid out frequency-major; they are reordered
    time-major so that the clip's patches are a prefix. Layers: ``num_hidden_layers + 1``
    hidden states (layer 0: patch embeddings plus positions).
    """

    pads_exactly = True
    prepares_on_device = False

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

    def to(self, device: torch.device) -> "ASTEncoder":
        self.model = self.model.to(device)
        return self

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


def torchaudio_bundle(name: str):
    """A wav2vec2-style bundle of ``torchaudio.pipelines`` by name (HUBERT_BASE, WAVLM_LARGE...)."""
    import torchaudio.pipelines as pipelines

    bundle = getattr(pipelines, name, None)
    if not isinstance(bundle, pipelines.Wav2Vec2Bundle):
        known = sorted(n for n in dir(pipelines)
                       if isinstance(getattr(pipelines, n), pipelines.Wav2Vec2Bundle))
        raise AudioprobeError(f"torchaudio bundle {name!r} is not a wav2vec2/HuBERT/WavLM "
                              f"bundle of torchaudio.pipelines; known: {', '.join(known)}")
    return bundle


def torchaudio_params(bundle, overrides: dict | None) -> dict:
    """The bundle's model factory arguments, with overrides (random-weight models only)."""
    params = dict(bundle._params)
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise AudioprobeError(f"unknown torchaudio model arguments {sorted(unknown)}; "
                              f"known: {sorted(params)}")
    return params | dict(overrides or {})


class TorchaudioEncoder:
    """A ``torchaudio.pipelines`` wav2vec2 / HuBERT / WavLM bundle, through
    ``Wav2Vec2Model.extract_features(waves, lengths)``: one layer per transformer block.

    Pretrained weights are the file ``bundle.get_model()`` downloads (fetched once into
    ``path``'s folder; loading it again finds it there). Bundles that normalise the waveform
    (the large models) do it here per clip, on the clip's own samples: the bundle's wrapper
    would normalise a whole padded batch at once. Padded batches run through the model's own
    submodules as ``extract_features`` does: ``conv_front_end`` (group norm of the base models
    over each clip's own frames), padded frames zeroed before the positional convolution, an
    attention mask (WavLM: its key padding mask, with its relative position bias).
    """

    def __init__(self, bundle: str, path: str | None = None, random_weights: bool = False,
                 architecture: dict | None = None, seed: int = 0) -> None:
        from torchaudio.models import wav2vec2_model, wavlm_model

        bundle_ = torchaudio_bundle(bundle)
        if random_weights:  # the factory get_model() uses, without its weights
            params = torchaudio_params(bundle_, architecture)
            factory = wavlm_model if bundle_._model_type == "WavLM" else wav2vec2_model
            torch.manual_seed(seed)
            model = factory(**params)
        else:
            if path is None:
                raise AudioprobeError(f"torchaudio bundle {bundle}: the card names no weights")
            params = bundle_._params
            weights = Path(path)
            model = bundle_.get_model(dl_kwargs={
                "model_dir": str(weights.parent), "file_name": weights.name,
                "map_location": "cpu"})
        self.model = getattr(model, "model", model).eval()  # unwrap the normalising wrapper
        self.normalize = bool(bundle_._normalize_waveform)
        self.sample_rate = int(bundle_.sample_rate)
        self.wavlm = bundle_._model_type == "WavLM"
        self.prepares_on_device = True
        self.min_samples = 400
        self.n_layers = int(params["encoder_num_layers"])

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.normalize:
            waves = [F.layer_norm(w, w.shape) for w in waves]
        return {"waves": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)}

    def to(self, device: torch.device) -> "TorchaudioEncoder":
        self.model = self.model.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        x, frames = conv_front_end(self.model.feature_extractor.conv_layers, batch["waves"],
                                   lengths)
        encoder = self.model.encoder
        hidden = encoder.feature_projection(x.transpose(1, 2))
        keep = valid(frames, hidden.shape[1])
        hidden = encoder.transformer._preprocess(hidden.masked_fill(~keep[..., None], 0))
        # WavLM's attention asserts it gets no attention mask: it takes a key padding mask
        width = hidden.shape[1]
        mask = None if self.wavlm else keep[:, None, None, :].expand(-1, 1, width, width)
        layers, bias = [], None
        for layer in encoder.transformer.layers:
            hidden, bias = layer(hidden, mask, position_bias=bias, key_padding_mask=~keep)
            layers.append(hidden)
        return layers, frames


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


def panns_state_dict(path: str | Path) -> dict:
    """The model weights of a PANNs checkpoint file ({"model": state_dict, ...})."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Training checkpoints may pickle more than tensors; the file is the one configured.
        log.warning("%s holds more than tensors; loading it with weights_only=False", path)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
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


class PannsEncoder:
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
                 random_weights: bool = False, seed: int = 0, classes_num: int = 527) -> None:
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
            self.model.load_state_dict(panns_state_dict(path))
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

    def to(self, device: torch.device) -> "PannsEncoder":
        self.model = self.model.to(device)
        return self

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


Encoder = (LogMelEncoder | TransformersEncoder | WhisperEncoder | ASTEncoder
           | TorchaudioEncoder | PannsEncoder)


def load_encoder(card: dict) -> Encoder:
    """Build the encoder a model card (written by the fetch_model rule) describes."""
    family = card["family"]
    if family == "logmel":
        return LogMelEncoder(card.get("sample_rate", 16000), card.get("n_mels", 64))
    if family == "transformers":
        from transformers import AutoConfig

        model_type = card.get("model_type") or AutoConfig.from_pretrained(card["path"]).model_type
        cls = {"whisper": WhisperEncoder,
               "audio-spectrogram-transformer": ASTEncoder}.get(model_type, TransformersEncoder)
        return cls(card["path"])
    if family == "torchaudio":
        return TorchaudioEncoder(card["bundle"], card.get("path"),
                                 card.get("random_weights", False), card.get("architecture"),
                                 card.get("seed", 0))
    if family == "panns":
        return PannsEncoder(card["sample_rate"], card.get("path"),
                            card.get("random_weights", False), card.get("seed", 0),
                            card.get("classes_num", 527))
    raise ValueError(f"unknown model family {family!r}")


def normalizes_waveform(encoder: Encoder) -> bool:
    """Whether the encoder's input preparation scales each waveform to zero mean and unit
    variance: the wav2vec2 feature extractor's ``do_normalize`` (e.g. True for wav2vec2 large,
    False for HuBERT base, pretrained without it) or a torchaudio bundle's
    ``_normalize_waveform``. False for the rest: log-mel, PANNs, Whisper (its extractor is called
    without ``do_normalize``) and AST (its extractor normalises the spectrogram, not the wave)."""
    from transformers import Wav2Vec2FeatureExtractor

    if isinstance(encoder, TorchaudioEncoder):
        return encoder.normalize
    extractor = getattr(encoder, "extractor", None)
    return isinstance(extractor, Wav2Vec2FeatureExtractor) and bool(extractor.do_normalize)


def read_card(path: str | Path) -> dict:
    """Read a model card JSON."""
    return json.loads(Path(path).read_text())
