"""Step handlers: one module per type, each defining `STEP_TYPE` (its config schema and `execute`).

`register_step_types` puts them, in this order (the order error messages list them in), into the registry
that validation reads (workflows/steps.py); the runs app calls it when it is ready. Adding a step type is
adding a module here and naming it in `MODULES`."""

from workflows.steps import register

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

MODULES = (
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


def register_step_types() -> None:
    for module in MODULES:
        register(module.STEP_TYPE)
