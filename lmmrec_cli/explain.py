"""Why was an item recommended? A user's top-k with motivations and motivation prototypes.

``explain(workspace, run, user, k)`` rebuilds a trained run (``runs.load_run``), ranks every
item for one user exactly as the evaluator does (same scores, training items masked, ties to the
lower item index via ``metrics.top_items``) and puts three things beside each recommendation:

1. **Text motivations** from the motivations artifact: the user's active/passive motivations
   and the item's, the phrases both seek/offer (``matched``) and the item's flaws the user
   avoids (``conflicts``). The artifact is the one the run's text vectors were embedded from;
   for a run without text (``--plugin none``) the newest motivations of its dataset (or of the
   clean dataset a noisy version was made from), or ``--motivations``.
2. **Motivation prototypes** (LMMRec runs only; Eqs. 5-6). A node's *loading* on the prototypes
   is the weight vector of its motivation-aware embedding ``p = Σ_j w_j z_j``:
   ``w = readout_k softmax(x^(k) Z)`` over the layers the plugin maps (normalised to sum 1),
   i.e. exactly the soft assignment the plugin trained. User and item are both read through
   the **user-side prototypes** ``Z_U``: one vocabulary is needed to say what *both* load on,
   the explanation is addressed to the user's motivations, and the base model scores
   ``x_u · x_i``, so ``x_i · z_j`` is how a user made of prototype j alone would score item i
   (the item-side prototypes ``Z_I`` are a separate, unrelated basis).
3. **Agreement**: the Pearson correlation over the prototypes of the two loadings (the cosine of
   the loadings minus the uniform 1/I_p), in [-1, 1]: 1 = both favour the same prototypes, 0 =
   unrelated, < 0 = opposite. Not the shared mass Σ min(a_u, a_i) or a dot product: softmax
   without a temperature over ~128 prototypes of small embeddings is nearly flat (on the demo
   the largest loading is ~1.15x uniform and the shared mass is 0.95-0.99 for *every* pair), so
   those measure flatness, not agreement; centring removes the common uniform part. "The
   prototypes both load on most" are the prototypes with the largest positive terms
   ``(a_u[j] - 1/I)(a_i[j] - 1/I)`` with both loadings above uniform, i.e. the terms that make
   the agreement. Loadings are shown as multiples of uniform (1.08 = 8% above 1/I_p).

A prototype is an unnamed vector; its *label* is the user motivation phrases most
characteristic of the users that load most on it (their loading-weighted share minus the
phrase's share among all users), so "prototype 17 (live band, craft beer)" reads as a motivation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lmmrec_cli.data.dataset import Interactions, PreparedDataset
from lmmrec_cli.errors import UsageError
from lmmrec_cli.evaluation import masked_items, protocol, score_function
from lmmrec_cli.metrics import rows_to_device, top_items
from lmmrec_cli.models.base import Embeddings
from lmmrec_cli.motivations import Motivation, read_motivations
from lmmrec_cli.runs import CONFIG_FILE, LoadedRun, load_run
from lmmrec_cli.workspace import ArtifactRef, Workspace

TOP_PROTOTYPES = 3
# users whose phrases name a prototype: enough to see a pattern, few enough to be specific
LABEL_USERS = 20
LABEL_PHRASES = 3


# -- recommendations -----------------------------------------------------------------------


def recommend(
    loaded: LoadedRun, users: np.ndarray, k: int, *, mask_valid: bool = False,
    scored: tuple[Callable[[torch.Tensor], torch.Tensor], Embeddings] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (item indices, scores) ``[len(users), k]`` ranked as the evaluator ranks them:
    the run's scores, training items (and validation items with ``mask_valid``) set to −∞,
    ties broken towards the lower item index. ``scored``: :func:`evaluation.score_function`'s result
    when the caller already has it."""
    exclude = masked_items(loaded.dataset.interactions, mask_valid=mask_valid)
    loaded.model.eval()
    loaded.plugin.eval()
    scores_of, _ = scored if scored is not None else score_function(loaded.model, loaded.plugin)
    with torch.no_grad():
        scores = scores_of(torch.as_tensor(users, dtype=torch.long, device=loaded.device)).float()
        scores[rows_to_device(exclude, users, loaded.device)] = -np.inf
        values, items = top_items(scores, min(k, scores.shape[1]))
    return items.cpu().numpy(), values.cpu().numpy()


