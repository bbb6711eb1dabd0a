"""Neighbour index and suspect scores: against brute-force references and planted errors."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

import featscope
from featscope.neighbors import NeighborTable, exact_knn
from featscope.scores import (
    confidently_wrong,
    confusion,
    low_confidence,
    neighbor_disagreement,
    outlier,
)
from helpers import make_class_dataset


def test_exact_knn_matches_brute_force_reference():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    x = rng.normal(size=(700, 40)).astype(np.float32)
    table = exact_knn(x, k=12, block=128)  # several blocks
    ref = NearestNeighbors(n_neighbors=13, metric="cosine", algorithm="brute").fit(x)
    d, i = ref.kneighbors(x)
    np.testing.assert_array_equal(table.index, i[:, 1:])  # the reference lists self first
    np.testing.assert_allclose(table.similarity, 1 - d[:, 1:], atol=1e-5)
    assert (np.diff(table.similarity, axis=1) <= 1e-7).all()
    assert not (table.index == np.arange(700)[:, None]).any()


def test_exact_knn_tiny_inputs():
    assert exact_knn(np.ones((1, 4)), k=5).index.shape == (1, 0)
    t = exact_knn(np.eye(3, dtype=np.float32), k=5)
    assert t.index.shape == (3, 2)


def test_neighbor_disagreement_flags_a_planted_mislabel():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 8)) + 10
    b = rng.normal(size=(20, 8)) - 10
    x = np.vstack([a, b]).astype(np.float32)
    labels = np.array(["a"] * 20 + ["b"] * 20, dtype=object)
    labels[3] = "b"  # sits among the a's
    labels[25] = None  # unlabelled: no score, and not counted as disagreeing
    score = neighbor_disagreement(labels, exact_knn(x, k=5))
    assert int(np.nanargmax(score)) == 3 and score[3] == 1.0
    assert np.isnan(score[25])
    others = np.delete(score, [3, 25])
    assert np.nanmax(others) <= 0.2  # at most the planted point among their 5 neighbours


def test_confidence_scores():
    conf = np.array([0.9, 0.6, 0.99, 0.5], np.float32)
    correct = pd.Series([True, False, False, None], dtype="boolean")
    cw = confidently_wrong(conf, correct)
    np.testing.assert_allclose(cw[:3], [0.0, 0.6, 0.99])
    assert np.isnan(cw[3])
    np.testing.assert_allclose(low_confidence(conf), 1 - conf)


def test_outlier_ranks_the_isolated_point_highest():
    rng = np.random.default_rng(2)
    x = np.vstack([rng.normal(size=(30, 5)) + 5, [[-50, 40, -30, 20, 10]]]).astype(np.float32)
    ranks = outlier(exact_knn(x, k=5))
    assert int(ranks.argmax()) == 30 and ranks[30] == 1.0


def test_confusion_matrix_counts():
    df = pd.DataFrame({"label": ["cat", "cat", "dog", "dog", None],
                       "pred": ["cat", "dog", "dog", "dog", "cat"]})
    m = confusion(df, ["cat", "dog"])
    assert m.loc["cat", "cat"] == 1 and m.loc["cat", "dog"] == 1 and m.loc["dog", "dog"] == 2
    assert m.loc["dog", "cat"] == 0
    assert int(m.to_numpy().sum()) == 4  # the unlabelled image is left out


def test_run_tables_from_python(lite_run):
    run = featscope.load(lite_run.path)
    for col in ("score_neighbor_disagreement", "score_confidently_wrong",
                "score_low_confidence", "score_outlier"):
        assert col in run.table.columns
    nb = run.neighbors(0, k=5)
    assert len(nb) == 5 and 0 not in set(nb["id"])
    assert (nb["similarity"].diff().dropna() <= 1e-6).all()
    # The stored table agrees with a brute-force scan of the memory-mapped features.
    x = np.asarray(run.features)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x[0]
    sims[0] = -np.inf
    assert list(nb["id"]) == list(np.argsort(-sims)[:5])
    assert run.confusion().to_numpy().sum() == len(run)
    sus = run.suspects("score_low_confidence")
    assert sus["score_low_confidence"].is_monotonic_decreasing


def test_planted_label_error_tops_the_suspects(tmp_path):
    data = make_class_dataset(tmp_path / "d", n=8)
    # One coffee photo filed under "cat": the kind of error a reviewer must find first.
    shutil.move(data / "coffee" / "coffee_003.jpg", data / "cat" / "mislabelled.jpg")
    run = featscope.build(data, tmp_path / "run", model="efficientnet-lite0", progress=False)
    top = run.suspects("score_neighbor_disagreement").iloc[0]
    assert top["name"] == "mislabelled.jpg"
    assert top["score_neighbor_disagreement"] > 0.5


def test_neighbor_table_lookup():
    t = NeighborTable(np.array([[1, 2], [0, 2], [1, 0]], np.int32),
                      np.array([[0.9, 0.5], [0.9, 0.4], [0.5, 0.5]], np.float32))
    assert t.of(0) == [(1, np.float32(0.9).item()), (2, 0.5)]
    assert t.of(1, k=1) == [(0, np.float32(0.9).item())]


def test_new_points_are_placed_by_their_nearest_old_points():
    from sklearn.neighbors import NearestNeighbors

    from featscope.neighbors import cosine_topk, normalise
    from featscope.projection import place_new_points

    rng = np.random.default_rng(1)
    old = rng.normal(size=(500, 24)).astype(np.float32)
    new = rng.normal(size=(37, 24)).astype(np.float32)
    near = cosine_topk(normalise(new), normalise(old), 9, block=8)  # several blocks
    d, i = NearestNeighbors(n_neighbors=9, metric="cosine", algorithm="brute").fit(old) \
        .kneighbors(new)
    np.testing.assert_array_equal(near.index, i)
    np.testing.assert_allclose(near.similarity, 1 - d, atol=1e-5)
    # A new point that duplicates an old one lands where that one is (its weight dominates).
    coords = rng.normal(size=(500, 2)).astype(np.float32)
    placed = place_new_points(old, coords, old[[7, 42]] * 3.0, k=15)
    assert np.linalg.norm(placed - coords[[7, 42]], axis=1).max() < 0.5 * coords.std()
    # A weighted mean of its nearest neighbours' positions: inside their bounding box.
    p = place_new_points(old, coords, new, k=9)
    assert p.shape == (37, 2)
    assert (p >= coords[i].min(axis=1) - 1e-5).all() and (p <= coords[i].max(axis=1) + 1e-5).all()
