"""Reading and checking a directory in RLMRec's released format (all in memory, nothing written).

Files (RLMRec ``data/<dataset>/``):

``trn_mat.pkl`` / ``val_mat.pkl`` / ``tst_mat.pkl``
    scipy sparse users × items matrices, one per split
``usr_prf.pkl`` / ``itm_prf.pkl`` (optional)
    ``{index: {"profile": str, "reasoning": str}}``
``usr_emb_np.pkl`` / ``itm_emb_np.pkl`` (optional)
    numpy arrays ``[n_users, d]`` / ``[n_items, d]``

Every pickle goes through :mod:`lmmrec_cli.data.safe_pickle`.

Checks, and what each decides:

- the three matrices have one shape (else error: the indices would mean different things);
- a (user, item) pair in two splits is an error: a dataset holds one row per pair with one split,
  and such a pair would leak a test answer into training. RLMRec's releases have none;
- like RLMRec's loader (``mat != 0``), any non-zero value is an interaction and explicit zeros are
  not; duplicate coordinates inside one matrix collapse into one pair. Both are counted, as are
  values other than 1.0, so nothing changes without a trace;
- users / items without a training interaction are kept (the split is kept exactly) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmmrec_cli.data.dataset import SPLITS
from lmmrec_cli.data.rlmrec_mapper import IdMapper, read_mapper
from lmmrec_cli.data.safe_pickle import safe_load
from lmmrec_cli.errors import InputError, UsageError

SPLIT_FILES = {"train": "trn_mat.pkl", "valid": "val_mat.pkl", "test": "tst_mat.pkl"}
PROFILE_FILES = {"user": "usr_prf.pkl", "item": "itm_prf.pkl"}
EMBEDDING_FILES = {"user": "usr_emb_np.pkl", "item": "itm_emb_np.pkl"}


def is_rlmrec_directory(path: Path) -> bool:
    return path.is_dir() and (path / SPLIT_FILES["train"]).is_file()


def split_shape(directory: Path) -> tuple[int, int]:
    """(users, items) of the training matrix; what picks a mapper pair out of a directory."""
    path = Path(directory).expanduser() / SPLIT_FILES["train"]
    if not path.is_file():
        raise InputError(
            path, "file not found", hint="an RLMRec split needs trn_mat.pkl, val_mat.pkl and tst_mat.pkl"
        )
    return load_split(path).shape


@dataclass(frozen=True)
class RlmrecFiles:
    """The files of one import; optional ones are None when absent."""

    directory: Path
    splits: dict[str, Path]
    profiles: dict[str, Path]  # only the sides present
    embeddings: dict[str, Path]  # both sides or none
    mappers: dict[str, Path]  # only the sides given


def find_files(directory: Path, mappers: dict[str, Path]) -> RlmrecFiles:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UsageError(
            f"{directory}: --format rlmrec reads a directory",
            hint="give the directory that holds trn_mat.pkl, val_mat.pkl and tst_mat.pkl",
        )
    splits = {name: directory / filename for name, filename in SPLIT_FILES.items()}
    for path in splits.values():
        if not path.is_file():
            raise InputError(
                path,
                "file not found",
                hint="an RLMRec split needs trn_mat.pkl, val_mat.pkl and tst_mat.pkl",
            )
    profiles = {
        side: directory / f for side, f in PROFILE_FILES.items() if (directory / f).is_file()
    }
    embeddings = {
        side: directory / f for side, f in EMBEDDING_FILES.items() if (directory / f).is_file()
    }
    if len(embeddings) == 1:
        (present,) = embeddings.values()
        absent = next(directory / f for s, f in EMBEDDING_FILES.items() if s not in embeddings)
        raise InputError(
            absent,
            f"file not found, but {present.name} is present",
            hint="text vectors need both sides",
        )
    return RlmrecFiles(directory, splits, profiles, embeddings, dict(mappers))


@dataclass
class SplitMatrix:
    """One split's distinct (user, item) pairs, sorted, plus what loading it changed."""

    users: np.ndarray  # int64
    items: np.ndarray  # int64
    shape: tuple[int, int]
    notes: dict[str, int] = field(default_factory=dict)


