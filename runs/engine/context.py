"""The step-handler interface: what a handler receives (`StepContext`) and returns (`StepOutcome`).

Pure Python (no models, no HTTP): a handler is `execute(context: StepContext) -> StepOutcome`, registered
on its `StepType` in `runs/engine/steps/<type>.py`. The engine resolves the config's templates before the
call, runs the handler outside any database transaction, and records the outcome. See docs/engine.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class StepError(Exception):
    """A step failed with an error code and a sentence. `retryable` False skips the retry policy."""

    def __init__(self, code: str, message: str, *, retryable: bool = True, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = details or {}

    def as_dict(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return error


@dataclass(frozen=True)
class StepContext:
    """Everything a handler may use. `config` is resolved (templates rendered, expressions evaluated),
    except the type's literal fields and a loop's inline `step`, which stay as written."""

    run_id: str
    step_run_id: str
    step_id: str
    step_type: str
    config: Mapping[str, Any]
    step: Mapping[str, Any]  # the step as written in the definition
    attempt: int
    deadline: datetime  # the attempt must finish by then (step `timeout_seconds`, or the lease)
    now: datetime
    dry_run: bool
    # Template variables (inputs, steps, run, env, and item/index inside a loop) for handlers that render
    # more templates themselves.
    variables: Mapping[str, Any]
    # Durable handler state: what the previous suspension of this step saved (empty the first time).
    state: Mapping[str, Any] = field(default_factory=dict)
    organization_id: str = ""
    render: Callable[[Any], Any] | None = None  # render(value) with `variables`
    run_model: str = ""  # the trigger's `model` override for agent steps ("" = none)
    # True once the run was terminated (or this worker lost the step's lease): a long handler polls it and
    # stops early (the script handler kills its process group). Cheap: it reads a flag the engine's step
    # monitor sets, never the database. Cooperative cancel does not set it (running steps finish).
    should_stop: Callable[[], bool] = field(default=lambda: False)


@dataclass(frozen=True)
class StepOutcome:
    """What a handler returns. Build it with the class methods."""

    kind: str  # "completed" | "suspended" | "end_run" | "spawn_iterations"
    output: Any = None
    wake_at: datetime | None = None  # suspended: when the reconciler wakes the step again
    state: Mapping[str, Any] = field(default_factory=dict)
    run_status: str | None = None  # end_run: "completed" | "failed"
    message: str = ""  # end_run failed: the run's error message
    items: list | None = None  # spawn_iterations: one child step run per item
    tokens: Mapping[str, int] | None = None
    cost_usd: float | None = None
    # Merged into the step run's stored `input_data` (the resolved config), e.g. an agent step's resolved
    # prompt and model. A StepError may carry the same as its `input_extra` attribute.
    input_extra: Mapping[str, Any] | None = None

    @classmethod
    def completed(
        cls, output: Any = None, *, tokens: Mapping[str, int] | None = None, cost_usd=None, input_extra=None
    ):
        return cls(kind="completed", output=output, tokens=tokens, cost_usd=cost_usd, input_extra=input_extra)

    @classmethod
    def suspended(cls, *, wake_at: datetime | None, state: Mapping[str, Any] | None = None):
        """Park the step as `waiting` (no worker held) until `wake_at` (None: until the engine resumes it)."""
        return cls(kind="suspended", wake_at=wake_at, state=dict(state or {}))

    @classmethod
    def end_run(cls, *, status: str, output: Any = None, message: str = ""):
        return cls(kind="end_run", run_status=status, output=output, message=message)

    @classmethod
    def spawn_iterations(cls, items: list):
        return cls(kind="spawn_iterations", items=list(items))
