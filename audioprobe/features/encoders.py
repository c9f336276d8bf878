"""Encoders: models that turn a batch of waveforms into per-frame features for every layer.

An encoder exposes ``sample_rate``, ``min_samples`` (shorter clips are zero-padded to it),
``pads_exactly`` (True when padding a clip inside a batch leaves its frames unchanged, i.e. the
model takes an attention mask or always sees fixed-length input), ``n_layers``, optionally
``max_seconds`` (the longest window the model takes whole; extraction windows longer clips at
the smaller of this and its configured ``max_seconds``), ``prepare`` (turns waves at the model's
rate into the model's inputs; ``prepares_on_device`` says whether it is made of torch operations
that run wherever the waves are, so that resampling and preparation can move to the GPU; if not,
both run in the DataLoader workers) and ``__call__`` (runs on the device) returning a list of
(batch, frames, dim) tensors, one per layer, and the number of valid frames of each clip.

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

from audioprobe.errors import AudioprobeError

log = logging.getLogger(__name__)


class LogMelEncoder:
    """Weight-free baseline: log-mel spectrogram frames as a single "layer"."""

    pads_exactly = False
    prepares_on_device = True

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64) -> None:
        self.sample_rate = sample_rate
        self.hop = sample_rate // 100
        self.min_samples = 2 * self.hop
        self.n_fft = 2 * self.hop * 2
        self.melspec = T.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.n_fft, hop_length=self.hop, n_mels=n_mels
        )
        self.n_layers = 1

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"waves": torch.stack(waves)}

    def to(self, device: torch.device) -> "LogMelEncoder":
        self.melspec = self.melspec.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        mel = self.melspec(batch["waves"])  # (B, n_mels, frames)
        frames = torch.log(mel + 1e-6).transpose(1, 2)
        return [frames], lengths // self.hop + 1


# Waveform transformers models verified exact on padded batches when given attention masks and
# a layer-norm feature encoder (tests/test_extract.py, tests/test_encoders.py).
MASKED_EXACT = {"wav2vec2", "hubert", "wavlm"}


def masks_exactly(config, extractor) -> bool:
    """Whether a waveform transformers model is exact on padded batches.

    It must be given an attention mask (its feature extractor returns one) and its convolutional
    feature encoder must normalise per frame (layer norm): group norm normalises each channel
    over the whole sequence, padding included, so such models (hubert-base, wav2vec2-base,
    wavlm-base(-plus), although the latter's extractor returns masks) get equal-length batches.
    data2vec-audio takes masks but is not exact: padded frames are zeroed only before the first
    of its stacked positional convolutions, so the later ones carry padding into the clip's
    last frames; it gets equal-length batches, as does any model type not in MASKED_EXACT.
    """
    norm = getattr(config, "feat_extract_norm", None)
    return (config.model_type in MASKED_EXACT and norm == "layer"
            and bool(getattr(extractor, "return_attention_mask", False)))


class TransformersEncoder:
    """A transformers waveform encoder saved in a folder (hub snapshot or local checkpoint):
    hubert, wav2vec2, wavlm, data2vec-audio and the like."""

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor

        self.extractor = AutoFeatureExtractor.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        self.sample_rate = int(self.extractor.sampling_rate)
        self.pads_exactly = masks_exactly(self.model.config, self.extractor)
        self.min_samples = 400
        self.n_layers = self.model.config.num_hidden_layers + 1
        # The wav2vec2 extractor (hubert, wavlm, data2vec-audio, ...) only normalises and pads:
        # its steps are replayed with torch operations, on the device (tests/test_encoders.py
        # checks them against the extractor). Other extractors run as they are, in the workers.
        self.prepares_on_device = isinstance(self.extractor, Wav2Vec2FeatureExtractor)

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.prepares_on_device:
            return dict(self.extractor([w.cpu().numpy() for w in waves],
                                       sampling_rate=self.sample_rate, padding=True,
                                       return_attention_mask=self.pads_exactly,
                                       return_tensors="pt"))
        if self.extractor.do_normalize:  # zero mean, unit variance over each clip's own samples
            waves = [(w - w.mean()) / torch.sqrt(w.var(correction=0) + 1e-7) for w in waves]
        values = torch.nn.utils.rnn.pad_sequence(
            waves, batch_first=True, padding_value=self.extractor.padding_value)
        inputs = {"input_values": values}
        if self.pads_exactly:
            lengths = torch.tensor([w.numel() for w in waves], device=values.device)
            inputs["attention_mask"] = (torch.arange(values.shape[1], device=values.device)
                                        < lengths[:, None]).int()
        return inputs

    def to(self, device: torch.device) -> "TransformersEncoder":
        self.model = self.model.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        out = self.model(**batch, output_hidden_states=True)
        frames = self.model._get_feat_extract_output_lengths(lengths)
        return list(out.hidden_states), frames


class WhisperEncoder:
    """Whisper's encoder (the decoder is dropped).

    The feature extractor always pads (or truncates) the log-mel input to ``chunk_length``
    seconds (30 s), so the encoder sees the same input whether a clip is alone or batched:
    ``pads_exactly``. Extraction windows clips at ``max_seconds`` = ``chunk_length`` so nothing
    is truncated. Pooling covers the clip's own frames only: the encoder's two convolutions
    (stride 1, then 2) give ceil(samples / hop_length / 2) frames of the clip; the frames over
    the padding (which the model still attends to, as it always does) are cropped. Layers: the
    encoder's hidden states, ``encoder_layers + 1`` (the last one after the final layer norm).
    """

    pads_exactly = True
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
    would normalise a whole padded batch at once. Exact under padding when the convolutional
    feature encoder uses layer norm (``extractor_mode: layer_norm``): torchaudio then masks the
    padded frames (zeroed before the positional convolution, -10000 in attention). Group-norm
    models (base) and WavLM (torchaudio's WavLM attention takes no mask) get equal-length
    batches.
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
        # torchaudio's WavLM attention takes no padding mask (it asserts there is none)
        self.pads_exactly = (params["extractor_mode"] == "layer_norm"
                             and bundle_._model_type != "WavLM")
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
        if not self.pads_exactly:  # one length per batch: no mask needed (nor taken by WavLM)
            layers, _ = self.model.extract_features(batch["waves"])
            return layers, torch.full_like(lengths, layers[0].shape[1])
        return self.model.extract_features(batch["waves"], lengths)


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
    Batch norm runs in eval mode and there is no mask, so batches hold one length only.
    """

    pads_exactly = False
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
        return {"waves": torch.stack(waves)}

    def to(self, device: torch.device) -> "PannsEncoder":
        self.model = self.model.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        m = self.model
        x = m.logmel_extractor(m.spectrogram_extractor(batch["waves"]))  # (B, 1, T, 64)
        x = m.bn0(x.transpose(1, 3)).transpose(1, 3)
        pooled = []
        blocks = [m.conv_block1, m.conv_block2, m.conv_block3, m.conv_block4, m.conv_block5,
                  m.conv_block6]
        for i, block in enumerate(blocks):
            x = block(x, pool_size=(2, 2) if i < 5 else (1, 1), pool_type="avg")
            pooled.append(x.mean(dim=(2, 3)))
        x = x.mean(dim=3)
        pooled.append(F.relu(m.fc1(x.amax(dim=2) + x.mean(dim=2))))
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
