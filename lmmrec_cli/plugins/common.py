"""Small helpers shared by the plugins: checking the text tables, reading d, and the
principal projection that keeps every text-reading plugin's input the same and cheap."""

from __future__ import annotations

import torch
from torch import Tensor

from lmmrec_cli.models.base import BaseModel


def require_text(name: str, user_text: Tensor | None, item_text: Tensor | None,
                 model: BaseModel) -> tuple[Tensor, Tensor]:
    """Both text tables, checked against the model's sizes, as float32 (shared by the rivals)."""
    if user_text is None or item_text is None:
        raise ValueError(f"plugin {name!r} needs both user and item text vectors")
    if user_text.shape[0] != model.n_users or item_text.shape[0] != model.n_items:
        raise ValueError(
            f"plugin {name!r}: text rows ({user_text.shape[0]} users, {item_text.shape[0]} items) "
            f"do not match the model ({model.n_users} users, {model.n_items} items)")
    if user_text.shape[1] != item_text.shape[1]:
        raise ValueError(f"plugin {name!r}: user and item text dimensions differ "
                         f"({user_text.shape[1]} vs {item_text.shape[1]})")
    return user_text.detach().float(), item_text.detach().float()


def embedding_dim(model: BaseModel) -> int:
    """The base model's embedding dimension d (width of its ID tables)."""
    return int(model.user_embedding.shape[1])


TEXT_DIM = 128
"""Default ``text_dim`` of every plugin with a text MLP (LMMRec, RLMRec-Con, ONCE): the first
layer over 1536/3072-d vectors dominates a CPU step (bench_plugins.py); the top-128 principal
subspace of the frozen table costs ~1% of it. One value for all, so the plugins compare methods
on the same text input; ``0`` reads the full vectors."""


def principal_projection(users: Tensor, items: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Both text tables projected onto the top-``dim`` principal axes of their union (centred).

    Deterministic (an eigendecomposition of the d_s × d_s covariance, signs fixed); a no-op when
    ``dim`` is 0 or not below the vectors' dimension.
    """
    if dim <= 0 or dim >= users.shape[1]:
        return users, items
    table = torch.cat([users, items]).double()
    mean = table.mean(0, keepdim=True)
    centred = table - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    axes = vectors[:, -dim:].flip(1)  # largest variance first
    signs = torch.sign(axes[axes.abs().argmax(0), torch.arange(dim)])
    axes = axes * signs  # an axis and its negation are the same axis: pick one, always
    projected = (centred @ axes).float()
    return projected[: len(users)], projected[len(users):]
