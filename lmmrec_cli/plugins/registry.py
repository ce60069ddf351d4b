"""The rival plugins by name, classes loaded: the rows of :data:`lmmrec_cli.catalog.PLUGINS`
marked ``rival`` (every plugin, ``none`` and ``lmmrec`` included: ``plugin_setup.PLUGIN_CLASSES``).

Every plugin class takes ``(model, user_text, item_text, config=None)`` and has a ``Config``
dataclass.
"""

from __future__ import annotations

from lmmrec_cli.catalog import PLUGINS as _ENTRIES
from lmmrec_cli.models.base import Plugin

PLUGINS: dict[str, type[Plugin]] = {entry.name: entry.load() for entry in _ENTRIES if entry.rival}
DESCRIPTIONS: dict[str, str] = {entry.name: entry.description for entry in _ENTRIES if entry.rival}
