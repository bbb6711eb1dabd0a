"""Suspect scores: which images are likely mislabelled, confidently wrong, unsure or outliers.

Each score is in [0, 1], higher = more suspicious, and is stored as a column of the run's table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .neighbors import NeighborTable

SCORE_COLUMNS = {
    "score_neighbor_disagreement": "share of its 10 nearest feature-space neighbours "
    "(similarity-weighted) whose label differs from its own",
    "score_confidently_wrong": "probability of the wrong predicted class (0 when correct)",
    "score_low_confidence": "1 - probability of the predicted class",
    "score_outlier": "1 - mean cosine similarity to its nearest neighbours, ranked in [0, 1]",
}


DISAGREEMENT_K = 10  # the usual k of kNN label-noise checks; the stored table holds more


def neighbor_disagreement(labels: np.ndarray, table: NeighborTable,
                          k: int = DISAGREEMENT_K) -> np.ndarray:
    """Similarity-weighted share of the k neighbours whose label differs (NaN if unlabelled)."""
    table = NeighborTable(table.index[:, :k], table.similarity[:, :k])
    labels = np.asarray(labels, dtype=object)
    known = np.array([v is not None and v == v for v in labels])  # NaN != NaN
    out = np.full(len(labels), np.nan, np.float32)
    if table.index.shape[1] == 0:
        return out
    nb_labels = labels[table.index]
    nb_known = known[table.index]
    w = np.clip(table.similarity, 0, None) * nb_known
    differ = (nb_labels != labels[:, None]) & nb_known
    total = w.sum(axis=1)
    score = np.where(total > 0, (w * differ).sum(axis=1) / np.maximum(total, 1e-12), np.nan)
    out[known] = score[known]
    return out


def confidently_wrong(confidence: np.ndarray, correct: pd.Series) -> np.ndarray:
    wrong = correct.fillna(False).to_numpy(dtype=bool) == False  # noqa: E712 - masked boolean
    known = correct.notna().to_numpy()
    out = np.where(wrong & known, confidence, 0.0).astype(np.float32)
    out[~known] = np.nan
    return out


def low_confidence(confidence: np.ndarray) -> np.ndarray:
    return (1.0 - np.asarray(confidence, np.float32)).astype(np.float32)


def outlier(table: NeighborTable) -> np.ndarray:
    """Rank of (1 - mean similarity to the neighbours): 1.0 = the most isolated image."""
    if table.index.shape[1] == 0:
        return np.zeros(len(table.index), np.float32)
    isolation = 1.0 - table.similarity.mean(axis=1)
    ranks = pd.Series(isolation).rank(method="average", pct=True).to_numpy()
    return ranks.astype(np.float32)


def add_scores(df: pd.DataFrame, table: NeighborTable) -> pd.DataFrame:
    """Add the four ``score_*`` columns to a run table (row i = id i)."""
    labels = df["label"].astype(object).where(df["label"].notna(), None).to_numpy()
    df["score_neighbor_disagreement"] = neighbor_disagreement(labels, table)
    df["score_confidently_wrong"] = confidently_wrong(df["confidence"].to_numpy(), df["correct"])
    df["score_low_confidence"] = low_confidence(df["confidence"].to_numpy())
    df["score_outlier"] = outlier(table)
    return df


def suspects(df: pd.DataFrame, by: str = "score_neighbor_disagreement") -> pd.DataFrame:
    """The run's images ranked by one score (highest first), with the columns a reviewer needs."""
    cols = ["id", "name", "label", "pred", "confidence", *SCORE_COLUMNS, "path"]
    present = [c for c in cols if c in df.columns]
    return df[present].sort_values(by, ascending=False, na_position="last").reset_index(drop=True)


def confusion(df: pd.DataFrame, class_names: list[str] | None = None) -> pd.DataFrame:
    """Counts of (true label, predicted label) over labelled images, as a square table."""
    labelled = df[df["label"].notna()]
    classes = list(class_names or [])
    rows = sorted(set(labelled["label"].astype(str)), key=lambda c: (c not in classes, c))
    cols = sorted(set(labelled["pred"].astype(str)) | set(rows),
                  key=lambda c: (c not in rows, c))
    mat = pd.crosstab(labelled["label"].astype(str), labelled["pred"].astype(str))
    return mat.reindex(index=rows, columns=cols, fill_value=0).rename_axis(
        index="true", columns="predicted")
