"""`approval`: wait until enough people approve (or one rejects)."""

from .base import LONG_WAIT_SECONDS_MAX, StepType, integer, object_schema, string, timeout_seconds

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
)