def load_split(path: Path) -> SplitMatrix:
    import scipy.sparse as sp  # here, not at the top: the CLI imports this module at start-up

    matrix = safe_load(path)
    if not sp.issparse(matrix):
        raise InputError(path, f"expected a scipy sparse matrix, found {type(matrix).__name__}")
    try:
        coo = sp.coo_matrix(matrix)
        rows = np.asarray(coo.row, dtype=np.int64)
        cols = np.asarray(coo.col, dtype=np.int64)
        values = np.asarray(coo.data, dtype=np.float64)
        shape = (int(coo.shape[0]), int(coo.shape[1]))
    except Exception as error:  # noqa: BLE001 - a hostile or damaged object can fail in any way
        raise InputError(
            path, f"not a well-formed sparse matrix ({type(error).__name__}: {error})"
        ) from None
    if not (len(rows) == len(cols) == len(values)):
        raise InputError(path, "row, column and value arrays differ in length")
    if len(rows) and (
        rows.min() < 0 or cols.min() < 0 or rows.max() >= shape[0] or cols.max() >= shape[1]
    ):
        raise InputError(path, f"an entry lies outside the matrix shape {shape}")
    if not np.isfinite(values).all():
        raise InputError(path, "the matrix holds NaN or infinite values")
    nonzero = values != 0
    keys = rows[nonzero] * shape[1] + cols[nonzero]
    distinct = np.unique(keys)  # sorted by (user, item)
    notes = {
        "entries": int(len(values)),
        "explicit_zeros": int((~nonzero).sum()),
        "duplicate_entries": int(len(keys) - len(distinct)),
        "values_not_one": int((nonzero & (values != 1.0)).sum()),
    }
    return SplitMatrix(distinct // shape[1], distinct % shape[1], shape, notes)


@dataclass
class RlmrecData:
    """Everything of one import, checked; profiles and vectors are None when absent."""

    n_users: int
    n_items: int
    splits: dict[str, SplitMatrix]
    user_ids: list[str]
    item_ids: list[str]
    mappers: dict[str, IdMapper]
    profiles: dict[str, dict[int, tuple[str, str]]]  # side → index → (profile, reasoning)
    vectors: dict[str, np.ndarray]  # side → [n, d]

    def checks(self) -> dict[str, Any]:
        """Counts for the manifest: split sizes and coverage."""
        train, valid, test = (self.splits[s] for s in SPLITS)
        all_users = np.concatenate([m.users for m in self.splits.values()])
        all_items = np.concatenate([m.items for m in self.splits.values()])
        return {
            "users_without_train": self.n_users - len(np.unique(train.users)),
            "items_without_train": self.n_items - len(np.unique(train.items)),
            "users_without_interactions": self.n_users - len(np.unique(all_users)),
            "items_without_interactions": self.n_items - len(np.unique(all_items)),
            "users_with_valid": int(len(np.unique(valid.users))),
            "users_with_test": int(len(np.unique(test.users))),
            "loading": {name: m.notes for name, m in self.splits.items()},
        }


def _check_overlaps(files: RlmrecFiles, splits: dict[str, SplitMatrix], n_items: int) -> None:
    keys = {name: m.users * n_items + m.items for name, m in splits.items()}
    for k, first in enumerate(SPLITS):
        for second in SPLITS[k + 1 :]:
            common = np.intersect1d(keys[first], keys[second], assume_unique=True)
            if len(common):
                user, item = divmod(int(common[0]), n_items)
                raise InputError(
                    files.splits[second],
                    f"{len(common):,} (user, item) pairs are also in {files.splits[first].name} "
                    f"(first: user {user}, item {item}); a pair can be in one split only",
                    hint="the split leaks; fix the files or re-split the data with another format",
                )


def _ids(mapper: IdMapper | None, n: int, side: str) -> list[str]:
    if mapper is None:
        return [str(k) for k in range(n)]
    if len(mapper.ids) != n:
        raise InputError(
            mapper.path,
            f"maps {len(mapper.ids):,} {side}s, the split has {n:,}",
            hint="use the mapper of the same data set (e.g. amazon_user.json for the amazon split)",
        )
    return mapper.ids


def load_profiles(path: Path, n: int) -> dict[int, tuple[str, str]]:
    """``{index: {"profile": ..., "reasoning": ...}}`` → index → (profile, reasoning)."""
    raw = safe_load(path)
    if not isinstance(raw, dict):
        raise InputError(path, f"expected a dict of index → profile, found {type(raw).__name__}")
    out: dict[int, tuple[str, str]] = {}
    for key, value in raw.items():
        # Keys may be numpy integers when the file was written from numpy indices.
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
            raise InputError(path, f"key {key!r} is not an integer index")
        index = int(key)
        if not 0 <= index < n:
            raise InputError(path, f"index {index} is outside 0..{n - 1}")
        if isinstance(value, str):
            profile, reasoning = value, ""
        elif isinstance(value, dict) and isinstance(value.get("profile"), str):
            reasoning = value.get("reasoning", "")
            if not isinstance(reasoning, str):
                raise InputError(path, f"index {index}: 'reasoning' is not a string")
            profile = value["profile"]
        else:
            raise InputError(path, f"index {index}: expected {{'profile': str, 'reasoning': str}}")
        out[index] = (profile, reasoning)
    return out


def load_vectors(path: Path, n: int) -> np.ndarray:
    array = safe_load(path)
    if not isinstance(array, np.ndarray):
        raise InputError(path, f"expected a numpy array, found {type(array).__name__}")
    if array.ndim != 2 or array.shape[0] != n or array.shape[1] < 1:
        raise InputError(path, f"expected shape [{n}, d], found {list(array.shape)}")
    if array.dtype.kind not in "fiu":
        raise InputError(path, f"expected real numbers, found dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise InputError(path, "the vectors hold NaN or infinite values")
    return array


def load(files: RlmrecFiles) -> RlmrecData:
    """Load every file and run every check; raises before anything is written."""
    splits = {name: load_split(path) for name, path in files.splits.items()}
    shapes = {name: m.shape for name, m in splits.items()}
    if len(set(shapes.values())) != 1:
        described = ", ".join(f"{files.splits[n].name} {list(s)}" for n, s in shapes.items())
        raise InputError(files.directory, f"the split matrices differ in shape: {described}")
    n_users, n_items = shapes["train"]
    _check_overlaps(files, splits, n_items)
    mappers = {side: read_mapper(path) for side, path in files.mappers.items()}
    for side, mapper in mappers.items():
        if mapper.side != side:  # resolve_mappers decides sides; a mismatch is a programming error
            raise AssertionError(f"{mapper.path} is a {mapper.side} mapper, not {side}")
    sizes = {"user": n_users, "item": n_items}
    profiles = {side: load_profiles(path, sizes[side]) for side, path in files.profiles.items()}
    vectors = {side: load_vectors(path, sizes[side]) for side, path in files.embeddings.items()}
    if vectors and vectors["user"].shape[1] != vectors["item"].shape[1]:
        raise InputError(
            files.embeddings["item"],
            f"dimension {vectors['item'].shape[1]} differs from {files.embeddings['user'].name}'s "
            f"{vectors['user'].shape[1]}",
        )
    return RlmrecData(
        n_users=n_users,
        n_items=n_items,
        splits=splits,
        user_ids=_ids(mappers.get("user"), n_users, "user"),
        item_ids=_ids(mappers.get("item"), n_items, "item"),
        mappers=mappers,
        profiles=profiles,
        vectors=vectors,
    )
