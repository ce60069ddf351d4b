"""The base models by name, classes loaded: the rows of :data:`lmmrec_cli.catalog.MODELS`."""

from __future__ import annotations

from lmmrec_cli.catalog import MODELS as _ENTRIES
from lmmrec_cli.models.base import BaseModel

MODELS: dict[str, type[BaseModel]] = {entry.name: entry.load() for entry in _ENTRIES}
DESCRIPTIONS: dict[str, str] = {entry.name: entry.description for entry in _ENTRIES}
