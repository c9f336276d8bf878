"""Probe every layer of a feature store under the dataset's protocol.

For each layer (or, for the weighted probe, all layers at once) and evaluation round: the scaler
is fitted on the training clips only; the grid (learning rate x weight decay) is trained with
seed 0 and the grid point with the best validation score is chosen; further seeds repeat that
grid point, one stack per seed. Each run keeps its epoch with the best validation score, and
only that checkpoint predicts the test clips. Each round then chooses its own layer: the one with
the best validation score of that round (mean over seeds), never a test score and never
another round's validation data (under the HEAR rotation, one round's validation fold is
another round's test fold). The score is the selection metric, the dataset's headline metric
by default (``tables.headline_metric``), so that what is selected is what is reported.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

from audioprobe.features.extract import resolve_device
from audioprobe.features.store import Store
from audioprobe.probes.metrics import scores
from audioprobe.probes.splits import Round, rounds
from audioprobe.probes.subsets import fraction_rounds
from audioprobe.probes.train import Architecture, Fit, Member, fit_predict, member_state
from audioprobe.settings import ProtocolSettings, probe_spec
from audioprobe.probes import ALL_LAYERS

log = logging.getLogger(__name__)


def architecture(spec: dict) -> Architecture:
    """The probe architecture a config entry describes (the schema's defaults filled in)."""
    spec = probe_spec(spec)
    if spec["kind"] == "linear":
        return Architecture()
    return Architecture(hidden=list(spec["hidden"]) if spec["kind"] == "mlp" else [],
                        dropout=float(spec["dropout"]), batch_norm=bool(spec["batch_norm"]),
                        weighted=spec["kind"] == "weighted")


def layer_chunks(n_layers: int, n_clips: int, dim: int, budget: float = 2e9) -> list[list[int]]:
    """Groups of layers whose features (float32) fit in ``budget`` bytes: the layers of one
    group are trained together as one stacked model."""
    per_layer = max(1, int(budget // (n_clips * dim * 4)))
    return [list(range(k, min(k + per_layer, n_layers))) for k in range(0, n_layers, per_layer)]


def _standardize(features: np.ndarray, train: np.ndarray, *parts: np.ndarray):
    """Fit a scaler per layer on the training rows only; return it and the scaled parts."""
    scalers = [StandardScaler().fit(layer[train]) for layer in features]
    scaled = [np.stack([s.transform(layer[p]) for s, layer in zip(scalers, features)])
              for p in parts]
    return scalers, scaled


@dataclass
class Probed:
    """What probing one store gives: the runs (one row per layer x round x seed, ``chosen``
    marking each round's chosen layer), the test predictions of each round at its chosen
    layer, the trained probes (one per round, seed 0, at that round's chosen layer), the
    training curves of those probes (``curves``) and, for the weighted probe, the learned
    layer weights of every round and seed (``layer_weights``)."""

    runs: pd.DataFrame
    predictions: pd.DataFrame
    probes: dict
    curves: pd.DataFrame
    layer_weights: pd.DataFrame


def probe_all(store: Store, probe: str, spec: dict, protocol: ProtocolSettings,
              device: str = "cpu", metric: str = "accuracy",
              evaluation: list[Round] | None = None) -> Probed:
    """Probe every layer of ``store`` in every evaluation round (``evaluation``, default the
    store's ``splits.rounds``). Epochs, grid points and layers are selected on the validation
    ``metric`` (a score of ``probes.metrics.scores``)."""
    classes = list(store.attrs["classes"])
    y = store.meta["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    arch = architecture(spec)
    train = functools.partial(
        fit_predict, n_classes=len(classes), arch=arch, max_epochs=protocol.max_epochs,
        patience=protocol.patience, batch_size=protocol.batch_size, device=resolve_device(device),
        metric=metric, classes=classes)
    grid = list(itertools.product(protocol.learning_rates, protocol.weight_decays))
    runs, test_proba, trained, curves, mixes = [], {}, {}, {}, []
    evaluation = rounds(store.meta) if evaluation is None else evaluation
    for chunk in layer_groups(store, arch, len(y)):
        features = np.stack([store.layer(k) for k in chunk])
        names = [ALL_LAYERS] if arch.weighted else chunk  # the layer value of each group
        for rnd in evaluation:
            rows, proba, probes, results = probe_round(train, features, names, y, rnd, grid,
                                                       protocol.seeds, arch.weighted, classes)
            runs += rows
            test_proba |= proba
            trained |= probes
            curves |= {key: value.pop("curves") for key, value in probes.items()}
            mixes += layer_weights(results, rnd.name) if arch.weighted else []
        log.info("layers %s: mean test accuracy %.3f", names,
                 np.mean([r["accuracy"] for r in runs if r["layer"] in names]))
    runs = pd.DataFrame(runs).sort_values(["layer", "fold", "seed"], ignore_index=True)
    runs.insert(runs.columns.get_loc("val_score"), "selection_metric", metric)
    chosen = choose_layers(runs)
    runs["chosen"] = runs["layer"].to_numpy() == runs["fold"].map(chosen).to_numpy()
    runs = runs.drop(columns="val_loss")
    runs.insert(0, "probe", probe)
    probes = {
        "kind": spec["kind"], "architecture": asdict(arch), "classes": classes,
        "pooling": store.attrs.get("pooling"),
        "rounds": [{"round": fold, "layer": layer} | trained[layer, fold]
                   for fold, layer in chosen.items()],
    }
    return Probed(runs, predictions(store, classes, y, test_proba, chosen), probes,
                  training_curves(probe, curves, chosen, protocol.max_epochs),
                  pd.DataFrame(mixes, columns=LAYER_WEIGHT_COLUMNS).assign(probe=probe)
                  [["probe", *LAYER_WEIGHT_COLUMNS]])


LAYER_WEIGHT_COLUMNS = ["fold", "seed", "layer", "weight"]
CURVE_COLUMNS = ["probe", "fold", "layer", "seed", "lr", "weight_decay", "epoch",
                 "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "chosen_epoch",
                 "stopped_at_max_epochs", "best_at_first_epoch"]


def layer_weights(results: list[tuple[Fit, int, int, int]], fold: int) -> list[dict]:
    """The weighted probe's softmax layer weights of every seed of a round (at its chosen
    grid point and checkpoint): one row per seed and layer."""
    rows = []
    for fit, e, _, seed in results:
        weights = torch.softmax(fit.state["mix"][e].double(), -1).numpy()
        rows += [{"fold": fold, "seed": seed, "layer": k, "weight": float(w)}
                 for k, w in enumerate(weights)]
    return rows


def training_curves(probe: str, curves: dict, chosen: dict[int, int],
                    max_epochs: int) -> pd.DataFrame:
    """The per-epoch curves of each round's chosen probe (seed 0 at the chosen grid point and
    layer), with its checkpoint epoch and whether it ran to ``max_epochs`` or was best after
    its first epoch."""
    frames = []
    for fold, layer in chosen.items():
        frame = curves[layer, fold]
        frames.append(frame.assign(
            fold=fold, layer=layer,
            stopped_at_max_epochs=bool(frame["epoch"].max() >= max_epochs),
            best_at_first_epoch=bool(frame["chosen_epoch"].iloc[0] == 1)))
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(frames, ignore_index=True).assign(probe=probe)[CURVE_COLUMNS]


def curve_of(fit: Fit, member: int) -> pd.DataFrame:
    """One member's epochs (until it stopped) with its checkpoint epoch."""
    frame = pd.DataFrame({name: values[:, member] for name, values in fit.history.items()})
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame.dropna().assign(chosen_epoch=int(fit.epochs[member]))


def probe_fractions(store: Store, probe: str, spec: dict, protocol: ProtocolSettings,
                    fractions: list[float], device: str = "cpu", metric: str = "accuracy"
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and test predictions (with a ``fraction`` column) of the probe trained on nested
    fractions below 1 of each round's training clips (``subsets.fraction_rounds``); validation
    and test clips stay whole and every choice is made per round on validation, as in
    :func:`probe_all`. Fraction 1 is the probe job itself and is not repeated here."""
    below = sorted(f for f in fractions if f < 1)
    runs, predictions = [], []
    for fraction, evaluation in fraction_rounds(store.meta, rounds(store.meta), below).items():
        probed = probe_all(store, probe, spec, protocol, device, metric, evaluation)
        runs.append(probed.runs.assign(fraction=fraction))
        predictions.append(probed.predictions.assign(fraction=fraction))
    if not runs:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(runs, ignore_index=True), pd.concat(predictions, ignore_index=True)


def layer_groups(store: Store, arch: Architecture, n_clips: int) -> list[list[int]]:
    """The layers trained together: all of them for the weighted probe, else ``layer_chunks``."""
    if arch.weighted:
        return [list(range(store.n_layers))]
    return layer_chunks(store.n_layers, n_clips, store.dim)


def probe_round(train: Callable[..., Fit], features: np.ndarray, names: list[int],
                y: np.ndarray, rnd: Round, grid: list[tuple[float, float]], n_seeds: int,
                weighted: bool, classes: list[str]
                ) -> tuple[list[dict], dict, dict, list[tuple[Fit, int, int, int]]]:
    """One evaluation round of one group of layers: the run rows, the test probabilities of
    every (layer, round, seed), the trained probe of each layer (seed 0, chosen point, with
    its training curves under "curves"), and every run's (fit, member, group, seed)."""
    scalers, (xt, xv, xs) = _standardize(features, rnd.train, rnd.train, rnd.valid, rnd.test)
    data = dict(x_train=xt, y_train=y[rnd.train], x_valid=xv, y_valid=y[rnd.valid], x_test=xs)
    search, chosen, results = _search_and_repeat(train, data, len(names), grid, n_seeds)
    mean = np.stack([s.mean_ for s in scalers])
    scale = np.stack([s.scale_ for s in scalers])
    trained = {}
    for g, layer in enumerate(names):
        keep = slice(None) if weighted else slice(g, g + 1)
        member = g * len(grid) + chosen[g]
        lr, wd = grid[chosen[g]]
        trained[layer, rnd.name] = {
            "state": member_state(search.state, member),
            "mean": torch.from_numpy(mean[keep]), "scale": torch.from_numpy(scale[keep]),
            "curves": curve_of(search, member).assign(seed=0, lr=lr, weight_decay=wd),
        }
    rows, test_proba = [], {}
    for fit, e, g, seed in results:
        lr, wd = grid[chosen[g]]
        test_proba[names[g], rnd.name, seed] = (rnd.test, fit.test_proba[e])
        rows.append({
            "layer": names[g], "fold": rnd.name, "seed": seed, "lr": lr,
            "weight_decay": wd, "epochs": int(fit.epochs[e]),
            "val_score": float(fit.val_score[e]), "val_accuracy": float(fit.val_accuracy[e]),
            "val_loss": float(fit.val_loss[e]), "n_train": len(rnd.train),
            "n_valid": len(rnd.valid), "n_test": len(rnd.test),
            **scores(y[rnd.test], fit.test_proba[e], classes),
        })
    return rows, test_proba, trained, results


def _search_and_repeat(train: Callable[..., Fit], data: dict, n_groups: int,
                       grid: list[tuple[float, float]], n_seeds: int
                       ) -> tuple[Fit, list[int], list[tuple[Fit, int, int, int]]]:
    """The grid is searched with seed 0; each further seed repeats every group's chosen point in
    a stack of its own, so a seed sets both initialisation and batch order. Returns the search,
    each group's chosen grid index, and (fit, member, group, seed) of every run."""
    search = train(members=[[Member(lr, wd, 0) for lr, wd in grid] for _ in range(n_groups)],
                   **data)
    chosen = [_choose(search, g * len(grid), len(grid)) for g in range(n_groups)]
    results = [(search, g * len(grid) + c, g, 0) for g, c in enumerate(chosen)]
    for seed in range(1, n_seeds):
        repeats = train(members=[[Member(*grid[c], seed)] for c in chosen], **data)
        results += [(repeats, g, g, seed) for g in range(n_groups)]
    return search, chosen, results


def choose_layers(runs: pd.DataFrame) -> dict[int, int]:
    """Each round's layer: the best mean validation score over that round's seeds; ties go to
    the lower mean validation loss (rounded, so float noise never decides), then the earlier
    layer. Only the round's own validation scores enter."""
    per_layer = runs.groupby(["fold", "layer"])[["val_score", "val_loss"]].mean().reset_index()
    per_layer["val_loss"] = per_layer["val_loss"].round(4)
    best = per_layer.sort_values(["fold", "val_score", "val_loss", "layer"],
                                 ascending=[True, False, True, True]).groupby("fold").head(1)
    return {int(f): int(lay) for f, lay in zip(best["fold"], best["layer"])}


def _choose(fit: Fit, first: int, count: int) -> int:
    """Index (within its group) of the grid point with the best validation score; ties go to
    the lower validation loss (rounded, so float noise never decides), then the earlier point."""
    return min(range(count), key=lambda i: (-fit.val_score[first + i],
                                            round(float(fit.val_loss[first + i]), 4), i))


def predictions(store: Store, classes: list[str], y: np.ndarray, test_proba: dict,
                chosen: dict[int, int]) -> pd.DataFrame:
    """Per-clip test predictions with class probabilities, each round at its chosen layer."""
    frames = []
    for (lay, fold, seed), (idx, proba) in sorted(test_proba.items(), key=lambda kv: kv[0][1:]):
        if lay != chosen[fold]:
            continue
        frame = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
        frame.insert(0, "clip_id", store.meta["clip_id"].to_numpy()[idx])
        frame.insert(1, "layer", lay)
        frame.insert(2, "fold", fold)
        frame.insert(3, "seed", seed)
        frame.insert(4, "label", np.asarray(classes)[y[idx]])
        frame.insert(5, "prediction", np.asarray(classes)[proba.argmax(1)])
        frame.insert(6, "loss", -np.log(np.clip(proba[np.arange(len(idx)), y[idx]], 1e-12, 1)))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
