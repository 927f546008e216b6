"""`approval`: wait until enough people approve (or one rejects), holding no worker (docs/approvals.md).

First execution: the step suspends as `awaiting_approval` (the run shows a `pause_signal`). People decide
through `runs.services.run_decide` (POST /runs/{id}/approve|reject, or /resume `request_user_action`);
a timeout is decided by the reconciler (`runs.engine.waits.step_wake`). Each of them stores the decision in
the step run's `state` under the run lock and, once the outcome is known, requeues the step: this handler then
turns the recorded decisions into the output, or fails the step with `approval_rejected`.
"""

from datetime import timedelta

from runs.engine.context import StepContext, StepError, StepOutcome
from workflows.steps import LONG_WAIT_SECONDS_MAX, StepType, integer, object_schema, string, timeout_seconds

ROLES = ("owner", "admin", "member", "viewer")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _check(config):
    approvers = config.get("approvers") or []
    if approvers and all("@" in approver for approver in approvers):
        required = config.get("required_approvals", 1)
        if required > len(approvers):
            yield (
                f"config.required_approvals is {required} but only {len(approvers)} "
                f"approver{'s are' if len(approvers) != 1 else ' is'} listed"
            )


def execute(context: StepContext) -> StepOutcome:
    """Suspend for approvers the first time; once decided, output {approved, decisions} or fail."""
    state = context.state
    decided = state.get("outcome")
    if decided is None:
        timeout = context.config.get("timeout_seconds")
        message = context.config.get("message", "")
        signal = {"type": "approval", "step_id": context.step_id, "message": message}
        state = {"awaiting": "approval", "signal": signal, "decisions": [], "since": context.now.isoformat()}
        return StepOutcome.suspended(
            wake_at=context.now + timedelta(seconds=timeout) if timeout else None, state=state
        )
    decisions = list(state.get("decisions") or [])
    if decided == "approved":
        return StepOutcome.completed({"approved": True, "decisions": decisions})
    rejection = next((d for d in reversed(decisions) if not d.get("approved")), {})
    who = "the timeout" if rejection.get("by_type") == "system" else rejection.get("by", "an approver")
    note = rejection.get("note") or ""
    raise StepError(
        "approval_rejected",
        f"Step '{context.step_id}' was rejected by {who}" + (f": {note}" if note else "."),
        retryable=False,
        details={"approved": False, "decisions": decisions},
    )


STEP_TYPE = StepType(
    name="approval",
    description="Pause until approvers decide; output is {approved, decisions}; a rejection fails the step.",
    config_schema=object_schema(
        {
            "message": string(4000),
            "approvers": {
                "type": "array",
                "items": {"anyOf": [{"enum": list(ROLES)}, {"type": "string", "pattern": EMAIL_PATTERN}]},
                "uniqueItems": True,
                "maxItems": 100,
            },
            "required_approvals": integer(1, 20),
            "allow_self_approval": {"type": "boolean"},
            "timeout_seconds": timeout_seconds(LONG_WAIT_SECONDS_MAX),
            "on_timeout": {"enum": ["reject", "approve"]},
        }
    ),
    check=_check,
    allowed_in_loop=False,
    # Not a side effect, but a dry run must not ask people to decide: it is skipped like one.
    has_side_effects=True,
    execute=execute,
)
