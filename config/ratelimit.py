"""Rate limits shared by every web process: per organisation (the plan's per-minute and per-day
limits) and for sign-in attempts (per client IP and per account).

Counters live in Redis when REDIS_URL is set (INCR + EXPIRE in one MULTI/EXEC), otherwise in the
database (RateLimitCounter, one atomic `INSERT … ON CONFLICT DO UPDATE … RETURNING` per hit), so the
limits hold across processes and machines either way. See docs/api-conventions.md."""

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections

from config.context import client_ip
from config.errors import RateLimited
from config.models import RateLimitCounter

MINUTE = 60
DAY = 86_400
PRUNE_EVERY_SECONDS = 60


# Backends ---------------------------------------------------------------------------------------------


class DatabaseCounters:
    """Fixed-window counters in the RateLimitCounter table; expired rows are pruned now and then."""

    _last_prune = 0.0
    _prune_lock = threading.Lock()

    def _upsert_sql(self, connection) -> str:
        q = connection.ops.quote_name
        table = q(RateLimitCounter._meta.db_table)
        return (
            f"INSERT INTO {table} ({q('key')}, {q('window')}, {q('count')}, {q('expires_at')}) "
            f"VALUES (%s, %s, 1, %s) "
            f"ON CONFLICT ({q('key')}, {q('window')}) DO UPDATE SET {q('count')} = {table}.{q('count')} + 1 "
            f"RETURNING {q('count')}"
        )

    def hit(self, key: str, seconds: int, now: float, *, with_previous: bool = True) -> tuple[int, int]:
        """Count one hit; return (count in the current window, count in the previous window or 0)."""
        start = int(now // seconds) * seconds
        connection = connections["default"]
        with connection.cursor() as cursor:
            cursor.execute(self._upsert_sql(connection), [key, start, start + 2 * seconds])
            current = cursor.fetchone()[0]
        self._maybe_prune()
        if not with_previous:
            return current, 0
        previous = (
            RateLimitCounter.objects.filter(key=key, window=start - seconds)
            .values_list("count", flat=True)
            .first()
        )
        return current, previous or 0

    def peek(self, key: str, seconds: int, now: float) -> tuple[int, int]:
        start = int(now // seconds) * seconds
        rows = dict(
            RateLimitCounter.objects.filter(key=key, window__in=[start, start - seconds]).values_list(
                "window", "count"
            )
        )
        return rows.get(start, 0), rows.get(start - seconds, 0)

    def clear(self, key: str, seconds: int, now: float) -> None:
        RateLimitCounter.objects.filter(key=key).delete()

    def clear_all(self) -> None:
        RateLimitCounter.objects.all().delete()

    def _maybe_prune(self) -> None:
        now = time.time()
        cls = type(self)
        if now - cls._last_prune < PRUNE_EVERY_SECONDS or not cls._prune_lock.acquire(blocking=False):
            return
        try:
            cls._last_prune = now
            prune_expired_counters(now)
        finally:
            cls._prune_lock.release()


def prune_expired_counters(now: float | None = None) -> int:
    """Delete database counters whose window is over; return how many rows went."""
    deleted, _ = RateLimitCounter.objects.filter(expires_at__lt=int(now or time.time())).delete()
    return deleted


class RedisCounters:
    """Fixed-window counters in Redis: INCR and EXPIRE run in one MULTI/EXEC transaction."""

    _clients: dict = {}

    def __init__(self, url: str):
        client = self._clients.get(url)
        if client is None:
            import redis

            client = self._clients[url] = redis.Redis.from_url(
                url, socket_timeout=5, socket_connect_timeout=5
            )
        self.client = client

    @staticmethod
    def _namespace() -> str:
        # Several installations (or parallel test runs) may share one Redis: keys carry the database name.
        name = str(connections["default"].settings_dict.get("NAME") or "")
        return "baton:" + hashlib.sha256(name.encode()).hexdigest()[:10] + ":rl:"

    def _key(self, key: str, seconds: int, start: int) -> str:
        return f"{self._namespace()}{key}:{start}"

    def hit(self, key: str, seconds: int, now: float, *, with_previous: bool = True) -> tuple[int, int]:
        start = int(now // seconds) * seconds
        current_key = self._key(key, seconds, start)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(current_key)
        pipe.expire(current_key, 2 * seconds + 1)
        if with_previous:
            pipe.get(self._key(key, seconds, start - seconds))
        results = pipe.execute()
        return int(results[0]), int(results[2] or 0) if with_previous else 0

    def peek(self, key: str, seconds: int, now: float) -> tuple[int, int]:
        start = int(now // seconds) * seconds
        current, previous = self.client.mget(
            [self._key(key, seconds, start), self._key(key, seconds, start - seconds)]
        )
        return int(current or 0), int(previous or 0)

    def clear(self, key: str, seconds: int, now: float) -> None:
        start = int(now // seconds) * seconds
        self.client.delete(self._key(key, seconds, start), self._key(key, seconds, start - seconds))

    def clear_all(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self._namespace()}*", count=1000))
        for offset in range(0, len(keys), 500):
            self.client.delete(*keys[offset : offset + 500])


def counters():
    """The configured backend: Redis when REDIS_URL is set, else the database."""
    if settings.REDIS_URL:
        return RedisCounters(settings.REDIS_URL)
    return DatabaseCounters()


def reset_rate_limits() -> None:
    """Forget every counter of this installation (tests; an operator lifting a lock-out)."""
    counters().clear_all()


# Organisation limits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowUsage:
    limit: int
    seconds: int
    count: int
    reset_at: int  # Unix seconds when this window's counter starts again

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit


@dataclass(frozen=True)
class RateLimitState:
    """An organisation's usage after this request; `headers()` are what the response carries.
    No windows means an unlimited plan: no rate-limit headers at all."""

    windows: list[WindowUsage] = field(default_factory=list)
    now: float = field(default_factory=time.time)

    @property
    def binding(self) -> WindowUsage | None:
        """The most restrictive window: fewest requests left, then the one that resets last."""
        if not self.windows:
            return None
        return min(self.windows, key=lambda w: (w.remaining, -w.reset_at))

    @property
    def exceeded(self) -> bool:
        return any(w.exceeded for w in self.windows)

    @property
    def retry_after(self) -> int:
        waits = [w.reset_at - self.now for w in self.windows if w.exceeded]
        return max(1, math.ceil(max(waits))) if waits else 0

    def headers(self) -> dict[str, str]:
        window = self.binding
        if window is None:
            return {}
        if self.exceeded:
            window = max((w for w in self.windows if w.exceeded), key=lambda w: w.reset_at)
        reset_in = max(0, math.ceil(window.reset_at - self.now))
        return {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-RateLimit-Reset": str(window.reset_at),
            "RateLimit": f"limit={window.limit}, remaining={window.remaining}, reset={reset_in}",
            "RateLimit-Policy": ", ".join(f"{w.limit};w={w.seconds}" for w in self.windows),
        }


def organization_windows(organization) -> list[tuple[int, int]]:
    """(limit, seconds) for each limited window of the organisation; empty when unlimited."""
    pairs = [(organization.rate_per_minute, MINUTE), (organization.rate_per_day, DAY)]
    return [(limit, seconds) for limit, seconds in pairs if limit is not None]


def organization_hit(organization, now: float | None = None) -> RateLimitState:
    """Count one request of the organisation in each of its windows and return the resulting state."""
    now = time.time() if now is None else now
    backend = counters()
    usages = []
    for limit, seconds in organization_windows(organization):
        count, _ = backend.hit(f"org:{organization.pk}:{seconds}", seconds, now, with_previous=False)
        reset_at = (int(now // seconds) + 1) * seconds
        usages.append(WindowUsage(limit=limit, seconds=seconds, count=count, reset_at=reset_at))
    return RateLimitState(windows=usages, now=now)


# Sign-in attempts ----------------------------------------------------------------------------------------


def _sliding_count(current: int, previous: int, now: float, seconds: int) -> float:
    """Sliding-window estimate: the previous window weighted by how much of it still overlaps."""
    elapsed = now % seconds
    return current + previous * (1 - elapsed / seconds)


def _sliding_retry_after(current: int, previous: int, now: float, seconds: int, allowed: int) -> int:
    """Seconds until the sliding estimate falls to `allowed` (assuming no further hits)."""
    elapsed = now % seconds
    if current <= allowed and previous > 0:
        wait = seconds * (1 - (allowed - current) / previous) - elapsed
        if wait < seconds - elapsed:
            return max(1, math.ceil(wait - 1e-9))
    into_next = seconds * (1 - allowed / current) if current > allowed else 0
    return max(1, math.ceil(seconds - elapsed + into_next - 1e-9))


def _client_key(request) -> str:
    return f"login:ip:{client_ip(request) or 'unknown'}"


def _account_key(email: str) -> str:
    digest = hashlib.sha256((email or "").strip().lower().encode()).hexdigest()[:32]
    return f"login:acct:{digest}"


def login_check(request, email: str) -> None:
    """Call before checking a password. Counts the attempt for the client IP and raises RateLimited
    (with retry_after) when the IP made too many attempts, or the account has too many recent
    failures, within BATON_LOGIN_LIMIT_WINDOW seconds."""
    window = settings.BATON_LOGIN_LIMIT_WINDOW
    backend = counters()
    now = time.time()
    current, previous = backend.hit(_client_key(request), window, now)
    per_ip = settings.BATON_LOGIN_LIMIT_PER_IP
    if _sliding_count(current, previous, now, window) > per_ip:
        retry = _sliding_retry_after(current, previous, now, window, per_ip - 1)
        raise RateLimited(
            "rate_limited",
            f"Too many sign-in attempts from this address. Retry in {retry} seconds.",
            retry_after=retry,
        )
    current, previous = backend.peek(_account_key(email), window, now)
    per_account = settings.BATON_LOGIN_LIMIT_PER_ACCOUNT
    if _sliding_count(current, previous, now, window) >= per_account:
        retry = _sliding_retry_after(current, previous, now, window, per_account - 1)
        raise RateLimited(
            "rate_limited",
            f"Too many failed sign-in attempts for this account. Retry in {retry} seconds.",
            retry_after=retry,
        )


def login_failed(request, email: str) -> None:
    """Count a failed sign-in (wrong password, unknown or inactive account) against the account."""
    counters().hit(_account_key(email), settings.BATON_LOGIN_LIMIT_WINDOW, time.time())


def login_succeeded(request, email: str) -> None:
    """A correct password clears the account's failure count (the IP count stays)."""
    counters().clear(_account_key(email), settings.BATON_LOGIN_LIMIT_WINDOW, time.time())
