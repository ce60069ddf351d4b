"""The LMMRec plugin: its terms, its teacher, and that each ablation switch removes its part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmmrec_cli.models.graph import Batch, Graph
from lmmrec_cli.models.lightgcn import LightGCN, LightGCNConfig
from lmmrec_cli.models.registry import MODELS
from lmmrec_cli.plugins.lmmrec import LMMRecConfig, LMMRecPlugin

N_USERS, N_ITEMS, TEXT_DIM = 12, 10, 16


def _graph() -> Graph:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(N_USERS), 3)
    items = np.concatenate([rng.choice(N_ITEMS, 3, replace=False) for _ in range(N_USERS)])
    return Graph(N_USERS, N_ITEMS, users, items)


def _batch() -> Batch:
    return Batch(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8]))


def _setup(model_name: str = "lightgcn", **config):
    torch.manual_seed(0)
    model_cls = MODELS[model_name]
    model = model_cls(N_USERS, N_ITEMS, _graph(), model_cls.Config())
    text_u, text_i = torch.randn(N_USERS, TEXT_DIM), torch.randn(N_ITEMS, TEXT_DIM)
    plugin = LMMRecPlugin(model, text_u, text_i, LMMRecConfig(prototypes=8, **config))
    return model, plugin


def _step(model, plugin, step=0, steps_per_epoch=4, epoch=0):
    plugin.on_step_begin(step, steps_per_epoch, epoch)
    emb = model.propagate(training=True, ego_offset=plugin.input_offset())
    batch = _batch()
    terms = model.loss(batch, emb) | plugin.loss(batch, emb, model)
    return terms


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_trains_on_every_base_model_with_gradients_everywhere(model_name: str) -> None:
    model, plugin = _setup(model_name)
    terms = _step(model, plugin, step=2)
    assert {"mcs", "icm", "plugin_reg"} <= set(terms)
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()
    for part in (plugin.text_encoder, plugin.interaction):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert all(p.grad is None for p in plugin._teacher_parameters())


def test_plugin_parameters_exclude_the_base_model_and_frozen_teacher() -> None:
    model, plugin = _setup()
    model_ids = {id(p) for p in model.parameters()}
    assert not model_ids & {id(p) for p in plugin.parameters()}
    trainable = [p for p in plugin.parameters() if p.requires_grad]
    expected = [*plugin.text_encoder.parameters(), *plugin.interaction.parameters()]
    assert {id(p) for p in trainable} == {id(p) for p in expected}
    assert "user_text" not in plugin.state_dict()  # input vectors are not checkpointed


def test_teacher_follows_student_by_ema_each_step() -> None:
    model, plugin = _setup(momentum=0.9)
    with torch.no_grad():
        model.user_embedding.add_(1.0)
        plugin.text_encoder.first.weight.add_(0.5)
    before = [p.clone() for p in plugin._teacher_parameters()]
    students = [p.detach().clone() for p in plugin._student_parameters()]
    plugin.on_step_begin(0, 4, 0)
    for after, old, student in zip(plugin._teacher_parameters(), before, students, strict=True):
        torch.testing.assert_close(after - old, 0.1 * (student - old))


def test_icm_weight_warms_up_over_the_first_epoch() -> None:
    model, plugin = _setup(mcs_weight=1.0)
    first = _step(model, plugin, step=0, steps_per_epoch=4)["icm"].item()
    half = _step(model, plugin, step=2, steps_per_epoch=4)["icm"]
    assert first == 0.0
    assert plugin._icm_scale == pytest.approx(0.5)
    assert half.item() >= 0
    _step(model, plugin, step=1, steps_per_epoch=4, epoch=3)
    assert plugin._icm_scale == 1.0
    assert LMMRecConfig(mcs_weight=0.3).resolved_icm_weight() == pytest.approx(0.2)


def test_without_icm_no_teacher_exists() -> None:
    model, plugin = _setup(use_icm=False)
    assert plugin.teacher_model is None
    assert not any("teacher" in name for name, _ in plugin.named_parameters())
    assert "icm" not in _step(model, plugin)


def test_without_mcs_no_mcs_term() -> None:
    model, plugin = _setup(use_mcs=False)
    terms = _step(model, plugin, step=3)
    assert "mcs" not in terms and "icm" in terms


def test_without_text_the_vectors_are_never_read() -> None:
    torch.manual_seed(0)
    model = LightGCN(N_USERS, N_ITEMS, _graph(), LightGCNConfig())
    plugin = LMMRecPlugin(model, None, None, LMMRecConfig(prototypes=8, use_text=False))
    assert plugin.user_text is None and plugin.item_text is None
    assert plugin.text_encoder.first.in_features == 32  # an MLP of the ID embeddings
    terms = _step(model, plugin, step=2)
    assert torch.isfinite(sum(terms.values()))


def test_without_gcn_the_propagated_layers_are_not_used() -> None:
    model, plugin = _setup(use_gcn=False, use_icm=False)
    emb = model.propagate(training=True)
    nan_layers = [torch.full_like(x, float("nan")) for x in emb.layers]
    poisoned = type(emb)(emb.users, emb.items, nan_layers, emb.readout, emb.ego)
    terms = plugin.loss(_batch(), poisoned, model)
    assert torch.isfinite(terms["mcs"])
    _, with_gcn = _setup(use_icm=False)
    assert torch.isnan(with_gcn.loss(_batch(), poisoned, model)["mcs"])


def test_scores_stay_the_base_models() -> None:
    model, plugin = _setup()
    emb = model.final()
    users = torch.arange(3)
    torch.testing.assert_close(plugin.fuse_scores(users, model.score(users, emb), emb), model.score(users, emb))


def test_principal_projection_keeps_the_top_variance_and_is_deterministic() -> None:
    from lmmrec_cli.plugins.common import principal_projection

    torch.manual_seed(3)
    basis = torch.linalg.qr(torch.randn(20, 20))[0]
    scales = torch.tensor([10.0, 5.0] + [0.01] * 18)
    users = (torch.randn(30, 20) * scales) @ basis.T
    items = (torch.randn(25, 20) * scales) @ basis.T
    pu, pi = principal_projection(users, items, 2)
    assert pu.shape == (30, 2) and pi.shape == (25, 2)
    table = torch.cat([users, items])
    kept = torch.cat([pu, pi]).square().sum() / (table - table.mean(0)).square().sum()
    assert kept > 0.999  # two axes hold almost all the variance
    again_u, _ = principal_projection(users, items, 2)
    torch.testing.assert_close(pu, again_u)
    same_u, same_i = principal_projection(users, items, 0)
    assert same_u is users and same_i is items


def test_text_encoder_reads_the_projected_dimension() -> None:
    model, plugin = _setup(text_dim=4)
    assert plugin.user_text.shape == (N_USERS, 4) and plugin.text_encoder.first.in_features == 4


def test_teacher_shares_a_graph_already_in_use() -> None:
    torch.manual_seed(0)
    model = LightGCN(N_USERS, N_ITEMS, _graph(), LightGCNConfig())
    model.final()  # builds the sparse CSR adjacency, which cannot be deep-copied
    plugin = LMMRecPlugin(
        model, torch.randn(N_USERS, TEXT_DIM), torch.randn(N_ITEMS, TEXT_DIM), LMMRecConfig(prototypes=8)
    )
    assert plugin.teacher_model.graph is model.graph
    assert plugin.teacher_model.user_embedding is not model.user_embedding


@pytest.mark.parametrize("refresh, expected", [(1, [0, 1, 2, 3, 4, 5, 6, 7]), (3, [0, 3, 4, 7])])
def test_teacher_propagates_every_refresh_steps_counted_within_the_epoch(refresh, expected) -> None:
    model, plugin = _setup(teacher_refresh_steps=refresh)
    calls: list[int] = []
    original = plugin.teacher_model.final

    def counted(*args, **kwargs):
        calls.append(step)
        return original(*args, **kwargs)

    plugin.teacher_model.final = counted
    for step in range(8):  # two epochs of 4 steps: each epoch's first step refreshes
        _step(model, plugin, step=step, steps_per_epoch=4, epoch=step // 4)
    assert calls == expected
    # between refreshes the teacher's prototypes and encoder still move with the EMA
    before = plugin.teacher_encoder.first.weight.clone()
    plugin.text_encoder.first.weight.data.add_(1.0)
    plugin.on_step_begin(5, 4, 1)
    assert not torch.equal(before, plugin.teacher_encoder.first.weight)
