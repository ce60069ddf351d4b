"""Prompt templates: load an editable set, render it, hash it.

A prompt set is a directory of plain-text templates:

``system.txt``  the system message (shared by the item and the user step)
``item.txt``    the item step; placeholders {title} {description} {reviews} {review_count}
``user.txt``    the user step; placeholders {items} {item_count}
``repair.txt``  (optional) the follow-up sent once when an answer is not valid JSON; {error}

Placeholders are ``{name}`` with a known name; every other brace is left alone, so templates
can show JSON examples without escaping. The default set ships inside the package
(``lmmrec_cli/prompts``) so a pip-installed lmmrec finds it; ``--prompts DIR`` uses another.

Each template's SHA-256 goes into the cache key and the manifest, so editing one template
re-asks exactly the calls that use it.

Untrusted text (reviews, titles, descriptions) is placed inside numbered fences such as
``<<<REVIEW 3>>> ... <<<END REVIEW 3>>>``; any ``<<<`` or ``>>>`` inside the text is broken up
first, so a review can neither close its fence nor forge another one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from lmmrec_cli.errors import InputError, UsageError

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "prompts"

PLACEHOLDERS: dict[str, frozenset[str]] = {
    "system": frozenset(),
    "item": frozenset({"title", "description", "reviews", "review_count"}),
    "user": frozenset({"items", "item_count"}),
    "repair": frozenset({"error"}),
}
REQUIRED: dict[str, frozenset[str]] = {
    "system": frozenset(),
    "item": frozenset({"title", "reviews"}),
    "user": frozenset({"items"}),
    "repair": frozenset({"error"}),
}
_DEFAULT_REPAIR = (
    "Your previous answer could not be used: {error}\n"
    'Reply again with only the JSON object {"active": [...], "passive": [...], '
    '"summary": "...", "reasoning": "..."}.'
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FENCE_LIKE = re.compile(r"<{3,}|>{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NEEDS_REPAIR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|<<<|>>>")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PromptSet:
    """The templates of one prompt directory and their content hashes."""

    directory: Path
    templates: dict[str, str]

    @property
    def hashes(self) -> dict[str, str]:
        return {name: sha256_text(text) for name, text in sorted(self.templates.items())}

    def step_hash(self, step: str) -> str:
        """Hash of everything that shapes one step's requests (system + step + repair)."""
        parts = [self.templates["system"], self.templates[step], self.templates["repair"]]
        return sha256_text("\x1e".join(parts))

    def render(self, name: str, **values: object) -> str:
        known = PLACEHOLDERS[name]

        def substitute(match: re.Match[str]) -> str:
            key = match.group(1)
            return str(values[key]) if key in known else match.group(0)

        return _PLACEHOLDER.sub(substitute, self.templates[name])

    @classmethod
    def load(cls, directory: str | Path | None = None) -> PromptSet:
        base = Path(directory).expanduser() if directory else DEFAULT_DIR
        if not base.is_dir():
            raise UsageError(
                f"prompt directory {base} does not exist",
                hint="give --prompts a directory with system.txt, item.txt and user.txt",
            )
        templates: dict[str, str] = {}
        for name in PLACEHOLDERS:
            path = base / f"{name}.txt"
            if not path.is_file():
                if name == "repair":
                    templates[name] = _DEFAULT_REPAIR
                    continue
                raise UsageError(
                    f"prompt directory {base} has no {name}.txt",
                    hint=f"copy the default set from {DEFAULT_DIR} and edit it",
                )
            text = path.read_text(encoding="utf-8")
            _check_template(path, name, text)
            templates[name] = text
        return cls(base.resolve(), templates)


def _check_template(path: Path, name: str, text: str) -> None:
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _PLACEHOLDER.finditer(line):
            key = match.group(1)
            if key not in PLACEHOLDERS[name]:
                allowed = ", ".join(f"{{{k}}}" for k in sorted(PLACEHOLDERS[name])) or "none"
                raise InputError(
                    path,
                    f"unknown placeholder {{{key}}}",
                    line=number,
                    hint=f"placeholders of {name}.txt: {allowed}",
                )
            seen.add(key)
    missing = REQUIRED[name] - seen
    if missing:
        raise InputError(
            path,
            "missing placeholder " + ", ".join(f"{{{k}}}" for k in sorted(missing)),
            hint="without it the model never sees that data",
        )


# --------------------------------------------------------------------------------------------
# untrusted text


def neutralise(text: str | None, limit: int | None = None) -> str:
    """Untrusted text made safe to place inside a fence: no fence-like runs, no control
    characters, whitespace collapsed, optionally cut to ``limit`` characters."""
    if not text:
        return ""
    text = str(text)
    if _NEEDS_REPAIR.search(text):  # rare: most text needs only its whitespace collapsed
        text = _CONTROL.sub(" ", text)
        text = _FENCE_LIKE.sub(lambda m: " ".join(m.group(0)), text)
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text


def fenced(label: str, number: int, body: str) -> str:
    """A numbered block; ``body`` must already be neutralised."""
    return f"<<<{label} {number}>>>\n{body}\n<<<END {label} {number}>>>"
