"""Strict parsing of query parameters: a bad value is a 400 invalid_request naming the parameter in
`details.fields`, never silently a default."""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from django.utils.dateparse import parse_date, parse_datetime

from config.errors import InvalidRequest

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def invalid_parameter(name: str, message: str, *, summary: str | None = None) -> InvalidRequest:
    """The 400 for one bad parameter: `summary` (default "'name': message") and details.fields."""
    return InvalidRequest(
        "invalid_request", summary or f"'{name}': {message}", details={"fields": {name: [message]}}
    )


def refuse_unknown(params: Iterable[str], allowed: Iterable[str]) -> None:
    """400 when a parameter is not one of `allowed` (each unknown one listed in details.fields)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidRequest(
            "invalid_request",
            f"'{unknown[0]}': Unknown parameter.",
            details={"fields": {name: ["Unknown parameter."] for name in unknown}},
        )


def parse_bounded_int(params: Mapping, name: str, default: int, *, minimum: int, maximum: int | None) -> int:
    """An integer parameter within [minimum, maximum]; absent or empty gives `default`."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise invalid_parameter(
            name, "Must be an integer.", summary=f"'{name}' must be an integer."
        ) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise invalid_parameter(name, f"Must be {bound}.", summary=f"'{name}' must be {bound}.")
    return value


def strict_bool(params: Mapping, name: str, default: bool = False) -> bool:
    """A boolean parameter: true/false/1/0/yes/no; anything else is a 400, never silently false."""
    word = (params.get(name) or "").strip().lower()
    if not word:
        return default
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise invalid_parameter(name, "Must be true or false.", summary=f"'{name}' must be true or false.")


def parse_instant(raw: str) -> datetime | None:
    """ISO 8601 (a date means its midnight UTC; no offset means UTC) or Unix seconds → an aware
    datetime; None when the text is neither. Raises OverflowError for Unix seconds out of range."""
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise OverflowError("Unix seconds out of range.") from None
    try:
        moment = parse_datetime(text.replace("z", "Z").replace("Z", "+00:00"))
        if moment is None:
            day = parse_date(text)
            moment = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        moment = None
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
