"""The step-type registry: one module per type, each exporting `STEP_TYPE`."""

from . import (
    agent_task,
    approval,
    condition,
    end,
    http_request,
    input,
    loop,
    script,
    sub_workflow,
    transform,
    wait,
    webhook,
)
from .base import StepType

STEP_TYPES: dict[str, StepType] = {
    module.STEP_TYPE.name: module.STEP_TYPE
    for module in (
        http_request,
        webhook,
        script,
        agent_task,
        condition,
        loop,
        wait,
        approval,
        input,
        transform,
        sub_workflow,
        end,
    )
}


def get_step_type(name: str) -> StepType | None:
    """The registered step type called `name`, or None."""
    return STEP_TYPES.get(name)


__all__ = ["STEP_TYPES", "StepType", "get_step_type"]