# -- prototypes ----------------------------------------------------------------------------


@dataclass
class PrototypeLoadings:
    """Every user's and item's loading on the user-side prototypes, rows sum to 1."""

    users: np.ndarray  # float64 [U, P]
    items: np.ndarray  # float64 [I, P]

    @property
    def count(self) -> int:
        return int(self.users.shape[1])


def prototype_loadings(loaded: LoadedRun, emb: Embeddings | None = None) -> PrototypeLoadings | None:
    """Every user's and item's weights over the plugin's motivation prototypes (the plugin's
    :meth:`~lmmrec_cli.models.base.Plugin.loadings`); None for a plugin without prototypes.
    ``emb``: the run's evaluation forward when the caller already has it."""
    plugin, model = loaded.plugin, loaded.model
    model.eval()
    plugin.eval()
    with torch.no_grad():
        emb = emb if emb is not None else model.final(ego_offset=plugin.input_offset())
        weights = plugin.loadings(emb)
    if weights is None:
        return None
    weights = weights.double().cpu().numpy()
    weights /= weights.sum(1, keepdims=True)
    return PrototypeLoadings(weights[: model.n_users], weights[model.n_users :])


def agreement(user: np.ndarray, item: np.ndarray) -> float:
    """Pearson correlation of two loadings over the prototypes, in [-1, 1] (0 if one is flat)."""
    a, b = user - user.mean(), item - item.mean()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.clip(a @ b / norm, -1.0, 1.0)) if norm > 0 else 0.0


def shared_prototypes(user: np.ndarray, item: np.ndarray, top: int = TOP_PROTOTYPES) -> list[int]:
    """Prototypes both load on above uniform, largest contribution to the agreement first."""
    uniform = 1.0 / len(user)
    above_u, above_i = user - uniform, item - uniform
    contribution = np.where((above_u > 0) & (above_i > 0), above_u * above_i, 0.0)
    order = np.argsort(-contribution, kind="stable")
    return [int(j) for j in order[:top] if contribution[j] > 0]


def top_prototypes(loading: np.ndarray, top: int = TOP_PROTOTYPES) -> list[int]:
    return [int(j) for j in np.argsort(-loading, kind="stable")[:top]]


class PrototypeLabeler:
    """Names a prototype by the user motivations characteristic of the users loading on it."""

    def __init__(
        self, loadings: PrototypeLoadings, user_motivations: list[Motivation] | None
    ) -> None:
        self.loadings = loadings
        self.phrases = [set(m.active) for m in user_motivations] if user_motivations else None
        self._cache: dict[int, list[str]] = {}
        if self.phrases:
            counts: dict[str, int] = {}
            for phrases in self.phrases:
                for phrase in phrases:
                    counts[phrase] = counts.get(phrase, 0) + 1
            self.base = {p: c / len(self.phrases) for p, c in counts.items()}

    def label(self, prototype: int) -> list[str]:
        if not self.phrases:
            return []
        if prototype not in self._cache:
            column = self.loadings.users[:, prototype]
            users = np.argsort(-column, kind="stable")[:LABEL_USERS]
            weights = column[users] / column[users].sum()
            share: dict[str, float] = {}
            seen: dict[str, int] = {}
            for user, weight in zip(users, weights, strict=True):
                for phrase in self.phrases[user]:
                    share[phrase] = share.get(phrase, 0.0) + float(weight)
                    seen[phrase] = seen.get(phrase, 0) + 1
            # lift over the whole population, and at least two users: one user's quirk is no pattern
            lift = {
                p: s - self.base[p] for p, s in share.items() if seen[p] >= 2 and s > self.base[p]
            }
            ranked = sorted(lift, key=lambda p: (-lift[p], p))
            self._cache[prototype] = ranked[:LABEL_PHRASES]
        return self._cache[prototype]


# -- motivations ---------------------------------------------------------------------------


def _dataset_lineage(workspace: Workspace, ref: ArtifactRef) -> list[ArtifactRef]:
    """The dataset and the datasets it was derived from (a noisy version's clean parent)."""
    chain, seen = [ref], {ref.version}
    while True:
        parents = [
            p for p in chain[-1].manifest().get("parents", []) if p.get("kind") == "datasets"
        ]
        found = [workspace.find("datasets", p["name"], p["version"]) for p in parents]
        found = [f for f in found if f is not None and f.version not in seen]
        if not found:
            return chain
        chain.append(found[0])
        seen.add(found[0].version)


