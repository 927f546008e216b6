"""The security policy's fields, defaults and the redact patterns' rules (docs/security.md).

Pure Python: the policy API validates with it, and the engine enforces what it describes."""

import functools
from typing import Any

import re2

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
