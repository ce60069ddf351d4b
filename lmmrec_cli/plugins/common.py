"""Small helpers shared by the rival plugins: checking the text tables, reading d."""

from __future__ import annotations

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
