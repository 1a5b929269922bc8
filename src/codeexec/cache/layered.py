"""LayeredCache: tiers fastest first, read-through with promotion, write-through.

- A hit in a slower tier is copied into the faster ones (promotion).
- A write goes to every tier, each with its own TTL, jittered so keys written together
  do not expire together.
- A tier that fails (down, slow, garbage) is skipped with a logged warning by a circuit
  breaker and tried again after a cool-down: a cache fault never fails an execution.
- Version-based invalidation: :meth:`LayeredCache.invalidate` bumps a problem's version,
  which the executor puts in its result keys.
- Optional serve-stale-while-revalidate: an entry past its freshness but within
  ``stale_ttl`` is returned marked stale, so the caller can answer now and refresh.
"""

from __future__ import annotations

import contextlib
import logging
import random
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._errors import CacheError
from ._base import MISS, Cache, _Miss, get_each

log = logging.getLogger(__name__)

__all__ = ["CircuitBreaker", "Entry", "LayeredCache"]

_STAMP = struct.Struct("<d")  # fresh-until (epoch seconds) in front of every value


class CircuitBreaker:
    """Closed (use the tier) until ``failures`` errors in a row; then open (skip it)
    for ``cooldown`` seconds; then one trial call decides (half-open)."""

    def __init__(self, failures: int = 1, cooldown: float = 5.0) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self._errors = 0
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def tripped(self) -> bool:
        """At least ``failures`` errors in a row (open, or about to be tried again)."""
        return self._errors >= self.failures

    @property
    def is_open(self) -> bool:
        return self._errors >= self.failures and time.monotonic() < self._open_until

    def allow(self) -> bool:
        if self._errors < self.failures:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._open_until:
                return False
            # Half-open: let this call through, keep the others out meanwhile.
            self._open_until = now + self.cooldown
            return True

    def success(self) -> None:
        if self._errors:
            with self._lock:
                self._errors = 0

    def failure(self) -> None:
        with self._lock:
            self._errors += 1
            if self._errors >= self.failures:
                self._open_until = time.monotonic() + self.cooldown


@attrs.frozen
class Entry:
    """A value found in the cache; ``stale`` if past its freshness (see stale_ttl)."""

    value: bytes
    stale: bool = False
    tier: str = ""


