"""The shared contract every registered base model passes, plus the graph module's maths."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import dense_adjacency, make_tiny_graph

from lmmrec_cli.models.base import BaseModel
from lmmrec_cli.models.graph import Batch, Graph, NegativeSampler, epoch_batches, low_pass_basis
from lmmrec_cli.models.lightgcn import LightGCN, LightGCNConfig
from lmmrec_cli.models.registry import DESCRIPTIONS, MODELS


def dense_normalised(graph: Graph, gamma: float = 0.5) -> np.ndarray:
    r = np.zeros((graph.n_users, graph.n_items))
    r[graph.train_users.numpy(), graph.train_items.numpy()] = 1.0
    n = graph.n_nodes
    a = np.zeros((n, n))
    a[: graph.n_users, graph.n_users:] = r
    a[graph.n_users:, : graph.n_users] = r.T
    deg = a.sum(1)
    with np.errstate(divide="ignore"):
        left = np.where(deg > 0, deg ** -gamma, 0.0)
        right = np.where(deg > 0, deg ** (gamma - 1.0), 0.0)
    return left[:, None] * a * right[None, :]


def make(name: str, graph: Graph, seed: int = 0, **overrides) -> BaseModel:
    cls = MODELS[name]
    config = dataclasses.replace(cls.Config(), **overrides)
    torch.manual_seed(seed)
    return cls(graph.n_users, graph.n_items, graph, config)


def a_batch(graph: Graph, size: int = 16) -> Batch:
    generator = torch.Generator().manual_seed(1)
    return epoch_batches(graph, NegativeSampler(graph), size, generator, torch.device("cpu"))[0]


# -- the contract --------------------------------------------------------------------------


@pytest.fixture(params=sorted(MODELS))
def model_name(request) -> str:
    return request.param


def test_registry_is_explicit_and_described(model_name):
    cls = MODELS[model_name]
    assert cls.name == model_name and dataclasses.is_dataclass(cls.Config)
    assert model_name in DESCRIPTIONS and cls.__doc__ is not None or cls.__module__


def test_shapes_and_readout(model_name, tiny_graph):
    model = make(model_name, tiny_graph)
    d = model.config.dim
    for training in (True, False):
        emb = model.propagate(training=training)
        assert emb.users.shape == (tiny_graph.n_users, d)
        assert emb.items.shape == (tiny_graph.n_items, d)
        assert emb.ego is not None and emb.ego.shape == (tiny_graph.n_nodes, d)
        assert all(layer.shape == (tiny_graph.n_nodes, d) for layer in emb.layers)
        # the readout handed to plugins reproduces the scoring embeddings exactly
        combined = emb.readout(emb.layers)
        torch.testing.assert_close(combined, torch.cat([emb.users, emb.items]))
    users = torch.tensor([0, 3, 5])
    scores = model.score(users, emb)
    assert scores.shape == (3, tiny_graph.n_items)
    torch.testing.assert_close(scores, emb.users[users] @ emb.items.T)


def test_readout_is_a_scalar_weighted_sum_of_layers(model_name, tiny_graph):
    # The Embeddings contract plugins rely on (LMMRec combines per-layer prototype assignments,
    # which are wider than d): the readout works on layers of any width and commutes with a
    # right product, readout_k(X_k M) = readout_k(X_k) M.
    model = make(model_name, tiny_graph)
    emb = model.propagate(training=False)
    generator = torch.Generator().manual_seed(7)
    wide = [torch.randn(5, 11, generator=generator) for _ in emb.layers]
    right = torch.randn(11, 3, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(emb.readout([x @ right for x in wide]), emb.readout(wide) @ right)


def test_finite_loss_and_gradients_reach_the_embeddings(model_name, tiny_graph):
    model = make(model_name, tiny_graph)
    terms = model.loss(a_batch(tiny_graph), model.propagate(training=True))
    assert "bpr" in terms and "reg" in terms
    for name, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    sum(terms.values()).backward()
    for table in (model.user_embedding, model.item_embedding):
        assert table.grad is not None and table.grad.abs().sum() > 0


def test_ego_offset_enters_propagation_and_receives_gradients(model_name, tiny_graph):
    model = make(model_name, tiny_graph)
    offset = torch.zeros(tiny_graph.n_nodes, model.config.dim, requires_grad=True)
    plain = model.final()
    shifted = model.final(ego_offset=offset + 0.5)
    assert not torch.allclose(plain.users, shifted.users)
    emb = model.propagate(training=True, ego_offset=offset)
    sum(model.loss(a_batch(tiny_graph), emb).values()).backward()
    assert offset.grad is not None and offset.grad.abs().sum() > 0


def test_eval_forward_is_deterministic_and_training_forward_is_not_shared_state(model_name, tiny_graph):
    model = make(model_name, tiny_graph)
    first, second = model.final(), model.final()
    torch.testing.assert_close(first.users, second.users)
    torch.testing.assert_close(first.items, second.items)
    model.propagate(training=True)  # draws dropout / noise; must not change the eval forward
    torch.testing.assert_close(model.final().users, first.users)


def test_state_dict_round_trip(model_name, tiny_graph):
    model = make(model_name, tiny_graph, seed=0)
    other = make(model_name, tiny_graph, seed=1)
    assert not torch.allclose(model.final().users, other.final().users)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.final().users, model.final().users)
    torch.testing.assert_close(other.final().items, model.final().items)


def test_one_adam_step_lowers_the_loss_on_the_same_batch(model_name, tiny_graph):
    model = make(model_name, tiny_graph)
    batch = a_batch(tiny_graph, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def clean_bpr() -> float:
        with torch.no_grad():
            emb = model.final()
            u, p, n = emb.users[batch.users], emb.items[batch.pos], emb.items[batch.neg]
            return float(torch.nn.functional.softplus((u * n).sum(-1) - (u * p).sum(-1)).mean())

    before = clean_bpr()
    for _ in range(20):
        optimizer.zero_grad()
        sum(model.loss(batch, model.propagate(training=True)).values()).backward()
        optimizer.step()
    assert clean_bpr() < before


# -- graph maths ---------------------------------------------------------------------------


def test_normalised_adjacency_equals_dense_reference(tiny_graph):
    expected = dense_normalised(tiny_graph)
    np.testing.assert_allclose(dense_adjacency(tiny_graph).numpy(), expected, rtol=1e-6, atol=1e-7)
    assert expected[tiny_graph.n_users - 1].sum() == 0  # zero-degree row stays 0


@pytest.mark.parametrize("gamma", [0.0, 1.0, 0.3])
def test_generalized_gram_operator_and_its_transpose(tiny_graph, gamma):
    op = tiny_graph.operator(gamma)
    expected = dense_normalised(tiny_graph, gamma)
    np.testing.assert_allclose(op.matrix.to_dense().numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(op.transpose.to_dense().numpy(), expected.T, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", ["rlmrec", "original"])
def test_lightgcn_propagation_equals_dense_computation(tiny_graph, variant):
    torch.manual_seed(0)
    model = LightGCN(tiny_graph.n_users, tiny_graph.n_items, tiny_graph,
                     LightGCNConfig(dim=8, layers=3, variant=variant))
    a_hat = torch.tensor(dense_normalised(tiny_graph), dtype=torch.float64)
    x = torch.cat([model.user_embedding, model.item_embedding]).detach().double()
    layers = [x]
    for _ in range(3):
        layers.append(a_hat @ layers[-1])
    expected = sum(layers) if variant == "rlmrec" else sum(layers) / 4
    emb = model.final()
    np.testing.assert_allclose(torch.cat([emb.users, emb.items]).detach().numpy(),
                               expected.numpy(), rtol=1e-5, atol=1e-6)


def test_sparse_product_gradient_uses_the_transpose(tiny_graph):
    op = tiny_graph.operator(0.0)  # not symmetric: a wrong transpose would show
    x = torch.randn(tiny_graph.n_nodes, 4, requires_grad=True)
    weights = torch.randn(tiny_graph.n_nodes, 4)
    ((op @ x) * weights).sum().backward()
    dense = torch.tensor(dense_normalised(tiny_graph, 0.0), dtype=torch.float32)
    torch.testing.assert_close(x.grad, dense.T @ weights, rtol=1e-5, atol=1e-6)


def test_edge_dropout_keeps_a_subset_without_rescaling(tiny_graph):
    torch.manual_seed(0)
    full = dense_adjacency(tiny_graph)
    assert tiny_graph.edge_dropped(1.0) is tiny_graph.adjacency
    big = make_tiny_graph(60, 50, 900, seed=2)
    dropped = big.edge_dropped(0.5)
    kept = dropped.matrix.to_dense()
    base = dense_adjacency(big)
    nonzero = kept != 0
    assert bool(((base != 0) | ~nonzero).all())  # nothing outside Â's pattern appears
    torch.testing.assert_close(kept[nonzero], base[nonzero])  # values not rescaled
    share = nonzero.sum().item() / (base != 0).sum().item()
    assert 0.4 < share < 0.6
    torch.testing.assert_close(dropped.transpose.to_dense(), kept.T)
    assert not torch.equal(kept, kept.T)  # mirrored entries dropped independently (RLMRec)
    assert full.shape == (tiny_graph.n_nodes, tiny_graph.n_nodes)


def test_low_pass_basis_spans_the_top_eigenvectors():
    graph = make_tiny_graph(30, 20, 120, seed=4)
    dense = dense_normalised(graph)
    values, vectors = np.linalg.eigh(dense)
    rank = 3
    top = vectors[:, np.argsort(values)[::-1][:rank]]
    basis = low_pass_basis(graph.adjacency, rank, graph.n_nodes, iterations=200).double().numpy()
    np.testing.assert_allclose(basis @ basis.T, top @ top.T, atol=1e-4)


def test_negative_sampler_never_returns_a_training_positive():
    graph = make_tiny_graph(20, 6, 80, seed=5)  # dense rows: many rejections needed
    sampler = NegativeSampler(graph)
    generator = torch.Generator().manual_seed(0)
    full_users = [u for u in range(graph.n_users) if (graph.train_users == u).sum() == graph.n_items]
    assert 0 in full_users  # users with every item have no valid negative
    keep = ~torch.isin(graph.train_users, torch.tensor(full_users))
    users = graph.train_users[keep].repeat(20)
    negatives = sampler.sample(users, generator)
    positives = set(zip(graph.train_users.tolist(), graph.train_items.tolist(), strict=True))
    assert not any((u, i) in positives for u, i in zip(users.tolist(), negatives.tolist(), strict=True))
    # a user with every item cannot get a true negative, but sampling still ends
    assert sampler.sample(torch.zeros(5, dtype=torch.long), generator).shape == (5,)


def test_epoch_batches_cover_every_training_pair_once(tiny_graph):
    generator = torch.Generator().manual_seed(0)
    batches = epoch_batches(tiny_graph, NegativeSampler(tiny_graph), 7, generator, torch.device("cpu"))
    pairs = sorted((int(u), int(i)) for b in batches for u, i in zip(b.users, b.pos, strict=True))
    expected = sorted(zip(tiny_graph.train_users.tolist(), tiny_graph.train_items.tolist(), strict=True))
    assert pairs == expected
    assert max(len(b) for b in batches) == 7


# -- learning checks on the demo (issue 17): every graph base must learn, not just run ------

# model: (trainer settings, model settings, BPR factor, floor as a multiple of popularity). The
# settings are the recipes' for small data (README "Base models") with a short budget. Measured
# on the demo, seed 0, one thread (test BPR first -> last epoch; test R@20 / N@20 over popularity's
# .2767 / .1635): LightGCN ÷4.4, 1.03× / 1.04×; PolyCF-E ÷8.1, 1.05× / 1.04×; WeightedGCL (λ 1e-4,
# 45 epochs) ÷3.3, 1.02× / 1.03×; SGL ÷9.3, 0.60× / 0.60×; SimGCL ÷10.8, 0.66× / 0.64×. A base
# that does not learn stays far below: WeightedGCL under its paper's lr 1e-4 / batch 4096 keeps
# BPR at ln 2 and reaches 0.14× popularity's R@10, at λ 1e-3 stopped by RLMRec's rule 0.29×.
# The demo draws visits from long-tailed popularity, so popularity is a strong ranking there;
# SGL's and SimGCL's uniformity objectives work against it (they spread embeddings away from
# popular items), so their floor is half of popularity, which a non-learning base does not reach.
LEARNING: dict[str, tuple[dict, dict, float, float]] = {
    "lightgcn": ({"epochs": 30, "patience": 3}, {}, 3.0, 1.01),
    "polycf": ({"epochs": 30, "patience": 3}, {}, 4.0, 1.01),
    "weightedgcl": ({"epochs": 45, "patience": 3, "lr": 3e-3, "batch_size": 512}, {"cl_weight": 1e-4}, 2.5, 1.01),
    "sgl": ({"epochs": 30, "patience": 3}, {}, 5.0, 0.5),
    "simgcl": ({"epochs": 30, "patience": 3}, {}, 5.0, 0.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(LEARNING))
def test_base_model_learns_on_the_demo(demo_workspace, model):
    from conftest import popularity

    from lmmrec_cli.config import TrainConfig
    from lmmrec_cli.runs import LOG_FILE
    from lmmrec_cli.train import train
    from lmmrec_cli.workspace import Workspace

    train_settings, model_settings, factor, floor = LEARNING[model]
    ws = Workspace(demo_workspace)
    settings = dataclasses.replace(MODELS[model].Config(), **model_settings)
    config = TrainConfig(device="cpu", threads=1, seed=0, **train_settings)
    result = train(ws, dataset="demo", model=model, model_settings=settings, config=config,
                   name=f"demo-{model}-learning-check")
    log = [json.loads(line) for line in (result.ref.path / LOG_FILE).read_text().splitlines()]
    first, last = log[0]["loss"]["bpr"], log[-1]["loss"]["bpr"]
    assert last <= first / factor, f"{model}: BPR {first:.4f} -> {last:.4f}, not ÷{factor}"
    pop, test = popularity(ws, ks=(20,)), result.metrics["test"]
    for metric in ("recall@20", "ndcg@20"):
        assert test[metric] >= pop[metric] * floor, (model, metric, test[metric], pop[metric])
