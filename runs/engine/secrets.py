"""The engine's side of the security policy and secrets (docs/security.md).

- `{{ secrets.NAME }}`: `SecretsNamespace`, loaded from the database at most once per step execution, and
  only when a template touches it.
- Redaction: a `Redactor` replaces every secret value (of at least `MIN_REDACT_LENGTH` characters) and every
  match of the policy's `redact_patterns` with `***` in what the engine stores: the resolved config
  (`input_data`), outputs, errors, attempts, events, the run's result and error, and engine log lines
  (`SecretRedactingFilter`, installed on every logging handler by settings.LOGGING).
- Enforcement: `outbound_policy_for` (http_request, webhook, LLM base URLs), `check_script_allowed`,
  `run_limits` (the run deadline and the step cap at run start), and the step cap when a loop spawns.

Model imports stay inside functions: this module is imported by settings.LOGGING's filter.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import re2

REDACTED = "***"
# Shorter values are not redacted: replacing every "ab" in every trace would destroy the trace and, by
# its pattern of stars, reveal the value anyway. Short values are rejected when a secret is written.
MIN_REDACT_LENGTH = 4
MAX_REDACT_PATTERNS = 50
MAX_PATTERN_LENGTH = 500
# RE2's memory budget per compiled pattern (a pattern too big for it does not compile).
_RE2_MAX_MEM = 8 << 20

DEFAULT_POLICY: dict[str, Any] = {
    "allow_script_steps": True,
    "block_private_networks": True,
    "http_allowlist": [],
    "max_run_duration_seconds": 3600,
    "max_steps_per_run": 1000,
    "max_tokens_per_run": None,
    "require_approval_for_envs": ["production"],
    "redact_patterns": [],
}
POLICY_FIELDS = tuple(DEFAULT_POLICY)


# --- patterns and the redactor ------------------------------------------------------------------------


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is reported to the API caller, not to stderr
    options.max_mem = _RE2_MAX_MEM
    return options


def compile_pattern(pattern: str):
    """A redact pattern compiled with RE2 (linear time: no catastrophic backtracking); ValueError if invalid.

    RE2 syntax is Python's without backreferences and lookaround; `(?i)` and friends work."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("A redact pattern must be a non-empty string.")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"A redact pattern is at most {MAX_PATTERN_LENGTH} characters.")
    return _compile(pattern)


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str):
    try:
        compiled = re2.compile(pattern, _re2_options())
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"{pattern!r} is not a valid pattern (RE2 syntax: no backreferences or lookaround): "
                         f"{detail}.") from None  # fmt: skip
    if compiled.search("") is not None:
        raise ValueError(f"{pattern!r} matches the empty string, which would redact nothing useful.")
    return compiled


def _encoded_variants(value: str) -> set[str]:
    """The value as written and as it reappears after the usual encodings on its way out and back: a URL
    query or path (percent-encoded, `+` for spaces) and a JSON string (escaped, ASCII or not)."""
    variants = {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return {variant for variant in variants if len(variant) >= MIN_REDACT_LENGTH}


class Redactor:
    """Replaces secret values (longest first) and pattern matches with `***` in strings and JSON values."""

    def __init__(self, values: Iterable[str] = (), patterns: Iterable[str] = ()):
        unique = {
            variant
            for value in values
            if isinstance(value, str) and len(value) >= MIN_REDACT_LENGTH
            for variant in _encoded_variants(value)
        }
        # Longest first, so a secret containing another one is replaced whole.
        self._values = sorted(unique, key=len, reverse=True)
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(compile_pattern(pattern))
            except ValueError:
                continue  # validated when the policy was saved; a stale bad one must not stop the engine
        self._patterns = compiled

    def __bool__(self) -> bool:
        return bool(self._values) or bool(self._patterns)

    def text(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        for pattern in self._patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def value(self, value: Any) -> Any:
        """`value` with every string inside it (dict keys included) redacted; other types as they are."""
        if not self:
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {(self.text(k) if isinstance(k, str) else k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(item) for item in value]
        return value


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
    from accounts.models_security import SecurityPolicy
    from config import sql

    return sql.Select(SecurityPolicy, POLICY_FIELDS, "{pk} = %s")


def secret_values(organization_id: str) -> dict[str, str]:
    """{name: plaintext} of every secret of the organisation; one query and one decryption per secret."""
    from accounts import crypto
    from accounts.models_security import Secret

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
            from jinja2.exceptions import UndefinedError

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


_current: contextvars.ContextVar[ExecutionSecurity | None] = contextvars.ContextVar(
    "baton_execution_security", default=None
)


def begin_execution(organization_id: str) -> ExecutionSecurity:
    """Start a step execution: its security view becomes current (for log redaction and handlers)."""
    security = ExecutionSecurity(organization_id)
    _current.set(security)
    return security


def current(organization_id: str | None = None) -> ExecutionSecurity | None:
    security = _current.get()
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
    from runs.engine.context import StepError

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
    from runs.engine.context import StepError

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
        if _current.get() is security:
            _current.set(None)


def redact_run_outcome(organization_id: str, result, error):
    """The run's result and error as stored: redacted (no query when both are empty)."""
    if result is None and not error:
        return result, error
    redactor = _security(organization_id).redactor
    return redactor.value(result), redactor.value(error)


def _loop_step_cap(security: ExecutionSecurity, run, new_rows: int) -> str | None:
    from runs.models import StepRun

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
    from django.conf import settings

    from runs.engine.outbound import OutboundPolicy

    policy = _security(organization_id).policy
    entries = [*(policy.get("http_allowlist") or ()), *settings.BATON_HTTP_ALLOWLIST]
    return OutboundPolicy(
        block_private_networks=bool(policy.get("block_private_networks", True)),
        allowlist=tuple(dict.fromkeys(entries)),
    )


def check_script_allowed(organization_id: str, step_id: str) -> None:
    """Raise a non-retryable StepError("policy_violation") when the policy forbids script steps."""
    from runs.engine.context import StepError

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


def run_limits(run) -> RunLimits:
    """At run start: the deadline (min of the policy's max_run_duration_seconds and
    BATON_MAX_RUN_DURATION_SECONDS) and whether the definition alone exceeds max_steps_per_run."""
    from django.conf import settings

    from runs.engine.plan import plan_for  # cached per workflow version

    policy = policy_for(run.organization_id)
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


# --- logging ------------------------------------------------------------------------------------------


class SecretRedactingFilter(logging.Filter):
    """Redacts the current step execution's secrets from a log record (message, arguments, traceback).

    Installed on every handler (settings.LOGGING), so it sees records of every logger. Outside a step
    execution it does nothing and costs one context-variable read."""

    def filter(self, record: logging.LogRecord) -> bool:
        security = _current.get()
        loaded = security._entry if security is not None else {}
        if loaded.get("values") is None:
            return True  # no secret was loaded in this execution
        # Never a query from inside logging: only what this execution already loaded is used.
        redactor = loaded.get("redactor") or Redactor(
            loaded["values"].values(), (loaded.get("policy") or {}).get("redact_patterns") or ()
        )
        if not redactor:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's error path
            return True
        record.msg = redactor.text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        return True