class LayeredCache:
    """Tiers in order, fastest first; see the module docstring.

    :param tiers: :class:`~codeexec.cache.Cache` objects, or ``(cache, ttl)`` pairs to
        give a tier its own result TTL.
    :param result_ttl: seconds a result stays fresh (default 1 h).
    :param meta_ttl: seconds problem metadata (versions) lives (default 24 h).
    :param jitter: expiry is spread by ± this fraction of the TTL.
    :param stale_ttl: seconds past freshness an entry may still be served as stale.
    :param cooldown: seconds a failed tier is skipped before it is tried again.
    """

    def __init__(
        self,
        tiers: Sequence[Cache | tuple[Cache, float]],
        *,
        result_ttl: float = 3600.0,
        meta_ttl: float = 86400.0,
        jitter: float = 0.1,
        stale_ttl: float = 0.0,
        cooldown: float = 5.0,
    ) -> None:
        if not tiers:
            raise CacheError("a LayeredCache needs at least one tier")
        self.tiers: list[Cache] = []
        self._ttls: list[float | None] = []
        for tier in tiers:
            cache, ttl = tier if isinstance(tier, tuple) else (tier, None)
            self.tiers.append(cache)
            self._ttls.append(ttl)
        self.result_ttl = result_ttl
        self.meta_ttl = meta_ttl
        self.jitter = jitter
        self.stale_ttl = stale_ttl
        self.breakers = [CircuitBreaker(cooldown=cooldown) for _ in self.tiers]
        self._pairs = list(zip(self.tiers, self.breakers, strict=True))
        self.name = "layered(" + ",".join(t.name for t in self.tiers) + ")"
        # Tiers other processes see too; versions are read there, never from L1.
        shared = [i for i, t in enumerate(self.tiers) if t.name != "memory"]
        self._shared = shared or list(range(len(self.tiers)))

    # -------------------------------------------------------------- plumbing

    def _call(self, index: int, method: str, *args: Any) -> Any:
        """Call a tier through its breaker; raises _Skipped if it is open or fails."""
        breaker = self.breakers[index]
        if not breaker.allow():
            raise _Skipped
        try:
            result = getattr(self.tiers[index], method)(*args)
        except Exception as exc:  # any backend fault: the tier is skipped, not fatal
            self._failed(index, exc)
            raise _Skipped from exc
        breaker.success()
        return result

    def _failed(self, index: int, exc: Exception) -> None:
        breaker = self.breakers[index]
        breaker.failure()
        log.warning(
            "cache tier %s failed (%s: %s); skipping it for %.0fs",
            self.tiers[index].name,
            type(exc).__name__,
            exc,
            breaker.cooldown,
        )

    def _promote(self, index: int, key: str, raw: bytes, remaining: float) -> None:
        """Copy a hit from tier ``index`` into the faster ones, for what is left of its
        freshness (and no less than a second)."""
        for faster in range(index):
            with contextlib.suppress(_Skipped):
                self._call(faster, "set", key, raw, max(1.0, remaining) + self.stale_ttl)

    def _ttl(self, index: int, ttl: float) -> float:
        own = self._ttls[index]
        base = own if own is not None else ttl
        return base * random.uniform(1 - self.jitter, 1 + self.jitter) + self.stale_ttl

    # -------------------------------------------------------------- values

    def get_entry(self, key: str, *, shared_only: bool = False) -> Entry | None:
        """The freshest copy of ``key`` with its staleness, promoted to faster tiers.

        ``shared_only`` skips in-process tiers (what another process may have changed).
        """
        indexes = self._shared if shared_only else range(len(self.tiers))
        for index in indexes:
            try:
                raw = self._call(index, "get", key)
            except _Skipped:
                continue
            if raw is MISS:
                continue
            try:
                (fresh_until,) = _STAMP.unpack_from(raw)
            except struct.error:
                log.warning("cache tier %s returned garbage for a key", self.tiers[index].name)
                continue
            stale = time.time() > fresh_until
            if stale and time.time() > fresh_until + self.stale_ttl:
                continue
            if index and not shared_only:
                self._promote(index, key, raw, 1.0 if stale else fresh_until - time.time())
            return Entry(raw[_STAMP.size :], stale, self.tiers[index].name)
        return None

    def get(self, key: str) -> bytes | _Miss:
        """A fresh value, or MISS (stale values only through :meth:`get_entry`).

        The hot path of every lookup, so written out flat: an L1 hit is one locked
        dict lookup and a few operations more.
        """
        now = time.time()
        for index, (tier, breaker) in enumerate(self._pairs):
            # _errors is 0 while a tier is healthy: one attribute test, no calls.
            if breaker._errors and breaker.tripped and not breaker.allow():
                continue
            try:
                raw = tier.get(key)
            except Exception as exc:  # any backend fault: the tier is skipped, not fatal
                self._failed(index, exc)
                continue
            if breaker._errors:
                breaker.success()
            if raw is MISS:
                continue
            if len(raw) < _STAMP.size:  # type: ignore[arg-type]
                log.warning("cache tier %s returned garbage for a key", tier.name)
                continue
            (fresh_until,) = _STAMP.unpack_from(raw)  # type: ignore[arg-type]
            if now > fresh_until:
                continue  # stale here; a slower tier may hold a fresher copy
            if index:
                self._promote(index, key, raw, fresh_until - now)  # type: ignore[arg-type]
            return raw[_STAMP.size :]  # type: ignore[index]
        return MISS

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return get_each(self, keys)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Write through every tier that works."""
        base = self.result_ttl if ttl is None else ttl
        for index in range(len(self.tiers)):
            tier_ttl = self._ttl(index, base)
            stamped = _STAMP.pack(time.time() + tier_ttl - self.stale_ttl) + value
            try:
                self._call(index, "set", key, stamped, tier_ttl)
            except _Skipped:
                continue

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        for key, value in items.items():
            self.set(key, value, ttl)

    def delete(self, key: str) -> None:
        for index in range(len(self.tiers)):
            try:
                self._call(index, "delete", key)
            except _Skipped:
                continue

    # -------------------------------------------------------------- versions

    def version(self, problem_id: object) -> int:
        """The current version of a problem's cached results (0 until invalidated)."""
        entry = self.get_entry(f"meta:version:{problem_id}", shared_only=True)
        return 0 if entry is None else int(entry.value)

    def invalidate(self, problem_id: object) -> int:
        """Make every cached result of ``problem_id`` unreachable; returns the new version.

        Results are keyed with the problem's version, so bumping it orphans them (they
        expire on their own). Concurrent invalidations of one problem may collapse
        into one bump, which invalidates all the same.
        """
        new = self.version(problem_id) + 1
        self.set(f"meta:version:{problem_id}", str(new).encode(), self.meta_ttl)
        return new

    def lock(self, key: str, ttl: float = 30.0) -> Any:
        """A cross-process lock from the first tier that offers one (Redis), else None."""
        for index, tier in enumerate(self.tiers):
            make = getattr(tier, "lock", None)
            if make is not None and not self.breakers[index].is_open:
                return make(key, ttl)
        return None

    def close(self) -> None:
        for tier in self.tiers:
            try:
                tier.close()
            except Exception as exc:  # closing a dead tier must not fail close()
                log.warning("closing cache tier %s: %s", tier.name, exc)

    def __repr__(self) -> str:
        return f"LayeredCache({self.tiers!r})"


class _Skipped(Exception):
    """A tier was skipped (breaker open or the call failed)."""
