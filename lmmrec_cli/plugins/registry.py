"""The plugin registry: an explicit name → class table (no imports by string).

Every plugin class takes ``(model, user_text, item_text, config=None)`` and has a ``Config``
dataclass. The lead adds ``lmmrec`` and ``none`` (``models.base.NoPlugin``).
"""

from __future__ import annotations

from lmmrec_cli.models.base import Plugin
from lmmrec_cli.plugins.autograph import AutoGraph
from lmmrec_cli.plugins.once import ONCE
from lmmrec_cli.plugins.rlmrec_con import RLMRecCon
from lmmrec_cli.plugins.uist import UIST

PLUGINS: dict[str, type[Plugin]] = {
    "rlmrec-con": RLMRecCon,
    "uist": UIST,
    "once": ONCE,
    "autograph": AutoGraph,
}

DESCRIPTIONS: dict[str, str] = {
    "rlmrec-con": "RLMRec-Con: InfoNCE alignment of final embeddings with MLP(text), RLMRec *_plus",
    "uist": "UIST: residual-quantised text tokens as input offsets + prefix-level score mixture",
    "once": "ONCE (DIRE-style): trainable projection of the frozen text added to the ID embeddings",
    "autograph": "AutoGraph: semantic code nodes + sampled co-members -> extra ego embedding",
}
