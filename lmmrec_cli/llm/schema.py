"""The answer every motivation call must return, and how a model's text is turned into it.

Models wrap JSON in prose or code fences, and servers without structured output do so more
often; ``parse_answer`` finds the first JSON object in the text and checks it against the
schema, raising :class:`AnswerError` with a message short enough to feed back to the model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_MOTIVATIONS = 5
FIELDS = ("active", "passive", "summary", "reasoning")

# Strict structured output: every property required, no extra ones (OpenAI's strict mode
# rejects schemas without additionalProperties false). No maxItems or minLength: not every
# server's strict mode accepts them; the prompt states the limits, the descriptions say what
# a phrase is, and validation (below) enforces both: a phrase is a string with at least two
# letters, never a number; more than five keeps the first five.
MIN_LETTERS = 2
_PHRASE = {
    "type": "string",
    "description": "a short phrase in words (not a number, not a single character)",
}
JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "active": {"type": "array", "items": _PHRASE},
        "passive": {"type": "array", "items": _PHRASE},
        "summary": {"type": "string"},
        "reasoning": {"type": "string"},
    },
    "required": list(FIELDS),
    "additionalProperties": False,
}
SCHEMA_NAME = "motivations"

_CODE_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


class AnswerError(ValueError):
    """The model's text is not a valid answer; the message says why in one sentence."""


@dataclass(frozen=True)
class Answer:
    active: list[str]
    passive: list[str]
    summary: str
    reasoning: str

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "passive": self.passive,
            "summary": self.summary,
            "reasoning": self.reasoning,
        }


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (whole text, a fenced block, or embedded in prose)."""
    stripped = text.strip()
    if not stripped:
        raise AnswerError("the answer was empty")
    candidates = [stripped] + [m.group(1).strip() for m in _CODE_FENCE.finditer(stripped)]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", stripped):
        try:
            value, _ = decoder.raw_decode(stripped, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise AnswerError("the answer contains no JSON object")


def _string_list(data: dict[str, Any], name: str) -> list[str]:
    value = data[name]
    if isinstance(value, str):  # a lone phrase instead of a list: accept, it is unambiguous
        value = [value]
    if not isinstance(value, list):
        raise AnswerError(f'"{name}" must be a list of strings')
    out: list[str] = []
    for element in value:
        if not isinstance(element, str):
            raise AnswerError(f'"{name}" must be a list of strings, found {json.dumps(element)}')
        text = " ".join(element.split())
        if not text:
            continue
        if not is_phrase(text):
            raise AnswerError(
                f'"{name}" must list phrases in words, not numbers or single characters: '
                f"found {json.dumps(text)}"
            )
        if text not in out:
            out.append(text)
    # More than five is a model ignoring the limit, not a wrong answer; keep the first five.
    return out[:MAX_MOTIVATIONS]


def is_phrase(text: str) -> bool:
    """At least two letters: "1", "2.5", "-", "A" are not motivations."""
    return sum(ch.isalpha() for ch in text) >= MIN_LETTERS


def validate_answer(data: Any) -> Answer:
    if not isinstance(data, dict):
        raise AnswerError("the answer must be a JSON object")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise AnswerError("the JSON object lacks " + ", ".join(f'"{m}"' for m in missing))
    summary = data["summary"]
    reasoning = data["reasoning"]
    if not isinstance(summary, str) or not is_phrase(summary):
        raise AnswerError('"summary" must be a sentence in words')
    if not isinstance(reasoning, str):
        raise AnswerError('"reasoning" must be a string')
    active = _string_list(data, "active")
    passive = _string_list(data, "passive")
    if not active:
        raise AnswerError('"active" must list at least one motivation')
    return Answer(active, passive, " ".join(summary.split()), reasoning.strip())


def parse_answer(text: str | None) -> Answer:
    return validate_answer(extract_json_object(text or ""))
