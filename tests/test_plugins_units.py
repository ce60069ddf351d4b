"""Per-plugin checks against hand computations, the quantiser, state round trips, ownership."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch
import torch.nn.functional as F

from lmmrec_cli.models.graph import Batch
from lmmrec_cli.plugins.autograph import AutoGraph
from lmmrec_cli.plugins.once import ONCE
from lmmrec_cli.plugins.quantize import residual_quantize
from lmmrec_cli.plugins.registry import PLUGINS
from lmmrec_cli.plugins.rlmrec_con import RLMRecCon, RLMRecConConfig
from lmmrec_cli.plugins.uist import UIST
from tests.plugin_fixtures import (
    N_ITEMS,
    N_USERS,
    tiny_batches,
    tiny_graph,
    tiny_model,
    tiny_plugin,
    tiny_text,
)

# -- RLMRec-Con ------------------------------------------------------------------------------

# Repeated users and items on purpose: neither RLMRec nor this plugin deduplicates them.
SMALL_BATCH = Batch(torch.tensor([0, 3, 3, 7]), torch.tensor([1, 2, 5, 1]),
                    torch.tensor([4, 0, 9, 9]))


def hand_infonce(anchors: list[list[float]], positives: list[list[float]],
                 candidates: list[list[float]], tau: float) -> float:
    """Σ_j −log(exp(cos(a_j, p_j)/τ) / Σ_l exp(cos(a_j, c_l)/τ)) with plain Python floats."""
    def cos(x: list[float], y: list[float]) -> float:
        dot = sum(a * b for a, b in zip(x, y, strict=True))
        norms = math.sqrt(1e-8 + sum(a * a for a in x)) * math.sqrt(1e-8 + sum(b * b for b in y))
        return dot / norms

    total = 0.0
    for a, p in zip(anchors, positives, strict=True):
        denominator = sum(math.exp(cos(a, c) / tau) for c in candidates)
        total += -math.log(math.exp(cos(a, p) / tau) / denominator)
    return total


@pytest.mark.parametrize("user_negatives", ["all", "batch"])
def test_rlmrec_con_loss_equals_hand_computation(user_negatives: str) -> None:
    model = tiny_model("mf", tiny_graph())
    plugin = tiny_plugin("rlmrec-con", model, user_negatives=user_negatives)
    batch = SMALL_BATCH
    emb = model.propagate(training=True)
    got = plugin.loss(batch, emb, model)["rlmrec_kd"].item()
    with torch.no_grad():
        user_h = plugin.mlp(plugin.user_text).tolist()
        item_h = plugin.mlp(plugin.item_text).tolist()
    users, items = emb.users.tolist(), emb.items.tolist()
    u, p, n = batch.users.tolist(), batch.pos.tolist(), batch.neg.tolist()
    user_candidates = user_h if user_negatives == "all" else [user_h[j] for j in u]
    tau = plugin.config.temperature
    expected = (hand_infonce([users[j] for j in u], [user_h[j] for j in u], user_candidates, tau)
                + hand_infonce([items[j] for j in p], [item_h[j] for j in p],
                               [item_h[j] for j in p], tau)
                + hand_infonce([items[j] for j in n], [item_h[j] for j in n],
                               [item_h[j] for j in n], tau))
    expected *= plugin.config.kd_weight / len(batch)
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("user_negatives", ["all", "batch"])
def test_rlmrec_con_maps_only_the_rows_it_needs(user_negatives: str) -> None:
    """The cost claim: the MLP sees each distinct batch row once, all users only for "all"."""
    model = tiny_model("mf", tiny_graph())
    plugin = tiny_plugin("rlmrec-con", model, user_negatives=user_negatives)
    rows: list[int] = []
    plugin.mlp[0].register_forward_hook(lambda _m, inputs, _o: rows.append(inputs[0].shape[0]))
    batch = SMALL_BATCH
    plugin.loss(batch, model.propagate(training=True), model)
    user_rows = N_USERS if user_negatives == "all" else 3
    assert sorted(rows) == sorted([user_rows, 6])  # distinct items {0, 1, 2, 4, 5, 9}


def test_rlmrec_con_rejects_missing_text_and_bad_options() -> None:
    model = tiny_model("mf", tiny_graph())
    user_text, item_text = tiny_text()
    with pytest.raises(ValueError, match="needs both"):
        RLMRecCon(model, None, item_text)
    with pytest.raises(ValueError, match="do not match"):
        RLMRecCon(model, user_text[:-1], item_text)
    with pytest.raises(ValueError, match="user_negatives"):
        RLMRecCon(model, user_text, item_text, RLMRecConConfig(user_negatives="some"))


# -- residual quantisation -------------------------------------------------------------------


def clustered(n: int = 400, dim: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, dim, generator=generator) * 3
    noise = torch.randn(n, dim, generator=generator)
    return centres[torch.randint(6, (n,), generator=generator)] + noise


def test_residual_codes_reconstruct_better_with_more_levels() -> None:
    x = clustered()
    rq = residual_quantize(x, levels=4, codes=8, seed=0)
    errors = [(rq.reconstruct(levels) - x).square().sum(1).mean().item() for levels in range(5)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[4] < 0.5 * errors[1]


def test_residual_codes_are_deterministic_and_nearest() -> None:
    x = clustered()
    first = residual_quantize(x, levels=3, codes=8, seed=5, max_fit_rows=100)
    second = residual_quantize(x, levels=3, codes=8, seed=5, max_fit_rows=100)
    assert first.codes.shape == (400, 3) and first.codes.dtype == torch.long
    assert torch.equal(first.codes, second.codes)
    for a, b in zip(first.codebooks, second.codebooks, strict=True):
        assert torch.equal(a, b)
    # Each level's code is the nearest centre of that level's residual (fitted on 100 rows,
    # assigned on all 400).
    residual = x.clone()
    for level, codebook in enumerate(first.codebooks):
        assert torch.equal(torch.cdist(residual, codebook).argmin(1), first.codes[:, level])
        residual = residual - codebook[first.codes[:, level]]


def test_residual_codes_handle_fewer_rows_than_codes() -> None:
    rq = residual_quantize(torch.randn(5, 4), levels=2, codes=16)
    assert rq.codes.shape == (5, 2) and int(rq.codes.max()) < 5
    with pytest.raises(ValueError):
        residual_quantize(torch.randn(5, 4), levels=0)


# -- UIST ------------------------------------------------------------------------------------


def test_uist_offset_and_fused_scores_equal_the_formula() -> None:
    model = tiny_model("lightgcn", tiny_graph())
    plugin = tiny_plugin("uist", model)
    assert isinstance(plugin, UIST)
    with torch.no_grad():
        plugin.level_logits.copy_(torch.tensor([0.3, -0.7]))
    tables_u, tables_i = plugin.user_tables.detach(), plugin.item_tables.detach()
    codes_u, codes_i = plugin.user_codes, plugin.item_codes
    levels = codes_u.shape[1]
    offset = plugin.input_offset().detach()
    assert torch.allclose(offset[3], sum(tables_u[lv, codes_u[3, lv]] for lv in range(levels)))
    assert torch.allclose(offset[N_USERS + 4],
                          sum(tables_i[lv, codes_i[4, lv]] for lv in range(levels)))
    emb = model.final(ego_offset=plugin.input_offset())
    users = torch.tensor([1, 6])
    base = model.score(users, emb)
    fused = plugin.fuse_scores(users, base, emb).detach()
    weights = torch.softmax(torch.tensor([0.3, -0.7]), 0)
    for row, user in enumerate(users.tolist()):
        for item in range(N_ITEMS):
            mixture = 0.0
            for level in range(levels):
                prefix_u = sum(tables_u[j, codes_u[user, j]] for j in range(level + 1))
                prefix_i = sum(tables_i[j, codes_i[item, j]] for j in range(level + 1))
                mixture += weights[level] * (prefix_u * prefix_i).sum()
            assert fused[row, item].item() == pytest.approx((base[row, item] + mixture).item(),
                                                            abs=1e-6)


@pytest.mark.parametrize("objective", ["fused", "tokens"])
def test_uist_mixture_loss_sees_the_scored_mixture(objective: str) -> None:
    model = tiny_model("mf", tiny_graph())
    plugin = tiny_plugin("uist", model, mixture_objective=objective)
    emb = model.propagate(training=True, ego_offset=plugin.input_offset())
    batch = Batch(torch.tensor([0, 5]), torch.tensor([2, 3]), torch.tensor([7, 1]))
    got = plugin.loss(batch, emb, model)["uist_mix"]
    scores = plugin.fuse_scores(batch.users, torch.zeros(2, N_ITEMS), emb)
    if objective == "fused":
        scores = scores + model.score(batch.users, emb)
    rows = torch.arange(2)
    expected = F.softplus(scores[rows, batch.neg] - scores[rows, batch.pos]).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # "tokens" leaves the base gradient alone; "fused" trains the base through the fused score.
    base_grad = torch.autograd.grad(got, model.user_embedding, allow_unused=True)[0]
    assert (base_grad is not None and bool(base_grad.abs().sum() > 0)) == (objective == "fused")


# -- ONCE ------------------------------------------------------------------------------------


def test_once_offset_equals_projection_of_text() -> None:
    model = tiny_model("lightgcn", tiny_graph())
    plugin = tiny_plugin("once", model)
    assert isinstance(plugin, ONCE)
    user_text, item_text = tiny_text()
    first, second = plugin.projection[0], plugin.projection[2]

    def w(c: torch.Tensor) -> torch.Tensor:
        return F.linear(F.leaky_relu(F.linear(c, first.weight, first.bias), 0.01),
                        second.weight, second.bias)

    offset = plugin.input_offset()
    assert offset.shape == (N_USERS + N_ITEMS, model.user_embedding.shape[1])
    assert torch.allclose(offset[:N_USERS], w(user_text), atol=1e-6)
    assert torch.allclose(offset[N_USERS:], w(item_text), atol=1e-6)
    assert first.weight.shape[0] == (user_text.shape[1] + model.user_embedding.shape[1]) // 2


# -- AutoGraph -------------------------------------------------------------------------------


def test_autograph_members_share_the_code_node() -> None:
    model = tiny_model("lightgcn", tiny_graph())
    plugin = tiny_plugin("autograph", model)
    assert isinstance(plugin, AutoGraph)
    codes, members, weights = plugin.user_codes, plugin.user_members, plugin.user_member_weights
    codebook = plugin.config.user_codes
    for node in range(members.shape[0]):
        level, code = divmod(node, codebook)
        real = members[node][weights[node] > 0].tolist()
        group = set(torch.nonzero(codes[:, level] == code).flatten().tolist())
        assert len(real) == min(plugin.config.degree, len(group)) == len(set(real))
        assert set(real) <= group
        if real:
            assert weights[node].sum().item() == pytest.approx(1.0)


def test_autograph_offset_equals_hand_computation() -> None:
    model = tiny_model("sgl", tiny_graph())
    plugin = tiny_plugin("autograph", model)
    offset = plugin.input_offset()
    item = 6
    codes = plugin.item_codes[item].tolist()
    codebook, levels = plugin.config.item_codes, len(codes)
    nodes = [level * codebook + code for level, code in enumerate(codes)]
    code_part = sum(plugin.item_code_embedding[node] for node in nodes) / levels
    member_means = []
    for node in nodes:
        real = plugin.item_members[node][plugin.item_member_weights[node] > 0]
        member_means.append(model.item_embedding[real].mean(0))
    member_part = sum(member_means) / levels
    expected = plugin.item_mlp(torch.cat([code_part, member_part]))
    assert torch.allclose(offset[N_USERS + item], expected, atol=1e-6)


# -- every plugin: state round trip and ownership --------------------------------------------


@pytest.mark.parametrize("plugin_name", sorted(PLUGINS))
def test_state_dict_round_trip(plugin_name: str) -> None:
    graph = tiny_graph()
    model = tiny_model("lightgcn", graph)
    plugin = tiny_plugin(plugin_name, model, seed=0)
    with torch.no_grad():
        for param in plugin.parameters():
            param.add_(0.1 * torch.randn_like(param))  # a state no fresh plugin has
    buffer = io.BytesIO()
    torch.save(plugin.state_dict(), buffer)
    buffer.seek(0)
    restored = tiny_plugin(plugin_name, model, seed=7)
    restored.load_state_dict(torch.load(buffer))
    batch = tiny_batches(graph)[0]
    emb = model.propagate(training=False)
    offset, restored_offset = plugin.input_offset(), restored.input_offset()
    assert (offset is None) == (restored_offset is None)
    if offset is not None:
        assert torch.equal(offset, restored_offset)
    terms, restored_terms = plugin.loss(batch, emb, model), restored.loss(batch, emb, model)
    assert terms.keys() == restored_terms.keys()
    for key in terms:
        assert torch.equal(terms[key], restored_terms[key]), key
    users = torch.arange(4)
    base = model.score(users, emb)
    assert torch.equal(plugin.fuse_scores(users, base, emb), restored.fuse_scores(users, base, emb))


@pytest.mark.parametrize("plugin_name", sorted(PLUGINS))
def test_plugin_never_stores_the_models_parameters(plugin_name: str) -> None:
    model = tiny_model("polycf", tiny_graph())
    plugin = tiny_plugin(plugin_name, model)
    model_ids = {id(p) for p in model.parameters()}
    assert not model_ids & {id(p) for p in plugin.parameters()}
    model_storage = {p.data_ptr() for p in model.parameters()}
    state = plugin.state_dict()
    assert not model_storage & {t.data_ptr() for t in state.values()}
    assert not any(key.startswith("_model") for key in state)
    # The frozen text is not checkpointed (it is an input artifact, reloaded with the run).
    assert not any(key.endswith(("_text", "content")) for key in state)


def test_registry_names_and_configs() -> None:
    assert sorted(PLUGINS) == ["autograph", "once", "rlmrec-con", "uist"]
    for name, cls in PLUGINS.items():
        assert cls.name == name
        assert dataclasses.is_dataclass(cls.Config)
        cls.Config()  # every field has a default
    defaults = RLMRecConConfig()
    assert (defaults.kd_weight, defaults.temperature, defaults.reg) == (1e-2, 0.2, 1e-7)
    assert defaults.user_negatives == "all"


