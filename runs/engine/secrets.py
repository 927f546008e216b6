"""The engine's side of the security policy and secrets (docs/security.md).

- `{{ secrets.NAME }}`: `SecretsNamespace`, loaded from the database at most once per step execution, and
  only when a template touches it.
- Redaction (runs/engine/redaction.py) of what the engine stores: the resolved config, outputs, errors,
  attempts, events, the run's result and error, and log lines.
- Enforcement: `outbound_policy_for` (http_request, webhook, LLM base URLs), `check_script_allowed`,
  `run_limits` (the run deadline and the step cap at run start), and the step cap when a loop spawns.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from django.conf import settings
from jinja2.exceptions import UndefinedError

from accounts import crypto
from accounts.models import Secret, SecurityPolicy
from accounts.network import OutboundPolicy
from accounts.policy import DEFAULT_POLICY, POLICY_FIELDS
from config import sql
from runs.engine.context import StepError
from runs.engine.redaction import Redactor, current_execution
from runs.models import StepRun

# --- the organisation's policy and secrets --------------------------------------------------------------


def policy_for(organization_id: str) -> dict:
    """The organisation's policy as a plain dict (the defaults when it was never saved); one query."""
    found = _policy_select().values(organization_id)
    if found:
        return {name: found[0][name] for name in POLICY_FIELDS}
    return {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULT_POLICY.items()}


@functools.cache
def _policy_select():
    """Read by every run start and trigger: written once (config/sql.py)."""
    return sql.Select(SecurityPolicy, POLICY_FIELDS, "{pk} = %s")


def secret_values(organization_id: str) -> dict[str, str]:
    """{name: plaintext} of every secret of the organisation; one query and one decryption per secret."""
    values = {}
    for name, token in Secret.objects.filter(organization_id=organization_id).values_list(
        "name", "value_encrypted"
    ):
        try:
            values[name] = crypto.decrypt(token)
        except crypto.DecryptionError:
            logging.getLogger("baton.engine").error(
                "secret %s of %s cannot be decrypted with the configured keys", name, organization_id
            )
    return values


# A per-process cache of each organisation's policy, secret values and redactor, so a worker running a
# chain of steps does not read and decrypt them for every step. Entries live CACHE_SECONDS at most; a save
# or delete of a policy or secret in this process drops the organisation's entry at once
# (`invalidate`, connected to the models' signals), so other processes see a change within CACHE_SECONDS.
CACHE_SECONDS = 2.0
_cache: dict[str, tuple[float, dict]] = {}
_cache_lock = threading.Lock()


def invalidate(organization_id: str | None = None) -> None:
    """Forget the cached security settings of one organisation (None: of all)."""
    with _cache_lock:
        if organization_id is None:
            _cache.clear()
        else:
            _cache.pop(organization_id, None)


def _cached(organization_id: str) -> dict:
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(organization_id)
        if hit is not None and hit[0] > now:
            return hit[1]
    return {"expires": now + CACHE_SECONDS}


def _store(organization_id: str, entry: dict) -> None:
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[organization_id] = (entry["expires"], entry)


class ExecutionSecurity:
    """What one step execution needs of the organisation's security settings, each loaded at most once
    (and shared for up to CACHE_SECONDS by the executions of this process)."""

    def __init__(self, organization_id: str):
        self.organization_id = organization_id
        self._entry = _cached(organization_id)

    def _get(self, key: str, load):
        value = self._entry.get(key)
        if value is None:
            value = self._entry[key] = load()
            _store(self.organization_id, self._entry)
        return value

    @property
    def policy(self) -> dict:
        return self._get("policy", lambda: policy_for(self.organization_id))

    @property
    def values(self) -> dict[str, str]:
        return self._get("values", lambda: secret_values(self.organization_id))

    @property
    def redactor(self) -> Redactor:
        return self._get(
            "redactor", lambda: Redactor(self.values.values(), self.policy.get("redact_patterns") or ())
        )

    def namespace(self) -> SecretsNamespace:
        return SecretsNamespace(self)


class SecretsNamespace(Mapping):
    """`secrets` in templates. Loads the organisation's secrets on first use; an unknown name is an error
    that names it (the engine reports it as the step's template_error)."""

    def __init__(self, security: ExecutionSecurity):
        self._security = security

    def __getitem__(self, name: str) -> str:
        values = self._security.values
        if name not in values:
            raise UndefinedError(f"no secret named '{name}' exists in this organisation")
        return values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._security.values

    def __iter__(self) -> Iterator[str]:
        return iter(self._security.values)

    def __len__(self) -> int:
        return len(self._security.values)

    def __repr__(self) -> str:
        return "<secrets>"  # never the values, whatever prints it


def begin_execution(organization_id: str) -> ExecutionSecurity:
    """Start a step execution: its security view becomes current (for log redaction and handlers)."""
    security = ExecutionSecurity(organization_id)
    current_execution.set(security)
    return security


def current(organization_id: str | None = None) -> ExecutionSecurity | None:
    security = current_execution.get()
    if security is None or (organization_id is not None and security.organization_id != organization_id):
        return None
    return security


def _security(organization_id: str) -> ExecutionSecurity:
    return current(organization_id) or ExecutionSecurity(organization_id)


def lazy_secrets(organization_id: str) -> SecretsNamespace:
    """The `secrets` template variable (the current execution's when there is one)."""
    return _security(organization_id).namespace()


def redactor_for(organization_id: str) -> Redactor:
    return _security(organization_id).redactor


