"""Plugins for training runs: registry name + settings + text vectors → the trainer's factory.

The plugins themselves (``plugins/``) know nothing of the workspace; this module reads the
embeddings artifact a plugin consumes, checks it fits the dataset, and hands the trainer a
:class:`~lmmrec_cli.train.PluginSpec` whose settings (plugin config + embeddings version) are
hashed into the run's version and whose parents put the embeddings in the run's lineage.
``load_run`` rebuilds the same plugin from the stored settings through :func:`resolver`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from lmmrec_cli.config import apply_overrides
from lmmrec_cli.embeddings import WARN_MISSING, read_vectors
from lmmrec_cli.errors import UsageError
from lmmrec_cli.models.base import NoPlugin, Plugin
from lmmrec_cli.plugins.lmmrec import LMMRecPlugin
from lmmrec_cli.plugins.registry import DESCRIPTIONS as RIVAL_DESCRIPTIONS
from lmmrec_cli.plugins.registry import PLUGINS as RIVALS
from lmmrec_cli.train import NO_PLUGIN, PluginResolver, PluginSpec, json_tuples
from lmmrec_cli.workspace import ArtifactRef, Workspace

PLUGIN_CLASSES: dict[str, type[Plugin]] = {"none": NoPlugin, "lmmrec": LMMRecPlugin, **RIVALS}
DESCRIPTIONS: dict[str, str] = {
    "none": "the base model alone",
    "lmmrec": "LMMRec: motivation prototypes, MCS contrast and ICM momentum distillation",
    **RIVAL_DESCRIPTIONS,
}


def plugin_class(name: str) -> type[Plugin]:
    try:
        return PLUGIN_CLASSES[name]
    except KeyError:
        raise UsageError(f"unknown plugin {name!r}", hint=f"known plugins: {', '.join(PLUGIN_CLASSES)}") from None


def plugin_config(name: str, overrides: dict[str, str] | None = None) -> Any:
    cls = plugin_class(name)
    if name == "none":
        if overrides:
            raise UsageError("--plugin-param needs a --plugin")
        return None
    return apply_overrides(cls.Config(), overrides or {}, owner=f"plugin {name}")


def reads_text(name: str, config: Any) -> bool:
    """Whether the plugin consumes text vectors (LMMRec w/o TM does not)."""
    return name != "none" and getattr(config, "use_text", True)


def _spec(name: str, config: Any, embeddings: ArtifactRef | None) -> PluginSpec:
    if name == "none":
        return NO_PLUGIN
    cls = plugin_class(name)
    settings = {
        "config": dataclasses.asdict(config),
        "embeddings": embeddings.as_parent() if embeddings else None,
    }

    def factory(graph, model) -> Plugin:
        user_text = item_text = None
        if embeddings is not None:
            vectors = read_vectors(embeddings, graph.n_users, graph.n_items)
            user_text = torch.from_numpy(vectors.users)
            item_text = torch.from_numpy(vectors.items)
        return cls(model, user_text, item_text, config)

    return PluginSpec(name, settings, factory, parents=[embeddings] if embeddings else [])


def plugin_spec(
    workspace: Workspace, name: str, *, embeddings: str | None, overrides: dict[str, str] | None = None
) -> PluginSpec:
    """The spec for ``lmmrec train --plugin NAME [--embeddings E] [--plugin-param k=v ...]``."""
    config = plugin_config(name, overrides)
    if not reads_text(name, config):
        return _spec(name, config, None)
    if embeddings is None:
        raise UsageError(
            f"--plugin {name} reads text vectors: pass --embeddings NAME",
            hint="make them with `lmmrec motivate` then `lmmrec embed`",
        )
    ref = workspace.resolve("embeddings", embeddings)
    _warn_missing_text(ref)
    return _spec(name, config, ref)


def _warn_missing_text(ref: ArtifactRef) -> None:
    """Rows without text are zero vectors; say how many before they train a text view.
    (``embed`` refused above half of them unless --allow-missing-text was given.)"""
    counts = ref.manifest().get("counts", {})
    rows = counts.get("users", 0) + counts.get("items", 0)
    missing = counts.get("users_missing", 0) + counts.get("items_missing", 0)
    if rows and missing / rows > WARN_MISSING:
        from lmmrec_cli.console import stderr

        stderr.print(
            f"[yellow]warning:[/] {ref.label}: {missing} of {rows} rows ({missing / rows:.0%}) "
            "have no motivation text (zero vectors); the text view sees only the rest"
        )


def resolver(workspace: Workspace) -> PluginResolver:
    """Rebuild the plugin of a stored run from its recorded settings."""

    def resolve(name: str, settings: dict[str, Any]) -> PluginSpec:
        if name == "none":
            return NO_PLUGIN
        cls = plugin_class(name)
        config = cls.Config(**json_tuples(settings.get("config", {})))
        parent = settings.get("embeddings")
        ref = workspace.find("embeddings", parent["name"], parent["version"]) if parent else None
        if parent and ref is None:
            raise UsageError(
                f"the run's text vectors embeddings/{parent['name']}@{parent['version']} are gone from the workspace"
            )
        return _spec(name, config, ref)

    return resolve

