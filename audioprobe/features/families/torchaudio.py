"""Family ``torchaudio``: a ``torchaudio.pipelines`` wav2vec2 / HuBERT / WavLM bundle, pretrained
or with random weights; one layer per transformer block (``extract_features``), no
input-embedding layer, so torchaudio layer k is transformers layer k + 1."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F

from audioprobe.errors import AudioprobeError, UnsafeCheckpointError
from audioprobe.features.families.common import (
    BaseEncoder, RANDOM_SEED, config_hash, content_hash, conv_front_end, untrusted_checkpoint,
    valid,
)


def load(card: dict) -> TorchaudioEncoder:
    """The bundle's model, with the fetched weights or seeded random ones."""
    return TorchaudioEncoder(card["bundle"], card.get("path"), card.get("random_weights", False),
                             card.get("architecture"), card.get("seed", 0),
                             card.get("trust_checkpoint", False))


def layer_names(n_layers: int) -> list[str]:
    """One layer per transformer block (no input embedding)."""
    return [f"block {k}" for k in range(1, n_layers + 1)]


def batching(card: dict) -> str:
    """Padded batches through the model's own submodules, with masks."""
    return "padded"


def fetch(name: str, spec: dict, models_dir: Path) -> dict:
    """Pretrained weights downloaded once into ``models_dir / "torchaudio"``; random-weight
    models are checked here and built in the extraction job."""
    import torchaudio

    bundle_name = spec["bundle"]
    bundle = torchaudio_bundle(bundle_name)
    card = {"model_id": f"torchaudio.pipelines.{bundle_name}", "bundle": bundle_name,
            "torchaudio_version": torchaudio.__version__}
    overrides = spec.get("architecture") or {}
    if spec.get("random_weights"):
        torchaudio_params(bundle, overrides)  # fail here, not in every extraction job
        revision = config_hash({"bundle": bundle_name, "architecture": overrides})
        return card | {"revision": revision, "random_weights": True, "seed": RANDOM_SEED,
                       "architecture": overrides}
    if overrides:
        raise AudioprobeError(f"torchaudio bundle {bundle_name}: architecture overrides need "
                              "random_weights: true (the pretrained weights fix the shapes)")
    folder = models_dir / "torchaudio"
    weights = folder / Path(bundle._path).name
    try:  # downloads once (torch.hub), then loads the cached file, as extraction jobs will
        bundle_model(bundle, weights, spec.get("trust_checkpoint", False))
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        raise AudioprobeError(
            f"torchaudio bundle {bundle_name}: could not get its weights {bundle._path} into "
            f"{folder} ({exc.__class__.__name__}: {exc})") from None
    return card | {"revision": content_hash(weights), "path": str(weights.resolve())}


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


def bundle_model(bundle, weights: Path, trust: bool = False):
    """The bundle's pretrained model from ``weights`` (downloaded there by torch.hub if absent).
    torch.hub unpickles in full by default; here only tensors, unless ``trust`` (the model's
    ``trust_checkpoint: true``), as ``common.safe_torch_load``."""
    try:
        return bundle.get_model(dl_kwargs={"model_dir": str(weights.parent),
                                           "file_name": weights.name, "map_location": "cpu",
                                           "weights_only": not trust})
    except pickle.UnpicklingError:
        raise untrusted_checkpoint(weights) from None


def torchaudio_params(bundle, overrides: dict | None) -> dict:
    """The bundle's model factory arguments, with overrides (random-weight models only)."""
    params = dict(bundle._params)
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise AudioprobeError(f"unknown torchaudio model arguments {sorted(unknown)}; "
                              f"known: {sorted(params)}")
    return params | dict(overrides or {})


class TorchaudioEncoder(BaseEncoder):
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
                 architecture: dict | None = None, seed: int = 0,
                 trust_checkpoint: bool = False) -> None:
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
            model = bundle_model(bundle_, Path(path), trust_checkpoint)
        self.model = getattr(model, "model", model).eval()  # unwrap the normalising wrapper
        self.normalize = self.normalizes_waveform = bool(bundle_._normalize_waveform)
        self.sample_rate = int(bundle_.sample_rate)
        self.wavlm = bundle_._model_type == "WavLM"
        self.prepares_on_device = True
        self.min_samples = 400
        self.n_layers = int(params["encoder_num_layers"])

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.normalize:
            waves = [F.layer_norm(w, w.shape) for w in waves]
        return {"waves": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)}

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
