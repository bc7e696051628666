"""Bounds on JSON a client sends: nesting depth (a deep document exhausts recursion) and NUL
characters (PostgreSQL cannot store them in text or jsonb)."""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 32


def too_deep(value: Any, *, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `value` nests objects/arrays more than `limit` levels (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return False


def has_nul(value: Any) -> bool:
    """True when a string anywhere in `value` (keys included) holds a NUL character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(text: str | bytes, **kwargs) -> Any:
    """json.loads, with a document nested past recursion's reach refused as ValueError."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if too_deep(value):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value
