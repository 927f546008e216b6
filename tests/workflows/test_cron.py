"""Cron expressions and fire times across daylight-saving changes (workflows/cron.py, docs/schedules.md)."""

from datetime import UTC, datetime

import pytest

from workflows import cron


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def fires(expression, tz, after, count):
    times = []
    for moment in cron.iter_fire_times(expression, tz, utc(after)):
        times.append(moment.strftime("%Y-%m-%dT%H:%MZ"))
        if len(times) == count:
            return times
    return times


# (expression, zone, start (UTC), the next fire times (UTC)): the rule in docs/schedules.md.
DST_CASES = [
    # Spring forward, wall-clock expression: 02:30 does not exist on the change day → the first minute
    # after the gap (03:00 local), then 02:30 again on the next days.
    ("30 2 * * *", "America/New_York", "2026-03-07T12:00Z",
     ["2026-03-08T07:00Z", "2026-03-09T06:30Z", "2026-03-10T06:30Z"]),
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00Z",
     ["2026-03-29T01:00Z", "2026-03-30T00:30Z"]),
    ("0 2 * * *", "Australia/Sydney", "2026-10-03T00:00Z",  # Sydney springs forward at 02:00 on Oct 4
     ["2026-10-03T16:00Z", "2026-10-04T15:00Z"]),
    # Fall back, wall-clock expression: 01:30 happens twice → fires once, at the first (daylight) one.
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00Z",
     ["2026-11-01T05:30Z", "2026-11-02T06:30Z"]),
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00Z",
     ["2026-10-25T00:30Z", "2026-10-26T01:30Z"]),
    ("30 2 * * *", "Australia/Sydney", "2026-04-04T00:00Z",  # Sydney falls back at 03:00 on Apr 5
     ["2026-04-04T15:30Z", "2026-04-05T16:30Z"]),
    # Started inside the repeated hour, after the first 01:30 passed: the second one does not fire.
    ("30 1 * * *", "America/New_York", "2026-11-01T06:10Z", ["2026-11-02T06:30Z"]),
    # Interval expressions follow elapsed time: nothing in the gap, the repeated hour fires again.
    ("30 * * * *", "America/New_York", "2026-03-08T05:00Z",
     ["2026-03-08T05:30Z", "2026-03-08T06:30Z", "2026-03-08T07:30Z"]),
    ("0 * * * *", "America/New_York", "2026-11-01T04:30Z",
     ["2026-11-01T05:00Z", "2026-11-01T06:00Z", "2026-11-01T07:00Z"]),
    ("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:10Z",
     ["2026-10-25T00:30Z", "2026-10-25T01:00Z", "2026-10-25T01:30Z", "2026-10-25T02:00Z"]),
    # No daylight saving: plain.
    ("0 9 * * 1-5", "Asia/Tokyo", "2026-03-06T12:00Z", ["2026-03-09T00:00Z", "2026-03-10T00:00Z"]),
    ("@daily", "UTC", "2026-03-08T00:00Z", ["2026-03-09T00:00Z"]),
]  # fmt: skip


@pytest.mark.parametrize(("expression", "tz", "start", "expected"), DST_CASES)
def test_fire_times_follow_the_daylight_saving_rule(expression, tz, start, expected):
    assert fires(expression, tz, start, len(expected)) == expected


@pytest.mark.parametrize(
    ("alias", "five_fields"),
    [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
     ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
     ("@annually", "0 0 1 1 *"), ("@DAILY", "0 0 * * *")],
)  # fmt: skip
def test_aliases_expand_to_five_fields(alias, five_fields):
    assert cron.normalize(alias) == five_fields


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("61 * * * *", "minute field '61'"),
        ("* * *", "has 3 field(s)"),
        ("0 0 * * * *", "has 6 field(s)"),
        ("0 0 L * *", "day-of-month field 'L'"),
        ("0 0 * * 1#2", "day-of-week field '1#2'"),
        ("@reboot", "Unknown cron alias"),
        ("0 0 30 2 *", "day-of-month field '30'"),
        ("", "non-empty"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression, says):
    with pytest.raises(cron.CronError) as caught:
        cron.normalize(expression)
    assert says in str(caught.value)


def test_names_of_months_and_days_are_accepted():
    assert cron.normalize("0 9 * JAN-MAR mon-fri") == "0 9 * JAN-MAR mon-fri"


def test_unknown_zone_is_refused_with_a_sentence():
    with pytest.raises(cron.CronError, match="Unknown time zone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")


def test_shortest_interval_sees_gaps_inside_a_day():
    assert cron.shortest_interval("0,1 9 * * *", "UTC", utc("2026-01-01T00:00Z")) == 60
    assert cron.shortest_interval("@hourly", "UTC", utc("2026-01-01T00:00Z")) == 3600


def test_fire_times_between_includes_both_ends_and_reports_overflow():
    times = cron.fire_times_between(
        "0 * * * *", "UTC", utc("2026-01-01T00:00Z"), utc("2026-01-01T03:00Z"), limit=10
    )
    assert [t.hour for t in times] == [0, 1, 2, 3]
    more = cron.fire_times_between(
        "0 * * * *", "UTC", utc("2026-01-01T00:00Z"), utc("2026-01-02T00:00Z"), limit=5
    )
    assert len(more) == 6  # limit + 1: the caller can tell the window holds more
