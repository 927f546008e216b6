"""`wait`: pause the run for a duration or until a moment, holding no worker."""

from datetime import datetime, timedelta

from runs.engine.context import StepContext, StepError, StepOutcome
from workflows.steps import LONG_WAIT_SECONDS_MAX, StepType, object_schema, string


def _check(config):
    if ("seconds" in config) == ("until" in config):
        yield "config needs exactly one of seconds or until"
    seconds = config.get("seconds")
    if isinstance(seconds, str) and "{{" not in seconds:
        yield "config.seconds must be a number or a {{ … }} template"
    until = config.get("until")
    if isinstance(until, str) and "{{" not in until and "{%" not in until:
        try:
            moment = datetime.fromisoformat(until.replace("Z", "+00:00"))
        except ValueError:
            yield f"config.until '{until}' is not an ISO 8601 timestamp"
        else:
            if moment.tzinfo is None:
                yield f"config.until '{until}' needs a time zone (for example a trailing Z)"


def _moment(value, step_id: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise StepError(
                "wait_invalid",
                f"Step '{step_id}' config.until '{value}' is not an ISO 8601 timestamp.",
                retryable=False,
            ) from None
    if moment.tzinfo is None:
        raise StepError(
            "wait_invalid", f"Step '{step_id}' config.until '{value}' needs a time zone.", retryable=False
        )
    return moment


def _target(context: StepContext) -> datetime:
    config = context.config
    if "until" in config:
        return _moment(config["until"], context.step_id)
    seconds = config.get("seconds")
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise StepError(
            "wait_invalid",
            f"Step '{context.step_id}' config.seconds {seconds!r} is not a number.",
            retryable=False,
        ) from None
    if not 0 <= seconds <= LONG_WAIT_SECONDS_MAX:
        raise StepError(
            "wait_invalid",
            f"Step '{context.step_id}' config.seconds must be between 0 and {LONG_WAIT_SECONDS_MAX}.",
            retryable=False,
        )
    return context.now + timedelta(seconds=seconds)


def execute(context: StepContext) -> StepOutcome:
    """First call: park the step until the target time. Woken by the reconciler: report the time waited."""
    if "started_at" not in context.state:
        target = _target(context)
        if target <= context.now:
            return StepOutcome.completed({"waited_seconds": 0})
        state = {"started_at": context.now.isoformat(), "until": target.isoformat()}
        return StepOutcome.suspended(wake_at=target, state=state)
    target = datetime.fromisoformat(context.state["until"])
    if context.now < target:
        return StepOutcome.suspended(wake_at=target, state=context.state)
    started = datetime.fromisoformat(context.state["started_at"])
    return StepOutcome.completed({"waited_seconds": round((context.now - started).total_seconds(), 3)})


STEP_TYPE = StepType(
    name="wait",
    description="Wait `seconds` or `until` a timestamp without holding a worker; output is {waited_seconds}.",
    config_schema=object_schema(
        {
            "seconds": {
                "oneOf": [
                    {"type": "number", "minimum": 0, "maximum": LONG_WAIT_SECONDS_MAX},
                    string(1024, min_length=1),
                ]
            },
            "until": string(1024, min_length=1),
        }
    ),
    check=_check,
    execute=execute,
)
