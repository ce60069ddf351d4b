"""Plugins for training runs: registry name + settings + text vectors → the trainer's factory.

The plugins themselves (``plugins/``) know nothing of the workspace; this module reads the
embeddings artifact a plugin consumes, checks it fits the dataset, and hands the trainer a
:class:`PluginSpec` whose settings (plugin config + embeddings version) are
hashed into the run's version and whose parents put the embeddings in the run's lineage.
:func:`lmmrec_cli.runs.load_run` rebuilds the same plugin from the stored settings through
:func:`build_spec`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lmmrec_cli.catalog import PLUGINS
from lmmrec_cli.config import apply_overrides
from lmmrec_cli.embeddings import WARN_MISSING, read_vectors
from lmmrec_cli.errors import UsageError
from lmmrec_cli.models.base import NoPlugin, Plugin
from lmmrec_cli.workspace import ArtifactRef, Workspace

if typing.TYPE_CHECKING:
    from lmmrec_cli.models.base import BaseModel
    from lmmrec_cli.models.graph import Graph


@dataclass
class PluginSpec:
    """A plugin to train with: its name and settings (hashed into the run version) and a
    factory ``(graph, model) -> Plugin``."""

    name: str
    settings: dict[str, Any]
    factory: Callable[[Graph, BaseModel], Plugin]
    parents: list[ArtifactRef] = dataclasses.field(default_factory=list)
    """Artifacts the plugin reads (its text vectors), recorded in the run's lineage."""


NO_PLUGIN = PluginSpec("none", {}, lambda graph, model: NoPlugin())

PLUGIN_CLASSES: dict[str, type[Plugin]] = {entry.name: entry.load() for entry in PLUGINS}


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
    return apply_overrides(cls.Config(), overrides or {}, owner=f"plugin {name}", flag="--plugin-param")


def reads_text(name: str, config: Any) -> bool:
    """Whether the plugin consumes text vectors (LMMRec w/o TM does not)."""
    return name != "none" and getattr(config, "use_text", True)


def build_spec(name: str, config: Any, embeddings: ArtifactRef | None) -> PluginSpec:
    """The spec of plugin ``name`` with its Config instance and the text vectors it reads."""
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
        try:
            return cls(model, user_text, item_text, config)
        except ValueError as error:  # a plugin rejecting a combination of its settings
            raise UsageError(f"plugin {name}: {error}") from None

    return PluginSpec(name, settings, factory, parents=[embeddings] if embeddings else [])


def plugin_spec(
    workspace: Workspace, name: str, *, embeddings: str | None, overrides: dict[str, str] | None = None
) -> PluginSpec:
    """The spec for ``lmmrec train --plugin NAME [--embeddings E] [--plugin-param k=v ...]``."""
    config = plugin_config(name, overrides)
    if not reads_text(name, config):
        return build_spec(name, config, None)
    if embeddings is None:
        raise UsageError(
            f"--plugin {name} reads text vectors: pass --embeddings NAME",
            hint="make them with `lmmrec motivate` then `lmmrec embed`",
        )
    ref = workspace.resolve("embeddings", embeddings)
    _warn_missing_text(ref)
    return build_spec(name, config, ref)


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
