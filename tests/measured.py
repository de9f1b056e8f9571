"""Checks shared by the benchmark tests: every number a results document measured is sane."""

from __future__ import annotations

import math
from collections.abc import Iterator


def numbers(obj: object, path: str = "") -> Iterator[tuple[str, float]]:
    """Yield ``(json_path, value)`` for every int or float under ``obj`` (booleans are not numbers)."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from numbers(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from numbers(value, f"{path}[{i}]")


def bad_numbers(obj: object) -> list[tuple[str, float]]:
    """The numbers that are NaN, infinite, zero or negative; ``repeat`` is a 0-based index, so 0 is fine there."""
    found = list(numbers(obj))
    assert found, "the document holds no numbers at all"
    return [(p, v) for p, v in found if not (math.isfinite(v) and (v > 0 or p.endswith("repeat")))]