def redact_error(redactor: Redactor, error):
    """A StepError with its message and details redacted (code, retryable and input_extra kept)."""
    if not redactor or error is None:
        return error
    redacted = StepError(
        error.code,
        redactor.text(error.message),
        retryable=error.retryable,
        details=_redact_details(redactor, error.details),
    )
    extra = getattr(error, "input_extra", None)
    if extra is not None:
        redacted.input_extra = extra
    return redacted


def _is_count(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _redact_details(redactor: Redactor, details):
    """Redacted details, except the numbers the engine adds up (a failed attempt's `tokens` and
    `cost_usd`, runs/engine/outcomes.py `charge`): kept as they are, so no pattern can rename their keys."""
    if not isinstance(details, dict):
        return redactor.value(details)
    kept = {}
    tokens = details.get("tokens")
    if isinstance(tokens, dict) and tokens and all(_is_count(v) for v in tokens.values()):
        kept["tokens"] = {k: v for k, v in tokens.items() if k in ("prompt", "completion", "total")}
    if _is_count(details.get("cost_usd")):
        kept["cost_usd"] = details["cost_usd"]
    rest = redactor.value({k: v for k, v in details.items() if k not in kept})
    return {**rest, **kept}


def redact_when_error(organization_id: str, error):
    """A `when` expression's template_error, redacted (it is stored on the step run)."""
    return redact_error(_security(organization_id).redactor, error)


def finish_execution(security: ExecutionSecurity, run, input_data, outcome, error):
    """Enforce the step cap on a loop's spawn and redact what will be stored; returns (input, outcome, error).

    Called once per step execution, after the handler returned and the handler's `input_extra` was merged.
    Ends the execution's current security view."""
    try:
        if error is None and outcome is not None and outcome.kind == "spawn_iterations":
            violation = _loop_step_cap(security, run, len(outcome.items or ()))
            if violation is not None:
                outcome, error = None, StepError("policy_violation", violation, retryable=False)
        redactor = security.redactor
        if redactor:
            if input_data is not None:
                input_data = redactor.value(input_data)
            if outcome is not None and outcome.output is not None:
                outcome = replace(outcome, output=redactor.value(outcome.output))
            if outcome is not None and outcome.message:
                outcome = replace(outcome, message=redactor.text(outcome.message))
            error = redact_error(redactor, error)
        return input_data, outcome, error
    finally:
        if current_execution.get() is security:
            current_execution.set(None)


def redact_run_outcome(organization_id: str, result, error):
    """The run's result and error as stored: redacted (no query when both are empty)."""
    if result is None and not error:
        return result, error
    redactor = _security(organization_id).redactor
    return redactor.value(result), redactor.value(error)


def _loop_step_cap(security: ExecutionSecurity, run, new_rows: int) -> str | None:
    cap = security.policy.get("max_steps_per_run") or DEFAULT_POLICY["max_steps_per_run"]
    existing = StepRun.objects.filter(run_id=run.id).count()
    if existing + new_rows > cap:
        return (
            f"The loop would create {new_rows} step runs; with the run's {existing} that exceeds the "
            f"security policy's max_steps_per_run ({cap})."
        )
    return None


# --- enforcement ---------------------------------------------------------------------------------------


def outbound_policy_for(organization_id: str):
    """The OutboundPolicy for this organisation: its `block_private_networks`, and its `http_allowlist`
    together with the deployment-wide BATON_HTTP_ALLOWLIST. ValueError when an entry is invalid (the policy
    API validates entries, so only a bad setting can cause that)."""
    policy = _security(organization_id).policy
    entries = [*(policy.get("http_allowlist") or ()), *settings.BATON_HTTP_ALLOWLIST]
    return OutboundPolicy(
        block_private_networks=bool(policy.get("block_private_networks", True)),
        allowlist=tuple(dict.fromkeys(entries)),
    )


def check_script_allowed(organization_id: str, step_id: str) -> None:
    """Raise a non-retryable StepError("policy_violation") when the policy forbids script steps."""
    if not _security(organization_id).policy.get("allow_script_steps", True):
        raise StepError(
            "policy_violation",
            f"Step '{step_id}' is a script step, and the organisation's security policy does not allow "
            "script steps (allow_script_steps is false).",
            retryable=False,
        )


@dataclass(frozen=True)
class RunLimits:
    max_duration_seconds: int
    violation: dict | None  # the run's error when it must not start


def run_limits(run, policy: dict | None = None) -> RunLimits:
    """At run start: the deadline (min of the policy's max_run_duration_seconds and
    BATON_MAX_RUN_DURATION_SECONDS) and whether the definition alone exceeds max_steps_per_run. `policy`:
    the organisation's (`policy_for`, or its max_run_duration_seconds and max_steps_per_run), when the caller
    has read it."""
    from runs.engine.plan import plan_for  # cached per workflow version

    policy = policy_for(run.organization_id) if policy is None else policy
    top_level_steps = len(plan_for(run).steps)
    duration = min(int(policy["max_run_duration_seconds"]), settings.BATON_MAX_RUN_DURATION_SECONDS)
    cap = policy["max_steps_per_run"]
    violation = None
    if top_level_steps > cap:
        violation = {
            "code": "policy_violation",
            "message": f"The workflow has {top_level_steps} steps, more than the security policy's "
            f"max_steps_per_run ({cap}).",
            "step_id": None,
        }
    return RunLimits(max_duration_seconds=duration, violation=violation)
