"""The base-model and plugin interfaces, and the loss pieces the models share.

"Model-agnostic" (LMMRec §II) means a plugin never reaches into a base model: everything it
needs comes in :class:`Embeddings` (final and per-layer embeddings, the model's own readout,
the ego table). The trainer (``lmmrec_cli/train.py``) runs, per step::

    offset = plugin.input_offset()                      # [N, d] or None
    emb    = model.propagate(training=True, ego_offset=offset)
    terms  = model.loss(batch, emb) | plugin.loss(batch, emb, model)
    sum(terms.values()).backward(); adam.step()         # one Adam over model + plugin

and scores with ``plugin.fuse_scores(users, model.score(users, emb), emb)`` where
``emb = model.final(ego_offset=offset)``. docs/method.md §2 ("Generic interface") lists the hooks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmmrec_cli.models.contrast import logsumexp_against
from lmmrec_cli.models.graph import Batch, Graph

Readout = Callable[[list[Tensor]], Tensor]


@dataclass
class Embeddings:
    """What a forward pass hands to losses, plugins and scoring.

    Attributes:
        users, items: ``[U, d]``, ``[I, d]`` final (readout) embeddings used for scoring.
        layers: per-layer ``[N, d]`` node embeddings (users first, then items) that ``readout``
            combines: LightGCN layers 0..K, WeightedGCL 1..K, PolyCF-E the order-k terms.
        readout: the model's own readout, so a plugin can combine its own per-layer maps the
            same way (docs/method.md §1.4: the plugin must use the base's readout). It must be a
            weighted sum of the layers with scalar weights, so it accepts layers of any width
            and commutes with a right product (LMMRec relies on this; ``tests/test_models.py``).
        ego: ``[N, d]`` layer-0 embeddings (ID table plus any plugin input offset), or None.
        extras: model-specific tensors, e.g. the SSL views of SGL / SimGCL / WeightedGCL.
    """

    users: Tensor
    items: Tensor
    layers: list[Tensor]
    readout: Readout
    ego: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class BaseModel(nn.Module, ABC):
    """A graph collaborative-filtering base model.

    Subclasses set ``name`` and ``Config`` (a dataclass of hyperparameters with defaults) and
    implement :meth:`propagate` and :meth:`loss`. The constructor only builds parameters; the
    graph is run state, not a parameter, and is never saved in ``state_dict``.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    train_defaults: ClassVar[dict[str, Any]] = {}
    """The model's own trainer settings (``TrainConfig`` fields, e.g. its paper's lr, batch
    size and stopping rule), used where the user sets nothing; empty = the trainer's defaults."""

    def __init__(self, n_users: int, n_items: int, graph: Graph, config: Any) -> None:
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.graph = graph
        self.config = config

    @abstractmethod
    def propagate(self, *, training: bool, ego_offset: Tensor | None = None) -> Embeddings:
        """One forward pass; ``training`` switches on dropout / noise / extra views."""

    @abstractmethod
    def loss(self, batch: Batch, emb: Embeddings) -> dict[str, Tensor]:
        """The model's own objective as named terms (``bpr``, ``reg``, ``ssl`` ...)."""

    def final(self, *, ego_offset: Tensor | None = None) -> Embeddings:
        """The evaluation forward: no dropout, no noise, no extra views."""
        return self.propagate(training=False, ego_offset=ego_offset)

    def score(self, users: Tensor, emb: Embeddings) -> Tensor:
        """Scores ``[b, I]`` of ``users`` against every item: the inner product."""
        return emb.users[users] @ emb.items.T

    def ego_table(self, ego_offset: Tensor | None) -> Tensor:
        """``X^(0)`` ``[N, d]``: the ID tables, plus a plugin's input offset when given."""
        ego = torch.cat([self.user_embedding, self.item_embedding], dim=0)
        return ego if ego_offset is None else ego + ego_offset

    def split(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        return nodes[: self.n_users], nodes[self.n_users:]


class Plugin(nn.Module):
    """Optional behaviour added to any base model without touching it (LMMRec, RLMRec, UIST...).

    Every hook has a neutral default, so a plugin overrides only what it uses. Its parameters
    join the one Adam optimiser; its ``state_dict`` (EMA teachers included) is checkpointed.
    """

    name: ClassVar[str] = "plugin"

    def input_offset(self) -> Tensor | None:
        """``[N, d]`` added to the ego embeddings before propagation (ONCE / UIST / AutoGraph)."""
        return None

    def loss(self, batch: Batch, emb: Embeddings, model: BaseModel) -> dict[str, Tensor]:
        """Extra named loss terms on the base model's embeddings (LMMRec, RLMRec-Con)."""
        return {}

    def fuse_scores(self, users: Tensor, scores: Tensor, emb: Embeddings) -> Tensor:
        """Adjust the base scores ``[b, I]`` (UIST's token mixture); identity by default."""
        return scores

    def on_step_begin(self, step: int, steps_per_epoch: int, epoch: int) -> None:
        """Called before every training step (EMA teacher updates, warm-ups)."""

    def loadings(self, emb: Embeddings) -> Tensor | None:
        """``[N, P]``: each user's then each item's non-negative weights over the plugin's ``P``
        motivation prototypes (a mixture per row, up to normalisation), for ``lmmrec explain``;
        None for a plugin without prototypes. ``emb``: the evaluation forward of the trained run."""
        return None


class NoPlugin(Plugin):
    """The absent plugin: the base model alone."""

    name: ClassVar[str] = "none"


# -- loss pieces (each cites the code it follows) ------------------------------------------


def pick(emb: Embeddings, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """Final embeddings of the batch's users, positive and negative items."""
    return emb.users[batch.users], emb.items[batch.pos], emb.items[batch.neg]


def bpr_loss(anchor: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """``Σ softplus(s⁻ − s⁺) / B``: RLMRec ``loss_utils.py::cal_bpr_loss`` divided by the batch
    size as its models do; equal to LightGCN's ``mean(softplus)`` and, up to RecBole's 1e-10
    guard, to RecBole's ``−log σ(s⁺ − s⁻)`` mean."""
    pos_scores = (anchor * pos).sum(-1)
    neg_scores = (anchor * neg).sum(-1)
    return F.softplus(neg_scores - pos_scores).mean()


def squared_norm_of_parameters(module: nn.Module) -> Tensor:
    """``Σ_W ‖W‖²`` over every trainable parameter: RLMRec ``loss_utils.py::reg_params``."""
    terms = [p.square().sum() for p in module.parameters() if p.requires_grad]
    return torch.stack(terms).sum()


def infonce_all(view1: Tensor, view2: Tensor, candidates: Tensor, temperature: float) -> Tensor:
    """RLMRec ``loss_utils.py::cal_infonce_loss`` (summed over rows; callers divide by B).

    Cosine similarity with RLMRec's ``sqrt(1e-8 + ‖x‖²)`` normalisation; the denominator runs
    over ``candidates`` (all users or all items of view 2). A max-shifted log-sum-exp replaces
    ``log(sum(exp))`` for numerical safety (same value), fused so the ``B × C`` logits are
    never stored (:mod:`lmmrec_cli.models.contrast`); ``1/τ`` is folded into the anchors.
    """
    a = normalized_rlmrec(view1) / temperature
    positive = (a * normalized_rlmrec(view2)).sum(-1)
    return (logsumexp_against(a, normalized_rlmrec(candidates)) - positive).sum()


def two_view_objective(model: BaseModel, batch: Batch, emb: Embeddings, *,
                       negatives: bool) -> dict[str, Tensor]:
    """SGL's and SimGCL's objective (RLMRec ``sgl.py`` / ``simgcl.py``): BPR, plus
    ``cl_weight`` × the InfoNCE between the two views in ``emb.extras["views"]`` for the batch's
    users and positive items (and negative items when ``negatives``, as SGL), denominators over
    all users / items of view 2, ``/ B``; plus ``reg · Σ‖W‖²`` over all parameters."""
    (users1, items1), (users2, items2) = emb.extras["views"]
    tau = model.config.temperature
    contrast = (infonce_all(users1[batch.users], users2[batch.users], users2, tau)
                + infonce_all(items1[batch.pos], items2[batch.pos], items2, tau))
    if negatives:
        contrast = contrast + infonce_all(items1[batch.neg], items2[batch.neg], items2, tau)
    return {
        "bpr": bpr_loss(*pick(emb, batch)),
        "ssl": model.config.cl_weight * (contrast / len(batch)),
        "reg": model.config.reg * squared_norm_of_parameters(model),
    }


def xavier_table(rows: int, dim: int) -> nn.Parameter:
    """An ID embedding table with Xavier-uniform values (RLMRec's ``init``)."""
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, dim)))


def normalized_rlmrec(x: Tensor) -> Tensor:
    """Rows over ``sqrt(1e-8 + ‖x‖²)``: RLMRec's normalisation inside ``cal_infonce_loss``."""
    return x / torch.sqrt(1e-8 + x.square().sum(-1, keepdim=True))


def perturb(embeddings: Tensor, eps: float) -> Tensor:
    """SimGCL noise ``e + sign(e) ⊙ normalize(U(0,1)) · eps`` (RLMRec ``simgcl.py::
    _perturb_embedding``; WeightedGCL ``forward(perturbed=True)``): row-normalised uniform
    noise pointed into the embedding's orthant."""
    noise = F.normalize(torch.rand_like(embeddings), p=2, dim=-1)
    return embeddings + torch.sign(embeddings) * noise * eps
