"""The embeddings artifact: text vectors aligned with a dataset's user and item indices.

Files in an ``embeddings/<name>/<version>/`` directory:

``users.npy`` float32 [n_users, d], row u is user index u; ``items.npy`` float32 [n_items, d]
``users_missing.npy`` / ``items_missing.npy`` (optional) bool masks of rows that had no text
(their vectors are zero); plugins may skip them in alignment losses.

The manifest names the dataset (and motivations) it was built from as parents, and its
settings record backend, model, dimension, normalisation and which text fields were embedded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import ArtifactRef, atomic_output

USERS_FILE = "users.npy"
ITEMS_FILE = "items.npy"
# Rows without text get zero vectors. Above WARN_MISSING of them ``embed`` and ``train`` say
# so; above REFUSE_MISSING the vectors would be mostly zeros dressed up as a text view, so
# ``embed`` stops unless --allow-missing-text.
WARN_MISSING = 0.05
REFUSE_MISSING = 0.5


@dataclass(frozen=True)
class TextVectors:
    users: np.ndarray  # float32 [n_users, d]
    items: np.ndarray  # float32 [n_items, d]
    users_missing: np.ndarray  # bool [n_users]
    items_missing: np.ndarray  # bool [n_items]

    @property
    def dim(self) -> int:
        return int(self.users.shape[1])


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)


def write_vectors(directory: Path, vectors: TextVectors) -> None:
    save_array(directory / USERS_FILE, vectors.users.astype(np.float32))
    save_array(directory / ITEMS_FILE, vectors.items.astype(np.float32))
    save_array(directory / "users_missing.npy", vectors.users_missing.astype(bool))
    save_array(directory / "items_missing.npy", vectors.items_missing.astype(bool))


def read_vectors(ref: ArtifactRef, n_users: int | None = None, n_items: int | None = None) -> TextVectors:
    """Load and check the vectors (optionally against a dataset's sizes)."""
    users = np.load(ref.path / USERS_FILE, allow_pickle=False)
    items = np.load(ref.path / ITEMS_FILE, allow_pickle=False)

    def mask(name: str, rows: int) -> np.ndarray:
        path = ref.path / name
        return np.load(path, allow_pickle=False) if path.is_file() else np.zeros(rows, dtype=bool)

    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise UsageError(f"{ref.label}: users.npy {users.shape} and items.npy {items.shape} do not match")
    if n_users is not None and users.shape[0] != n_users or n_items is not None and items.shape[0] != n_items:
        raise UsageError(
            f"{ref.label} has vectors for {users.shape[0]} users / {items.shape[0]} items, "
            f"the dataset has {n_users} / {n_items}",
            hint="embed the motivations of this dataset version",
        )
    return TextVectors(
        users.astype(np.float32, copy=False),
        items.astype(np.float32, copy=False),
        mask("users_missing.npy", users.shape[0]),
        mask("items_missing.npy", items.shape[0]),
    )
