"""Train / validation / test splits, vectorised and seeded.

Every random choice comes from a hash of (seed, user, item) rather than from a generator's
stream, so a split does not depend on the order rows are processed in (nor on how the data was
partitioned to bound memory): the same data and seed give the same split, pair for pair.
"""

from __future__ import annotations

import numpy as np

from lmmrec_cli.data.dataset import SPLIT_CODES
from lmmrec_cli.errors import UsageError

STRATEGIES = ("user", "global", "temporal")
TRAIN, VALID, TEST = SPLIT_CODES["train"], SPLIT_CODES["valid"], SPLIT_CODES["test"]


def pair_hash(seed: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """A well-mixed uint64 per (seed, user, item) pair (SplitMix64 finaliser)."""
    with np.errstate(over="ignore"):
        x = (
            users.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            ^ items.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
            ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x165667B19E3779F9)
        )
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def per_user_counts(n_rows: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """How many of each user's ``n`` interactions go to validation and test.

    Validation and test each get ``round(n * ratio)`` (half rounds up), and never so many that
    the user is left without a training interaction.
    """
    _, valid_ratio, test_ratio = ratios
    n_valid = np.floor(n_rows * valid_ratio + 0.5).astype(np.int64)
    n_test = np.floor(n_rows * test_ratio + 0.5).astype(np.int64)
    excess = np.maximum(0, n_valid + n_test - (n_rows - 1))
    from_test = np.minimum(excess, n_test)
    n_test -= from_test
    n_valid -= excess - from_test
    return n_valid, n_test


def assign_splits(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None,
    *,
    strategy: str = "user",
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> np.ndarray:
    """Split codes (``SPLIT_CODES``) for each row; every user keeps at least one training row.

    ``user``: each user's interactions in random order, cut 3:1:1 (per ``ratios``).
    ``temporal``: each user's oldest interactions train, the newest test.
    ``global``: each interaction independently, with probabilities ``ratios``.
    All rows of a user must be in the call (the caller partitions by user).
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown split strategy {strategy!r}", hint=f"use one of {', '.join(STRATEGIES)}")
    if abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0 or ratios[0] <= 0:
        raise UsageError(f"split ratios {ratios} must be non-negative, sum to 1, with a training share")
    n = len(users)
    codes = np.full(n, TRAIN, dtype=np.int8)
    if n == 0:
        return codes
    key = pair_hash(seed, users, items)

    if strategy == "global":
        uniform = (key >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        codes[uniform >= ratios[0]] = VALID
        codes[uniform >= ratios[0] + ratios[1]] = TEST
        # A user drawn without any training row gets the first of its rows (by key) back.
        order = np.lexsort((key, users))
        sorted_users = users[order]
        first = np.ones(n, dtype=bool)
        first[1:] = sorted_users[1:] != sorted_users[:-1]
        has_train = np.zeros(int(users.max()) + 1, dtype=bool)
        has_train[users[codes == TRAIN]] = True
        rescue = order[first & ~has_train[sorted_users]]
        codes[rescue] = TRAIN
        return codes

    if strategy == "temporal":
        if timestamps is None:
            raise UsageError("a temporal split needs timestamps and this data set has none",
                             hint="use --split user or --split global")
        order = np.lexsort((key, timestamps, users))
    else:
        order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    n_valid, n_test = per_user_counts(sizes, ratios)
    n_train = np.repeat(sizes - n_valid - n_test, sizes)
    n_train_valid = n_train + np.repeat(n_valid, sizes)
    sorted_codes = np.where(rank < n_train, TRAIN, np.where(rank < n_train_valid, VALID, TEST))
    codes[order] = sorted_codes.astype(np.int8)
    return codes
