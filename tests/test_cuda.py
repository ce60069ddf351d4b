"""The CUDA path against the CPU: a training step's loss and gradients, the tiled alignment,
full-ranking evaluation and ``train --device cuda`` through the CLI.

Marked ``cuda``: skipped (with the reason) where torch sees no CUDA device; on a GPU machine
``benchmarks/gpu_check.sh`` runs them first.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import random_text_vectors, run_cli
from plugin_fixtures import tiny_batches, tiny_graph, tiny_model, tiny_text

from lmmrec_cli.metrics import full_ranking
from lmmrec_cli.plugins import alignment
from lmmrec_cli.plugins.alignment import alignment_losses, alignment_losses_autograd
from lmmrec_cli.plugins.lmmrec import LMMRecConfig, LMMRecPlugin
from lmmrec_cli.workspace import Workspace

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def _step(model, plugin, batch):
    """Clean (no dropout) forward, the base and plugin losses, backward: (terms, gradients)."""
    emb = model.propagate(training=False)
    terms = model.loss(batch, emb) | plugin.loss(batch, emb, model)
    params = [p for p in [*model.parameters(), *plugin.parameters()] if p.requires_grad]
    grads = torch.autograd.grad(sum(terms.values()), params)
    return {k: v.detach().cpu() for k, v in terms.items()}, [g.cpu() for g in grads]


@pytest.mark.parametrize("name", ["lightgcn", "polycf"])
def test_model_and_lmmrec_step_on_cuda_equal_the_cpu(name: str) -> None:
    graph_cpu, graph_gpu = tiny_graph(), tiny_graph().to(CUDA)
    model_cpu = tiny_model(name, graph_cpu)
    # Same weights on the CUDA graph (the memo swaps the graph instead of copying it).
    model_gpu = copy.deepcopy(model_cpu, {id(graph_cpu): graph_gpu}).to(CUDA)
    user_text, item_text = tiny_text()
    config = LMMRecConfig(prototypes=8)
    torch.manual_seed(3)
    plugin_cpu = LMMRecPlugin(model_cpu, user_text, item_text, config)
    plugin_gpu = copy.deepcopy(plugin_cpu, {id(graph_cpu): graph_gpu, id(model_cpu): model_gpu}).to(CUDA)
    assert plugin_gpu._student[0] is model_gpu and plugin_gpu.teacher_model.graph is graph_gpu
    for plugin in (plugin_cpu, plugin_gpu):
        plugin.on_step_begin(5, 10, 0)  # γ > 0, so ICM contributes
    batch = tiny_batches(graph_cpu)[0]
    batch_gpu = type(batch)(batch.users.to(CUDA), batch.pos.to(CUDA), batch.neg.to(CUDA))
    terms_cpu, grads_cpu = _step(model_cpu, plugin_cpu, batch)
    terms_gpu, grads_gpu = _step(model_gpu, plugin_gpu, batch_gpu)
    assert terms_cpu.keys() == terms_gpu.keys()
    for key in terms_cpu:
        torch.testing.assert_close(terms_gpu[key], terms_cpu[key], rtol=1e-4, atol=1e-6)
    for got, expected in zip(grads_gpu, grads_cpu, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("tile_elements", [None, 3 * 7 * 50])
def test_alignment_on_cuda_equals_the_materialised_form(tile_elements, monkeypatch) -> None:
    if tile_elements is not None:  # several row tiles with a remainder, as on a CPU
        monkeypatch.setitem(alignment.TILE_ELEMENTS, "cuda", tile_elements)
    generator = torch.Generator().manual_seed(7)
    h, p, ht, pt = (torch.randn(3, 50, 16, generator=generator, dtype=torch.float64) for _ in range(4))
    results = []
    for losses, device in ((alignment_losses, CUDA), (alignment_losses_autograd, torch.device("cpu"))):
        hh, pp = h.to(device).requires_grad_(), p.to(device).requires_grad_()
        mcs, icm = losses(hh, pp, ht.to(device), pt.to(device), 0.2)
        grads = torch.autograd.grad(0.3 * mcs + 1.7 * icm, (hh, pp))
        results.append([x.detach().cpu() for x in (mcs, icm, *grads)])
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected)


def test_full_ranking_on_cuda_equals_the_cpu() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 120
    users_emb, items_emb = torch.randn(n_users, 16), torch.randn(n_items, 16)
    train = sp.random(n_users, n_items, density=0.05, format="csr", random_state=1)
    test = sp.random(n_users, n_items, density=0.03, format="csr", random_state=2)
    test = test - test.multiply(train.astype(bool))
    test.eliminate_zeros()
    results = {}
    for device in ("cpu", "cuda"):
        u, i = users_emb.to(device), items_emb.to(device)
        results[device] = full_ranking(lambda rows, u=u, i=i: u[rows] @ i.T, test, train, ks=(5, 20),
                                       chunk_size=int(rng.integers(40, 90)), device=device)
    cpu, gpu = results["cpu"], results["cuda"]
    np.testing.assert_array_equal(gpu.users, cpu.users)
    for k in (5, 20):
        np.testing.assert_allclose(gpu.recall[k], cpu.recall[k])
        np.testing.assert_allclose(gpu.ndcg[k], cpu.ndcg[k])


def test_train_on_cuda_through_the_cli(demo_workspace) -> None:
    ws = str(demo_workspace)
    random_text_vectors(Workspace(demo_workspace), "demo-random")
    common = ["--epochs", "2", "--eval-every", "1", "--device", "cuda", "-w", ws, "--json"]
    base = run_cli("train", "-d", "demo", "-m", "lightgcn", "--seed", "31", *common)
    assert base.exit_code == 0, base.output
    with_plugin = run_cli("train", "-d", "demo", "-m", "lightgcn", "--seed", "31", "--plugin", "lmmrec",
                          "-e", "demo-random", "--plugin-param", "prototypes=16", *common)
    assert with_plugin.exit_code == 0, with_plugin.output
    for result in (base, with_plugin):
        run = json.loads(result.stdout)
        recall = run["metrics"]["test"]["recall@20"]
        assert 0.0 < recall <= 1.0
        evaluated = run_cli("evaluate", run["run"], "-w", ws, "--k", "10", "--device", "cuda", "--json")
        assert evaluated.exit_code == 0, evaluated.output
        cpu = run_cli("evaluate", run["run"], "-w", ws, "--k", "10", "--device", "cpu", "--json")
        got = json.loads(evaluated.stdout)["runs"][0]["metrics"]
        expected = json.loads(cpu.stdout)["runs"][0]["metrics"]
        assert got.keys() == expected.keys()
        for key in got:
            assert got[key] == pytest.approx(expected[key], abs=1e-6)
