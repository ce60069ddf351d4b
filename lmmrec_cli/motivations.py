"""The motivations artifact: what each item offers/lacks and each user seeks/avoids, as text.

Files in a ``motivations/<name>/<version>/`` directory:

``items.jsonl``   one JSON object per item, in item-index order:
                  ``{"item": 0, "item_id": "...", "active": [...], "passive": [...],
                  "summary": "...", "reasoning": "...", "source": "..."}``
``users.jsonl``   the same per user, with ``"user"`` / ``"user_id"``
``failures.jsonl`` entities without an answer: ``{"kind": "user"|"item", "index": 3, "id": "...",
                  "reason": "..."}`` (no entity is dropped silently)

``source`` says where the text came from: ``"llm:<model>"``, ``"extractive"`` (the LLM-free
approximation), ``"imported:rlmrec"``. ``active`` are motivations that draw the entity in
(sought interests, offered strengths), ``passive`` those that push it away (aversions, flaws),
``summary`` the amassed motivation text that is embedded by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lmmrec_cli.workspace import ArtifactRef, atomic_write_text

ITEMS_FILE = "items.jsonl"
USERS_FILE = "users.jsonl"
FAILURES_FILE = "failures.jsonl"


@dataclass
class Motivation:
    """One entity's motivations. ``index`` is the dataset's user or item index."""

    index: int
    entity_id: str
    active: list[str] = field(default_factory=list)
    passive: list[str] = field(default_factory=list)
    summary: str = ""
    reasoning: str = ""
    source: str = ""

    def to_json(self, kind: str) -> dict:
        # Spelled out rather than dataclasses.asdict, whose deep copy dominated writing
        # 10k+ entities.
        return {
            kind: self.index,
            f"{kind}_id": self.entity_id,
            "active": list(self.active),
            "passive": list(self.passive),
            "summary": self.summary,
            "reasoning": self.reasoning,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, kind: str, data: dict) -> Motivation:
        return cls(
            index=int(data[kind]),
            entity_id=str(data[f"{kind}_id"]),
            active=[str(x) for x in data.get("active", [])],
            passive=[str(x) for x in data.get("passive", [])],
            summary=str(data.get("summary", "")),
            reasoning=str(data.get("reasoning", "")),
            source=str(data.get("source", "")),
        )

    def text(self, fields: str = "summary") -> str:
        """The text to embed: ``summary`` alone, or ``all`` (active + passive + summary)."""
        if fields == "summary":
            return self.summary
        parts = []
        if self.active:
            parts.append("Active motivations: " + "; ".join(self.active) + ".")
        if self.passive:
            parts.append("Passive motivations: " + "; ".join(self.passive) + ".")
        if self.summary:
            parts.append(self.summary)
        return " ".join(parts)


def write_motivations(path: Path, kind: str, motivations: Iterable[Motivation]) -> int:
    lines = [json.dumps(m.to_json(kind), ensure_ascii=False, sort_keys=True) for m in motivations]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def read_motivations(ref: ArtifactRef, kind: str) -> list[Motivation]:
    """All motivations of ``kind`` ("item" or "user") in index order."""
    filename = ITEMS_FILE if kind == "item" else USERS_FILE
    out = []
    with open(ref.path / filename, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                out.append(Motivation.from_json(kind, json.loads(line)))
    return sorted(out, key=lambda m: m.index)
