"""Keep secrets out of manifests, logs and error messages.

API keys reach lmmrec only through environment variables, but a user may still paste one into
a command line or a base URL (``https://user:key@host``). Anything recorded about an invocation
passes through here first.
"""

from __future__ import annotations

import re

_KEY_PATTERN = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-]{8,}")
_BEARER_PATTERN = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9_\-\.=]{8,}")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@\s]+@")
# A flag whose value is a secret: its last word names one (--api-key, --token, --auth-token,
# --client-secret, --password). Not a setting that merely mentions one: --max-tokens counts
# tokens, --api-key-env names a variable, --tokens-per-minute is a rate.
_SECRET_FLAG = re.compile(
    r"(?i)^--?(?:[a-z0-9]+[-_])*(?:key|apikey|token|secret|password|passwd|credentials?)$"
)
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token)=)[^&\s]+")

MASK = "***"


def redact_text(text: str) -> str:
    """Mask API keys, bearer tokens, URL credentials and key-like query parameters."""
    text = _KEY_PATTERN.sub(MASK, text)
    text = _BEARER_PATTERN.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{MASK}", text)


def redact_argv(argv: list[str]) -> list[str]:
    """A command line fit for a manifest: values of secret-named flags are masked.

    Flags such as ``--api-key-env`` name an environment variable, not a secret, so only the
    value that *looks* like a key is masked there; flags whose value is the secret itself
    (``--api-key``, ``--token``) are masked whatever their value.
    """
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        flag, sep, value = arg.partition("=")
        if _SECRET_FLAG.match(flag):
            if sep:
                out.append(f"{flag}={MASK}")
            else:
                out.append(arg)
                mask_next = True
            continue
        out.append(redact_text(arg))
    return out
