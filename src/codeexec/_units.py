"""Parsing of human-friendly sizes and durations ("256M", "1.5G", "2s", "500ms")."""

from __future__ import annotations

import math
import re

from ._errors import LimitsError

__all__ = ["parse_duration", "parse_size"]

_SIZE_SUFFIXES = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")
_DURATION_SUFFIXES = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "min": 60.0}


def parse_size(value: object, *, what: str = "size") -> int:
    """Return a byte count from an int or a string such as ``"256M"`` or ``"1.5GiB"``.

    Binary multiples are used throughout (``"1M"`` is 1,048,576 bytes), as judges and
    cgroups do. Raises :class:`LimitsError` for anything negative or unreadable.
    """
    if isinstance(value, bool):
        raise LimitsError(f"{what}: expected a size, got a bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise LimitsError(f"{what}: {value!r} is not a finite size")
        number = int(value)
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        suffix = match.group(2).lower() if match else None
        if match is None or suffix not in _SIZE_SUFFIXES:
            raise LimitsError(
                f"{what}: cannot read {value!r} as a size (use bytes or e.g. '256M', '1G')"
            )
        number = int(float(match.group(1)) * _SIZE_SUFFIXES[suffix])
    else:
        raise LimitsError(f"{what}: expected an int or a string like '256M', got {value!r}")
    if number < 0:
        raise LimitsError(f"{what}: must not be negative, got {value!r}")
    return number


def parse_duration(value: object, *, what: str = "duration") -> float:
    """Return seconds from a number or a string such as ``"2s"`` or ``"500ms"``."""
    if isinstance(value, bool):
        raise LimitsError(f"{what}: expected seconds, got a bool")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = re.match(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*$", value.lower())
        if match is None or match.group(2) not in _DURATION_SUFFIXES:
            raise LimitsError(
                f"{what}: cannot read {value!r} as a duration (e.g. 2, '1.5s', '500ms')"
            )
        seconds = float(match.group(1)) * _DURATION_SUFFIXES[match.group(2)]
    else:
        raise LimitsError(f"{what}: expected seconds, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise LimitsError(f"{what}: must be a non-negative finite number of seconds, got {value!r}")
    return seconds
