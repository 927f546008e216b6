"""`script`: run Python or shell code in a sandboxed child process. Input arrives as JSON on stdin."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from runs.engine.context import StepContext, StepError, StepOutcome
from runs.engine.sandbox import SandboxError, ScriptHandle, run_script
from runs.engine.secrets import check_script_allowed
from workflows.steps import StepType, object_schema, string, timeout_seconds

CODE_MAX_BYTES = 64 * 1024
ENV_MAX = 50


def _check(config):
    size = len(config["code"].encode("utf-8"))
    if size > CODE_MAX_BYTES:
        yield f"config.code is {size} bytes, over the limit of {CODE_MAX_BYTES} bytes"


DEFAULT_TIMEOUT_SECONDS = 30
STDERR_MAX_CHARS = 64 * 1024  # kept in the output
ERROR_STDERR_CHARS = 2000  # the end of stderr kept in a script_failed error's details


def script_stdin(context: StepContext) -> bytes:
    """{"inputs", "steps": {id: output}, "run": {"id", "workflow_id"}} (+ "item"/"index" in a loop)."""
    variables = context.variables
    data = {
        "inputs": variables.get("inputs"),
        "steps": {step_id: step.get("output") for step_id, step in (variables.get("steps") or {}).items()},
        "run": {"id": context.run_id, "workflow_id": (variables.get("run") or {}).get("workflow_id")},
    }
    if "item" in variables:
        data["item"] = variables["item"]
        data["index"] = variables.get("index")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def script_output(stdout: str, stderr: str, exit_code: int) -> dict:
    """A JSON object on stdout is the output (plus stderr/exit_code when it has no such keys); other JSON
    is {"result"}; anything else {"stdout"}; always with stderr and exit_code."""
    extra = {"stderr": stderr[:STDERR_MAX_CHARS], "exit_code": exit_code}
    text = stdout.strip()
    if text:
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(value, dict):
                return {**extra, **value}
            return {"result": value, **extra}
    return {"stdout": stdout, **extra}


def execute(context: StepContext) -> StepOutcome:
    check_script_allowed(context.organization_id, context.step_id)  # the security policy's allow_script_steps
    config = context.config
    remaining = (context.deadline - datetime.now(UTC)).total_seconds()
    if remaining <= 0:
        raise StepError("step_timeout", f"Step '{context.step_id}' reached its deadline before it started.")
    timeout = min(float(config.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS), remaining)
    try:
        result = run_script(
            config["language"],
            config["code"],
            stdin=script_stdin(context),
            env=dict(config.get("env") or {}),
            timeout_seconds=timeout,
            # Run termination: the waiting loop polls the engine's stop flag and kills the process group.
            handle=ScriptHandle(should_stop=context.should_stop),
        )
    except SandboxError as exc:
        raise StepError(exc.code, f"Step '{context.step_id}': {exc.message}", retryable=False) from None
    if result.cancelled:
        raise StepError("terminated", f"Step '{context.step_id}' script was killed: the run was terminated.",
                        retryable=False)  # fmt: skip
    if result.timed_out:
        raise StepError(
            "step_timeout",
            f"Step '{context.step_id}' script ran longer than {timeout:g} s and was killed.",
            details={"timeout_seconds": timeout, "stderr": result.stderr[-ERROR_STDERR_CHARS:]},
        )
    if result.truncated:
        raise StepError(
            "script_output_too_large",
            f"Step '{context.step_id}' script printed more than the sandbox's output limit and was killed.",
            retryable=False,
        )
    if result.exit_code != 0:
        raise StepError(
            "script_failed",
            f"Step '{context.step_id}' script exited with code {result.exit_code}.",
            details={"exit_code": result.exit_code, "stderr": result.stderr[-ERROR_STDERR_CHARS:]},
        )
    return StepOutcome.completed(script_output(result.stdout, result.stderr, result.exit_code))


STEP_TYPE = StepType(
    name="script",
    description="Run python or shell code in a sandbox; stdin is JSON {inputs, steps, run}.",
    config_schema=object_schema(
        {
            "language": {"enum": ["python", "shell"]},
            "code": string(CODE_MAX_BYTES, min_length=1),
            "timeout_seconds": timeout_seconds(),
            "env": {
                "type": "object",
                "maxProperties": ENV_MAX,
                "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                "additionalProperties": string(8192),
            },
        },
        required=["language", "code"],
    ),
    check=_check,
    # The code is passed as written (never rendered): data reaches it through stdin, not string splicing.
    literal_fields=frozenset({"code"}),
    has_side_effects=True,
    execute=execute,
)
