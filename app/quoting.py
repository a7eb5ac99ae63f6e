"""How messages quote what a caller sent: a short prefix, never all of it."""

from __future__ import annotations

# Enough to recognise what was sent; more would let a caller write into our pages and logs.
QUOTE_MAX_CHARS = 40


def quote_input(value: object, limit: int = QUOTE_MAX_CHARS) -> str:
    """Return the value in quotes, cut to its first `limit` characters with "…" when longer."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"“{text}”"
