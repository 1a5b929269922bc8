"""Per-user fairness: a token bucket (rate and burst) and a cap on a user's jobs in
flight (queued or running), so one user cannot starve the rest.

A job is admitted with :meth:`admit` when it is submitted and released with
:meth:`release` when it ends (done, failed or cancelled). Exceeding either bound raises
:class:`~codeexec.RateLimited` with ``retry_after``: when the next token comes, or a
nominal wait for one of the user's jobs to end.

:class:`MemoryFairness` keeps the state in this process (the local pool);
:class:`RedisFairness` keeps it in Redis, atomically (one Lua script), so every host
submitting to the same Celery workers shares one budget per user. Its in-flight set
holds job ids with a deadline, so the jobs of a host that died stop counting when their
deadline passes instead of blocking the user for ever.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import attrs

from .._errors import DispatchError, RateLimited

__all__ = ["Fairness", "MemoryFairness", "RedisFairness", "FairnessPolicy"]


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise DispatchError(f"{attribute.name} must be positive or None, got {value!r}")


@attrs.frozen
class FairnessPolicy:
    """Bounds per user: ``rate`` jobs per second on average with bursts of ``burst``,
    and at most ``max_in_flight`` jobs queued or running at once. None: no bound."""

    rate: float | None = attrs.field(default=None, validator=_positive)
    burst: int = attrs.field(default=10, validator=_positive)
    max_in_flight: int | None = attrs.field(default=None, validator=_positive)
    #: Seconds after which a job still counted in flight stops counting (its host died).
    in_flight_ttl: float = 3600.0


class Fairness(Protocol):
    """What a dispatcher asks of a fairness policy's state."""

    def admit(self, user: str, job_id: str) -> None: ...

    def release(self, user: str, job_id: str) -> None: ...


class MemoryFairness:
    """Fairness state in this process."""

    def __init__(self, policy: FairnessPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)
        self._in_flight: dict[str, set[str]] = {}

    def admit(self, user: str, job_id: str) -> None:
        p = self.policy
        now = time.monotonic()
        with self._lock:
            jobs = self._in_flight.get(user, set())
            if p.max_in_flight is not None and len(jobs) >= p.max_in_flight:
                raise RateLimited(
                    f"user {user!r} has {len(jobs)} jobs in flight (at most {p.max_in_flight})",
                    retry_after=1.0,
                )
            if p.rate is not None:
                tokens, at = self._buckets.get(user, (float(p.burst), now))
                tokens = min(float(p.burst), tokens + (now - at) * p.rate)
                if tokens < 1.0:
                    raise RateLimited(
                        f"user {user!r} is over {p.rate:g} jobs/s (burst {p.burst})",
                        retry_after=(1.0 - tokens) / p.rate,
                    )
                self._buckets[user] = (tokens - 1.0, now)
            if p.max_in_flight is not None:
                self._in_flight.setdefault(user, set()).add(job_id)

    def release(self, user: str, job_id: str) -> None:
        with self._lock:
            jobs = self._in_flight.get(user)
            if jobs is not None:
                jobs.discard(job_id)
                if not jobs:
                    del self._in_flight[user]


# KEYS: bucket, in-flight set. ARGV: now, rate (or -1), burst, max (or -1), job id,
# deadline, key ttl. Returns {0, retry_after, why} or {1}.
_ADMIT = """
local now = tonumber(ARGV[1])
local rate, burst, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if cap >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= cap then return {0, '1.0', 'in_flight', n} end
end
if rate >= 0 then
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then return {0, tostring((1 - tokens) / rate), 'rate', 0} end
  redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'at', now)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
if cap >= 0 then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
return {1, '0', '', 0}
"""


class RedisFairness:
    """Fairness state in Redis, shared by every host that uses the same ``prefix``."""

    def __init__(
        self, policy: FairnessPolicy, client: Any, *, prefix: str = "codeexec:fair:"
    ) -> None:
        self.policy = policy
        self.client = client
        self.prefix = prefix
        self._admit = client.register_script(_ADMIT)

    @classmethod
    def from_url(cls, policy: FairnessPolicy, url: str, **options: Any) -> RedisFairness:
        import redis

        return cls(policy, redis.Redis.from_url(url), **options)

    def admit(self, user: str, job_id: str) -> None:
        p = self.policy
        now = time.time()
        ok, retry_after, why, count = self._admit(
            keys=[f"{self.prefix}bucket:{user}", f"{self.prefix}inflight:{user}"],
            args=[
                now,
                -1 if p.rate is None else p.rate,
                p.burst,
                -1 if p.max_in_flight is None else p.max_in_flight,
                job_id,
                now + p.in_flight_ttl,
                int(p.in_flight_ttl) + 60,
            ],
        )
        if not ok:
            reason = why.decode() if isinstance(why, bytes) else why
            message = (
                f"user {user!r} has {count} jobs in flight (at most {p.max_in_flight})"
                if reason == "in_flight"
                else f"user {user!r} is over {p.rate:g} jobs/s (burst {p.burst})"
            )
            raise RateLimited(message, retry_after=float(retry_after))

    def release(self, user: str, job_id: str) -> None:
        if self.policy.max_in_flight is not None:
            self.client.zrem(f"{self.prefix}inflight:{user}", job_id)
