"""Every rival plugin × every base model trains a few steps exactly as the trainer does."""

from __future__ import annotations

import pytest
import torch

from lmmrec_cli.models.base import BaseModel, Plugin
from lmmrec_cli.models.graph import Batch
from lmmrec_cli.models.registry import MODELS
from lmmrec_cli.plugins.registry import PLUGINS
from tests.plugin_fixtures import N_ITEMS, tiny_batches, tiny_graph, tiny_model, tiny_plugin


def nonzero(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(torch.isfinite(grad).all()) and bool(grad.abs().sum() > 0)


def assert_coupled(model: BaseModel, plugin: Plugin, batch: Batch) -> None:
    """The base loss reaches the plugin's parameters (input offsets) or the plugin's loss reaches
    the base's ID tables (alignment). Separate forwards: the graph's sparse product frees its
    transpose after one backward, so one graph cannot be differentiated twice."""
    plugin_params = [p for p in plugin.parameters() if p.requires_grad]
    id_tables = [model.user_embedding, model.item_embedding]

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        emb = model.propagate(training=True, ego_offset=plugin.input_offset())
        return sum(model.loss(batch, emb).values()), sum(plugin.loss(batch, emb, model).values())

    base_loss, _ = forward()
    base_to_plugin = torch.autograd.grad(base_loss, plugin_params, allow_unused=True)
    _, plugin_loss = forward()
    plugin_to_base = torch.autograd.grad(plugin_loss, id_tables, allow_unused=True)
    assert any(nonzero(g) for g in base_to_plugin) or all(nonzero(g) for g in plugin_to_base)


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("plugin_name", sorted(PLUGINS))
def test_plugin_trains_on_every_base_model(plugin_name: str, model_name: str) -> None:
    graph = tiny_graph()
    model = tiny_model(model_name, graph)
    plugin = tiny_plugin(plugin_name, model)
    model_params = list(model.parameters())
    plugin_params = [p for p in plugin.parameters() if p.requires_grad]
    assert plugin_params, "a rival plugin without trainable parameters"
    adam = torch.optim.Adam(model_params + plugin_params, lr=1e-2)
    batches = tiny_batches(graph)[:3]
    assert_coupled(model, plugin, batches[0])
    for step, batch in enumerate(batches):
        plugin.on_step_begin(step, len(batches), 0)
        offset = plugin.input_offset()
        emb = model.propagate(training=True, ego_offset=offset)
        model_terms = model.loss(batch, emb)
        plugin_terms = plugin.loss(batch, emb, model)
        assert not set(model_terms) & set(plugin_terms), "a plugin term would overwrite a base term"
        assert plugin_terms, "the plugin logs no term"
        terms = model_terms | plugin_terms
        loss = sum(terms.values())
        assert torch.isfinite(loss), terms
        adam.zero_grad()
        loss.backward()
        if step == 0:
            for name, param in plugin.named_parameters():
                assert nonzero(param.grad), f"plugin parameter {name} gets no gradient"
            assert nonzero(model.user_embedding.grad) and nonzero(model.item_embedding.grad)
        adam.step()
    with torch.no_grad():
        offset = plugin.input_offset()
        emb = model.final(ego_offset=offset)
        users = torch.arange(5)
        scores = plugin.fuse_scores(users, model.score(users, emb), emb)
    assert scores.shape == (5, N_ITEMS)
    assert torch.isfinite(scores).all()