def find_motivations(
    workspace: Workspace, loaded: LoadedRun, reference: str | None
) -> ArtifactRef | None:
    """``reference`` if given; else the motivations the run's text vectors were embedded from;
    else the newest motivations of the run's dataset or of a dataset it was derived from."""
    if reference:
        return workspace.resolve("motivations", reference)
    embeddings = (loaded.config.get("plugin", {}).get("settings") or {}).get("embeddings")
    if embeddings:
        ref = workspace.find("embeddings", embeddings["name"], embeddings["version"])
        for parent in ref.manifest().get("parents", []) if ref else []:
            if parent.get("kind") == "motivations":
                found = workspace.find("motivations", parent["name"], parent["version"])
                if found:
                    return found
    for dataset in _dataset_lineage(workspace, loaded.dataset.ref):
        children = workspace.children(dataset, kind="motivations")
        if children:
            return max(children, key=lambda c: (c.manifest().get("finished_at", ""), c.version))
    return None


# -- users ---------------------------------------------------------------------------------


def resolve_user(
    dataset: PreparedDataset, user: str, *, by_index: bool, run: str
) -> tuple[int, str]:
    """(index, original id) of ``user``: an original id (the users table's ``user_id``) or,
    with ``by_index``, the internal index 0..n_users-1."""
    table = dataset.users()
    ids = table["user_id"].astype(str).to_numpy()
    indices = table["user"].to_numpy()
    listing = f"list them with `lmmrec explain --run {run} --list-users`"
    if by_index:
        if user.strip().lstrip("-").isdigit() and 0 <= int(user) < len(ids):
            position = int(np.flatnonzero(indices == int(user))[0])
            return int(user), str(ids[position])
        raise UsageError(
            f"user index {user!r} is not in 0..{len(ids) - 1} of {dataset.ref.label}", hint=listing
        )
    matches = np.flatnonzero(ids == user)
    if len(matches):
        return int(indices[matches[0]]), user
    hint = f"{len(ids):,} users, ids like {', '.join(ids[:2])}; {listing}"
    if user.isdigit() and int(user) < len(ids):
        hint += f"; or pass --index to mean user index {user}"
    raise UsageError(f"no user {user!r} in {dataset.ref.label}", hint=hint)


def run_dataset(workspace: Workspace, run: str) -> PreparedDataset:
    """The dataset version a run was trained on, without rebuilding its model."""
    ref = workspace.resolve("runs", run)
    try:
        parent = json.loads((ref.path / CONFIG_FILE).read_text(encoding="utf-8"))["dataset"]
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{ref.label} is not a readable run: {error}") from None
    return PreparedDataset.open(workspace, f"{parent['name']}@{parent['version']}")


def user_listing(workspace: Workspace, run: str) -> list[dict[str, Any]]:
    """Every user of the run's dataset: index, original id, number of training items."""
    dataset = run_dataset(workspace, run)
    table = dataset.users()
    train = np.bincount(dataset.interactions.pairs("train")[0], minlength=dataset.n_users)
    return [
        {"index": int(i), "id": str(u), "training_items": int(train[int(i)])}
        for i, u in zip(table["user"], table["user_id"], strict=True)
    ]


# -- the explanation -----------------------------------------------------------------------


@dataclass
class Explanation:
    """Everything ``lmmrec explain`` shows; :meth:`as_json` is the ``--json`` document."""

    run: str
    dataset: str
    plugin: str
    motivations: str | None
    user: dict[str, Any]
    prototypes: dict[str, Any]
    k: int
    masked: list[str]
    recommendations: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _motivation_json(motivation: Motivation | None) -> dict[str, Any] | None:
    if motivation is None:
        return None
    return {
        "active": motivation.active,
        "passive": motivation.passive,
        "summary": motivation.summary,
        "source": motivation.source,
    }


def _held_out(dataset: PreparedDataset, user: int) -> dict[int, str]:
    inter = dataset.interactions
    return {int(i): split for split in ("valid", "test") for i in _items_of(inter, split, user)}


def _items_of(inter: Interactions, split: str, user: int) -> np.ndarray:
    users, items = inter.pairs(split)
    return items[users == user]


