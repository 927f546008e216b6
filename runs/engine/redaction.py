"""Redaction of secret values and policy patterns, and the log filter that applies it.

Imports no model: settings.LOGGING installs `SecretRedactingFilter` before the apps are loaded."""

from __future__ import annotations

import contextvars
import json
import logging
import urllib.parse
from collections.abc import Iterable
from typing import Any

from accounts.policy import MIN_REDACT_LENGTH, compile_pattern

REDACTED = "***"


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


# The current step execution's security view (runs/engine/secrets.py ExecutionSecurity), if any.
current_execution: contextvars.ContextVar = contextvars.ContextVar("baton_execution_security", default=None)


# --- logging ------------------------------------------------------------------------------------------


class SecretRedactingFilter(logging.Filter):
    """Redacts the current step execution's secrets from a log record (message, arguments, traceback).

    Installed on every handler (settings.LOGGING), so it sees records of every logger. Outside a step
    execution it does nothing and costs one context-variable read."""

    def filter(self, record: logging.LogRecord) -> bool:
        security = current_execution.get()
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
