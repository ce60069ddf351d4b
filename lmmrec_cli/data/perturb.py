"""``lmmrec perturb``: a noisy copy of a dataset for the robustness experiment (LMMRec Fig. 2).

Following RLMRec §4.4.1 and docs/method.md §1.9: for a ratio ρ, ``round(ρ · |train|)`` user–item
pairs that do not exist (in train, validation or test) are drawn uniformly, without duplicates,
and added to the training split only. Validation and test stay identical, users and items keep
their indices, so the clean data set's motivations and text vectors still apply (the paper keeps
motivations generated from the clean data). One seed per ratio is shared by every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lmmrec_cli.data.dataset import (
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    REVIEWS_FILE,
    USERS_FILE,
    PreparedDataset,
    write_table,
)
from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import ArtifactRef, Workspace

NOISE_FILE = "noise_pairs.parquet"
MAX_RATIO = 10.0  # ten noise pairs per real one is far past the paper's 0.05..0.30


@dataclass
class PerturbResult:
    ref: ArtifactRef
    reused: bool
    added: int
    ratio: float


def draw_noise_pairs(
    n_users: int, n_items: int, existing_users: np.ndarray, existing_items: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct uniform (user, item) pairs, none among the existing ones."""
    existing = np.unique(existing_users.astype(np.int64) * n_items + existing_items.astype(np.int64))
    free = n_users * n_items - len(existing)
    if count > free:
        raise UsageError(f"cannot add {count} new pairs: only {free} user-item pairs do not exist yet")
    rng = np.random.default_rng(seed)
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < count:
        draw = max(2 * (count - len(chosen)), 1024)
        keys = rng.integers(0, n_users * n_items, size=draw, dtype=np.int64)
        position = np.searchsorted(existing, keys)
        position[position == len(existing)] = 0
        keys = keys[existing[position] != keys] if len(existing) else keys
        keys = np.concatenate([chosen, keys])
        _, first = np.unique(keys, return_index=True)  # drop repeats, keep draw order
        chosen = keys[np.sort(first)][:count]
    return chosen // n_items, chosen % n_items


def parse_ratios(text: str, step: float = 0.05) -> list[float]:
    """``0.1`` → [0.1]; ``0.05,0.2`` → [0.05, 0.2]; ``0.05..0.30`` → 0.05, 0.10, ..., 0.30."""
    try:
        if ".." in text:
            low, high = (float(x) for x in text.split(".."))
            count = int(round((high - low) / step)) + 1
            values = [round(low + k * step, 10) for k in range(count)]
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values:
        raise UsageError(f"--ratio {text!r}: give ratios like 0.1, 0.05,0.2 or 0.05..0.30")
    wrong = [v for v in values if not 0 < v <= MAX_RATIO]
    if wrong:
        raise UsageError(
            f"--ratio {text!r}: each ratio must be above 0 and at most {MAX_RATIO:g} "
            f"(noise pairs per training pair; 0.1 adds 10%), not {wrong[0]:g}"
        )
    return values


def perturb(workspace: Workspace, dataset_ref: str, ratio: float, seed: int, name: str | None = None) -> PerturbResult:
    clean = PreparedDataset.open(workspace, dataset_ref)
    inter = clean.interactions
    n_train = inter.count("train")
    count = int(round(ratio * n_train))
    out_name = name or f"{clean.ref.name}-noise{ratio * 100:g}"
    build = workspace.build(
        "datasets",
        out_name,
        key={"perturb": {"ratio": ratio, "seed": seed}},
        parents=[clean.ref],
    )
    with build:
        if build.reused:
            return PerturbResult(build.ref, True, build.ref.manifest()["counts"]["added"], ratio)
        users, items = draw_noise_pairs(clean.n_users, clean.n_items, inter.user, inter.item, count, seed)
        original = pq.read_table(str(clean.path / INTERACTIONS_FILE))
        added = pa.table(
            {
                "user": users.astype(np.int32),
                "item": items.astype(np.int32),
                "split": pa.array(["train"] * count, type=pa.string()),
                "rating": pa.nulls(count, type=pa.float32()),
                "timestamp": pa.nulls(count, type=pa.int64()),
            },
            schema=INTERACTIONS_SCHEMA,
        )
        combined = pa.concat_tables([original, added])
        order = np.lexsort((combined.column("item").to_numpy(), combined.column("user").to_numpy()))
        write_table(combined.take(pa.array(order)), build.dir / INTERACTIONS_FILE)
        write_table(added.select(["user", "item"]), build.dir / NOISE_FILE)
        for filename in (USERS_FILE, ITEMS_FILE, REVIEWS_FILE):
            if (clean.path / filename).is_file():
                write_table(pq.read_table(str(clean.path / filename)), build.dir / filename)
        build.counts.update(
            {
                "added": count,
                "users": clean.n_users,
                "items": clean.n_items,
                "interactions": {
                    "train": n_train + count,
                    "valid": inter.count("valid"),
                    "test": inter.count("test"),
                },
            }
        )
        build.extra["noise"] = {"ratio": ratio, "seed": seed, "clean_train": n_train}
    return PerturbResult(build.ref, False, count, ratio)