def explain(
    workspace: Workspace,
    run: str,
    user: str,
    *,
    k: int = 10,
    by_index: bool = False,
    motivations: str | None = None,
    mask_valid: bool = False,
    device: str = "cpu",
) -> Explanation:
    """Explain ``user``'s top-``k`` of ``run`` (see the module docstring)."""
    if k < 1:
        raise UsageError(f"--k {k}: ask for at least one recommendation")
    # the user first: a mistyped id should not wait for a model to be rebuilt
    index, user_id = resolve_user(run_dataset(workspace, run), user, by_index=by_index, run=run)
    loaded = load_run(workspace, run, device=device)
    data = loaded.dataset
    motivation_ref = find_motivations(workspace, loaded, motivations)
    user_mot = item_mot = None
    if motivation_ref is not None:
        user_mot, item_mot = (
            read_motivations(motivation_ref, "user"),
            read_motivations(motivation_ref, "item"),
        )
        if len(user_mot) != data.n_users or len(item_mot) != data.n_items:
            raise UsageError(
                f"{motivation_ref.label} has {len(user_mot)} users / {len(item_mot)} items, "
                f"{data.ref.label} has {data.n_users} / {data.n_items}",
                hint="pass --motivations made from this dataset",
            )
    loaded.model.eval()
    loaded.plugin.eval()
    scored = score_function(loaded.model, loaded.plugin)  # one forward serves ranking and loadings
    loadings = prototype_loadings(loaded, scored[1])
    labeler = PrototypeLabeler(loadings, user_mot) if loadings is not None else None

    def described(j: int, **loads: float) -> dict[str, Any]:
        assert loadings is not None and labeler is not None
        return {
            "prototype": j,
            **{name: round(value * loadings.count, 4) for name, value in loads.items()},
            "label": labeler.label(j),
        }

    items, scores = recommend(loaded, np.array([index]), k, mask_valid=mask_valid, scored=scored)
    titles = data.items().set_index("item")
    held_out = _held_out(data, index)
    user_phrases = set(user_mot[index].active) if user_mot else set()
    user_avoids = set(user_mot[index].passive) if user_mot else set()
    if loadings is None:
        prototypes = {
            "available": False,
            "reason": f"plugin {loaded.config['plugin']['name']!r} has no motivation "
            "prototypes (train with --plugin lmmrec)",
            "count": 0,
            "user_top": [],
        }
    else:
        own = loadings.users[index]
        prototypes = {
            "available": True,
            "reason": None,
            "count": loadings.count,
            "space": "user-side prototypes Z_U; loads as multiples of uniform (1/count)",
            "agreement": "Pearson correlation of the user's and the item's loadings, in [-1, 1]",
            "user_top": [described(j, load=own[j]) for j in top_prototypes(own)],
        }
    recommendations = []
    for rank, (item, score) in enumerate(zip(items[0], scores[0], strict=True), start=1):
        if not np.isfinite(score):  # fewer unmasked items than k
            break
        item = int(item)
        row = titles.loc[item]
        entry: dict[str, Any] = {
            "rank": rank,
            "item": item,
            "item_id": str(row["item_id"]),
            "title": str(row.get("title") or ""),
            "score": round(float(score), 6),
            "held_out": held_out.get(item),
            "motivations": _motivation_json(item_mot[item]) if item_mot else None,
            "matched": sorted(user_phrases & set(item_mot[item].active)) if item_mot else [],
            # a flaw of the item that the user has complained about elsewhere
            "conflicts": sorted(user_avoids & set(item_mot[item].passive)) if item_mot else [],
        }
        if loadings is not None:
            u, i = loadings.users[index], loadings.items[item]
            entry["agreement"] = round(agreement(u, i), 4)
            entry["prototypes"] = {
                "shared": [
                    described(j, user_load=u[j], item_load=i[j]) for j in shared_prototypes(u, i)
                ],
                "item_top": [described(j, load=i[j]) for j in top_prototypes(i)],
            }
        else:
            entry["agreement"] = None
            entry["prototypes"] = None
        recommendations.append(entry)
    train_count = len(_items_of(data.interactions, "train", index))
    return Explanation(
        run=loaded.ref.label,
        dataset=data.ref.label,
        plugin=loaded.config["plugin"]["name"],
        motivations=motivation_ref.label if motivation_ref else None,
        user={
            "index": index,
            "id": user_id,
            "training_items": train_count,
            "motivations": _motivation_json(user_mot[index]) if user_mot else None,
        },
        prototypes=prototypes,
        k=k,
        masked=protocol("test", mask_valid, ())["masked"],
        recommendations=recommendations,
    )
