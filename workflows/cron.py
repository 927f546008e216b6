"""Cron expressions and their fire times, in an IANA time zone (cronsim does the arithmetic).

Five fields (minute hour day-of-month month day-of-week) or an alias (`@hourly`, `@daily`, `@midnight`,
`@weekly`, `@monthly`, `@yearly`, `@annually`). Fire times are returned as aware UTC datetimes.

Daylight saving (the rule of cronie and Debian cron, docs/schedules.md "Daylight saving"):
- an expression whose minute and hour fields are both fixed (`30 2 * * *`, `0 9 * * 1-5`) names a wall-clock
  time: a time skipped by the spring-forward gap fires at the first minute after the gap (03:00), and a time
  that occurs twice at fall-back fires once, at its first occurrence;
- an expression with `*` at the start of its minute or hour field (`*/15 * * * *`, `0 * * * *`) follows
  elapsed time: nothing fires inside the gap, and the repeated hour fires again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_EXPRESSION_LENGTH = 120
# How many fire times the minimum-interval check looks at: enough to see every gap of a day's pattern
# (`0,1 9 * * *`) and of minute lists.
INTERVAL_SAMPLE = 200
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_NAMES = {
    3: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    4: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
}
_ONE_SECOND = timedelta(seconds=1)


class CronError(ValueError):
    """A sentence saying what is wrong with a cron expression or a time zone."""


def normalize(expression) -> str:
    """The five-field form of `expression` (aliases expanded, spaces collapsed); CronError when invalid."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("The cron expression must be a non-empty string such as '0 9 * * 1-5'.")
    text = " ".join(expression.split())
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise CronError(f"The cron expression must be at most {MAX_EXPRESSION_LENGTH} characters.")
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError(f"Unknown cron alias '{text}': use one of {', '.join(ALIASES)}.")
        return ALIASES[text.lower()]
    fields = text.split(" ")
    if len(fields) != 5:
        raise CronError(
            f"The cron expression has {len(fields)} field(s); it needs 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'."
        )
    for index, field in enumerate(fields):
        plain = field.upper()
        for name in _NAMES.get(index, ()):
            plain = plain.replace(name, "0")
        if set(plain) - set("0123456789*,/-"):
            raise CronError(
                f"The cron expression's {_FIELDS[index]} field '{field}' is invalid: use numbers, "
                "'*', ranges (1-5), lists (1,3) and steps (*/15)."
            )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        reason = str(exc)
        for index, name in enumerate(_FIELDS):
            if name in reason.lower():
                raise CronError(f"The cron expression's {name} field '{fields[index]}' is invalid.") from None
        raise CronError(f"The cron expression '{text}' is invalid: {reason}.") from None
    return text


def zone(name) -> ZoneInfo:
    """The IANA time zone `name`; CronError when there is no such zone."""
    if not isinstance(name, str) or not name or name not in _zone_names():
        raise CronError(f"Unknown time zone '{name}': use an IANA name such as 'America/New_York' or 'UTC'.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"Unknown time zone '{name}'.") from None


_ZONES: set[str] | None = None


def _zone_names() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones() | {"UTC"}
    return _ZONES


def iter_fire_times(expression: str, tz: str, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after `after` (aware), ascending, as UTC datetimes."""
    after = after.astimezone(UTC)
    # Whole seconds: cronsim drops microseconds, and fire times are whole minutes anyway.
    start = after.replace(microsecond=0).astimezone(zone(tz))
    last = after
    for local in CronSim(normalize(expression), start):
        moment = local.astimezone(UTC)
        # A wall-clock expression started inside a repeated hour could name its first occurrence, which is
        # already past: those are skipped (a repeated time fires once).
        if moment > last:
            last = moment
            yield moment


def next_fire_time(expression: str, tz: str, after: datetime) -> datetime | None:
    """The first fire time strictly after `after`, or None when there is none (a 31st of February)."""
    return next(iter_fire_times(expression, tz, after), None)


def fire_times_between(
    expression: str, tz: str, start: datetime, end: datetime, *, limit: int
) -> list[datetime]:
    """Fire times in [start, end] (at most `limit` + 1, so a caller can tell the window holds more)."""
    times = []
    for moment in iter_fire_times(expression, tz, start - _ONE_SECOND):
        if moment > end or len(times) > limit:
            break
        times.append(moment)
    return times


def shortest_interval(expression: str, tz: str, after: datetime) -> float | None:
    """The shortest gap in seconds between consecutive fire times among the next INTERVAL_SAMPLE ones."""
    previous, shortest = None, None
    for index, moment in enumerate(iter_fire_times(expression, tz, after)):
        if previous is not None:
            gap = (moment - previous).total_seconds()
            shortest = gap if shortest is None else min(shortest, gap)
        previous = moment
        if index >= INTERVAL_SAMPLE:
            break
    return shortest


def previous_fire_times(expression: str, tz: str, now: datetime, since: datetime) -> list[datetime]:
    """Fire times in (since, now], ascending."""
    times = []
    for moment in iter_fire_times(expression, tz, since):
        if moment > now:
            break
        times.append(moment)
    return times
