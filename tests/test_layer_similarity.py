"""Debiased linear CKA: its invariances, the block computation against the whole Gram
matrices, and the table from stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioprobe.features.store import open_store
from audioprobe.layer_similarity import debiased_cka, layer_similarity
from tests.test_probes import write_store


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019) debiased linear CKA on whole Gram matrices (Song et al.'s
    unbiased HSIC), written out directly."""
    def hsic(k, l):
        n = len(k)
        k, l = k.copy(), l.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(l, 0)
        one = np.ones(n)
        return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))
    k, l = x @ x.T, y @ y.T
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.fixture()
def layers():
    rng = np.random.default_rng(0)
    n = 53
    base = rng.normal(size=(n, 12)) + 3  # off-centre, as pooled features are
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    related = np.tanh(base @ rng.normal(size=(12, 9))) + 0.3 * rng.normal(size=(n, 9))
    unrelated = rng.normal(size=(n, 20))
    return [base, 2.5 * base @ q + 1.0, related, unrelated]


def cka_of(layers: list[np.ndarray], block: int, dtype=torch.float64) -> np.ndarray:
    return debiased_cka(lambda rows: [x[rows] for x in layers], len(layers[0]), block, dtype)


def test_cka_of_a_layer_with_itself_and_its_rotation_is_one(layers):
    cka = cka_of(layers, block=len(layers[0]))
    assert np.allclose(np.diagonal(cka), 1.0)
    assert cka[0, 1] == pytest.approx(1.0, abs=1e-9)  # orthogonal rotation, scaled, shifted
    assert abs(cka[0, 3]) < 0.05 and cka[0, 2] > 0.2  # unrelated ~0, related between
    assert np.allclose(cka, cka.T)


@pytest.mark.parametrize("block", [1, 5, 16, 53, 64])
def test_blocks_equal_the_whole_gram_computation(layers, block):
    cka = cka_of(layers, block)
    for a in range(len(layers)):
        for b in range(len(layers)):
            assert cka[a, b] == pytest.approx(reference_cka(layers[a], layers[b]), abs=1e-9)


def test_float32_blocks_stay_close_to_float64(layers):
    assert np.allclose(cka_of(layers, 16, torch.float32), cka_of(layers, 53), atol=1e-5)


def test_layer_similarity_pairs_every_layer_of_every_model_on_common_clips(tmp_path, layers):
    n = len(layers[0])
    labels = np.array(["a", "b"] * n)[:n]
    folds = np.ones(n, dtype=int)
    one = open_store(write_store(tmp_path / "one.h5", np.stack([layers[0], layers[0] * 2]),
                                 labels, folds))
    rotated = np.stack([layers[1], np.pad(layers[3], ((0, 0), (0, 0)))[:, :12]])
    two = open_store(write_store(tmp_path / "two.h5", rotated, labels, folds))
    table = layer_similarity({"one": one, "two": two}, budget=4 * 16 * (2 * 24 + 4 * 16))
    assert len(table) == 4 * 5 // 2 and (table["n_clips"] == n).all()
    pairs = table.set_index(["model_a", "layer_a", "model_b", "layer_b"])["cka"]
    assert pairs["one", 0, "two", 0] == pytest.approx(1.0, abs=1e-5)
    assert pairs["one", 0, "one", 1] == pytest.approx(1.0, abs=1e-5)
    assert pairs["one", 0, "two", 1] == pytest.approx(reference_cka(layers[0],
                                                                    layers[3][:, :12]), abs=1e-5)


def test_block_size_fits_the_budget_at_scale():
    from audioprobe.layer_similarity import block_size
    dims = [1024] * 50 + [128]  # two 25-layer models of 1024 dims and the log-mel baseline
    size = block_size(dims, len(dims))
    assert 4 * size * (2 * sum(dims) + len(dims) * size) <= 1e9 and size >= 512
