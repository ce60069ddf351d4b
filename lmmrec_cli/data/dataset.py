"""The prepared-dataset artifact: its files, their schemas, and how to read them.

A dataset version directory holds four Parquet tables (plus ``manifest.json``):

``interactions.parquet``  one row per kept (user, item) pair
    user int32, item int32 (contiguous indices), split string ("train" | "valid" | "test"),
    rating float32 (null when the source has none), timestamp int64 (seconds; null if unknown)
``users.parquet``         user int32, user_id string (the id in the raw data)
``items.parquet``         item int32, item_id string, title string, text string
                          (description / categories / attributes, joined; "" when unknown)
``reviews.parquet``       user int32, item int32, split string, rating float32, summary string,
                          text string: the review of each kept pair that has text. Later steps
                          build prompts from ``split == "train"`` rows only, so no validation or
                          test review can leak into a model's input.

Rows are sorted by (user, item); indices are assigned in order of first appearance in the raw
file, so the same input and settings always give byte-identical tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import compress
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import ArtifactRef, Workspace

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    import scipy.sparse as sp

# pandas and scipy are imported where they are used: every lmmrec command imports this module,
# and on a busy machine those two cost about a second of start-up that `lmmrec motivate`
# (which reads plain columns, see ``PreparedDataset.columns``) never needs.

INTERACTIONS_FILE = "interactions.parquet"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
REVIEWS_FILE = "reviews.parquet"

SPLITS = ("train", "valid", "test")
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}

INTERACTIONS_SCHEMA = pa.schema(
    [
        ("user", pa.int32()),
        ("item", pa.int32()),
        ("split", pa.string()),
        ("rating", pa.float32()),
        ("timestamp", pa.int64()),
    ]
)
USERS_SCHEMA = pa.schema([("user", pa.int32()), ("user_id", pa.string())])
ITEMS_SCHEMA = pa.schema(
    [("item", pa.int32()), ("item_id", pa.string()), ("title", pa.string()), ("text", pa.string())]
)
REVIEWS_SCHEMA = pa.schema(
    [
        ("user", pa.int32()),
        ("item", pa.int32()),
        ("split", pa.string()),
        ("rating", pa.float32()),
        ("summary", pa.string()),
        ("text", pa.string()),
    ]
)

# Fixed writer options so equal tables give equal bytes.
PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}


def write_table(table: pa.Table, path: str | Path) -> None:
    pq.write_table(table, str(path), **PARQUET_OPTIONS)


def read_file(path: str | Path, columns: Sequence[str]) -> pa.Table:
    """Columns of one parquet file. ``pq.read_table`` would go through ``pyarrow.dataset``,
    which imports pandas (about half a second) even when no DataFrame is wanted."""
    with pq.ParquetFile(str(path)) as handle:
        return handle.read(columns=list(columns))


@dataclass(frozen=True)
class Interactions:
    """All kept interactions as arrays; the split of row ``k`` is ``SPLITS[split[k]]``."""

    n_users: int
    n_items: int
    user: np.ndarray  # int64 [n]
    item: np.ndarray  # int64 [n]
    split: np.ndarray  # int8 [n], codes of SPLITS

    def pairs(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self.split == SPLIT_CODES[split]
        return self.user[mask], self.item[mask]

    def matrix(self, split: str) -> sp.csr_matrix:
        """The ``split``'s interactions as a binary users × items CSR matrix (float32)."""
        import scipy.sparse as sp  # only training needs it; the CLI imports this module at start-up

        users, items = self.pairs(split)
        data = np.ones(len(users), dtype=np.float32)
        return sp.csr_matrix((data, (users, items)), shape=(self.n_users, self.n_items))

    def count(self, split: str) -> int:
        return int((self.split == SPLIT_CODES[split]).sum())


class PreparedDataset:
    """Read access to one dataset version."""

    def __init__(self, ref: ArtifactRef) -> None:
        self.ref = ref
        for filename in (INTERACTIONS_FILE, USERS_FILE, ITEMS_FILE):
            if not (ref.path / filename).is_file():
                raise UsageError(
                    f"{ref.label} is missing {filename}",
                    hint="re-run `lmmrec prepare`; the artifact is damaged",
                )

    @classmethod
    def open(cls, workspace: Workspace, reference: str) -> PreparedDataset:
        return cls(workspace.resolve("datasets", reference))

    @property
    def path(self) -> Path:
        return self.ref.path

    @cached_property
    def manifest(self) -> dict:
        return self.ref.manifest()

    @cached_property
    def n_users(self) -> int:
        return pq.read_metadata(str(self.path / USERS_FILE)).num_rows

    @cached_property
    def n_items(self) -> int:
        return pq.read_metadata(str(self.path / ITEMS_FILE)).num_rows

    @cached_property
    def interactions(self) -> Interactions:
        table = read_file(self.path / INTERACTIONS_FILE, ["user", "item", "split"])
        split_names = table.column("split").to_numpy(zero_copy_only=False)
        codes = np.full(len(split_names), -1, dtype=np.int8)
        for name, code in SPLIT_CODES.items():
            codes[split_names == name] = code
        return Interactions(
            n_users=self.n_users,
            n_items=self.n_items,
            user=table.column("user").to_numpy().astype(np.int64),
            item=table.column("item").to_numpy().astype(np.int64),
            split=codes,
        )

    def users(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.path / USERS_FILE)

    def items(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.path / ITEMS_FILE)

    def reviews(self, split: str | None = None) -> pd.DataFrame:
        """Review texts, optionally of one split only (use ``"train"`` for anything that feeds
        a model: validation and test reviews describe the answers)."""
        import pandas as pd

        path = self.path / REVIEWS_FILE
        if not path.is_file():
            return pd.DataFrame({f.name: pd.Series(dtype=object) for f in REVIEWS_SCHEMA})
        filters = [("split", "=", split)] if split else None
        return pd.read_parquet(path, filters=filters)

    def columns(
        self, table: str, names: Sequence[str], split: str | None = None
    ) -> dict[str, list]:
        """Columns of ``users``, ``items``, ``reviews`` or ``interactions`` (optionally of one
        split) as plain Python lists in file order, a missing value as None. Unlike the
        DataFrame methods and ``interactions`` this never imports pandas (pyarrow's
        ``to_numpy`` does; ``to_pylist`` does not): building prompts needs only lists."""
        files = {
            "users": USERS_FILE,
            "items": ITEMS_FILE,
            "reviews": REVIEWS_FILE,
            "interactions": INTERACTIONS_FILE,
        }
        path = self.path / files[table]
        if table == "reviews" and not path.is_file():
            return {name: [] for name in names}
        read = read_file(path, [*names, "split"] if split else names)
        lists = {name: read.column(name).to_pylist() for name in names}
        if split:
            keep = [value == split for value in read.column("split").to_pylist()]
            lists = {name: list(compress(values, keep)) for name, values in lists.items()}
        return lists
