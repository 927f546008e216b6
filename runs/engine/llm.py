"""A small LLM client over the outbound client: OpenAI-compatible Chat Completions and Anthropic Messages.

Every request goes through `runs.engine.outbound.fetch` with the organisation's outbound policy (SSRF rules
apply to provider base URLs like to any other URL). Pure Python, no models: the agent_task handler loads
the provider and passes what is needed. Errors are `StepError`s with stable codes (docs/llm.md):

| code | when | retryable |
|---|---|---|
| `llm_rate_limited` | HTTP 429 still after the in-call retries (Retry-After is honoured) | yes |
| `llm_server_error` | HTTP 5xx (and Anthropic's 529) still after the in-call retries | yes |
| `llm_timeout` | the request timed out (or HTTP 408) | yes |
| `llm_unreachable` | connection or DNS failure | yes |
| `llm_auth_failed` | HTTP 401/403: the key is wrong or lacks access | no |
| `llm_request_rejected` | any other 4xx (unknown model, bad parameters, context too long) | no |
| `llm_bad_response` | the answer is not the API's JSON shape, or too large | no |
| `policy_violation` | the security policy refused the base URL's address | no |
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from accounts.network import OutboundError, OutboundPolicy
from runs.engine.context import StepError
from runs.engine.outbound import fetch

OPENAI = "openai"
ANTHROPIC = "anthropic"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_TIMEOUT_SECONDS = 120.0  # one request, bounded by the step's deadline
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
# Inside one step attempt: how often a 429/5xx is retried, and the longest Retry-After that is waited for.
MAX_CALL_RETRIES = 2
RETRY_AFTER_CAP_SECONDS = 60.0
SERVER_ERROR_BACKOFF_SECONDS = 1.0  # doubled per retry when the server gives no Retry-After
ERROR_TEXT_CHARS = 1000


@dataclass(frozen=True)
class LlmCall:
    """One completion request. `messages` are user/assistant turns; `system` is sent the API's way."""

    kind: str  # "openai" | "anthropic"
    base_url: str
    api_key: str
    model: str
    system: str
    messages: list[dict]
    max_tokens: int
    temperature: float | None = None
    json_mode: bool = False  # OpenAI: response_format json_object (Anthropic: the system prompt asks)


@dataclass(frozen=True)
class LlmResult:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    stop_reason: str = ""
    retries: list[dict] = field(default_factory=list)  # [{"status", "waited_seconds"}] in-call retries

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def endpoint(kind: str, base_url: str) -> str:
    base = base_url.rstrip("/")
    if kind == ANTHROPIC:
        # Accept a base URL given with the version segment too (https://api.anthropic.com/v1).
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
    return f"{base}/chat/completions"


def request_for(call: LlmCall) -> tuple[str, dict, dict]:
    """(url, headers, JSON body) of the API call."""
    url = endpoint(call.kind, call.base_url)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if call.kind == ANTHROPIC:
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if call.api_key:
            headers["x-api-key"] = call.api_key
        body: dict = {"model": call.model, "max_tokens": call.max_tokens, "messages": call.messages}
        if call.system:
            body["system"] = call.system
    else:
        if call.api_key:
            headers["Authorization"] = f"Bearer {call.api_key}"
        messages = [{"role": "system", "content": call.system}] if call.system else []
        body = {"model": call.model, "messages": messages + call.messages, "max_tokens": call.max_tokens}
        if call.json_mode:
            body["response_format"] = {"type": "json_object"}
    if call.temperature is not None:
        body["temperature"] = call.temperature
    return url, headers, body


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


def _provider_message(text: str) -> str:
    """The provider's error message when the body is the usual {"error": {"message"}} JSON, else the text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text[:ERROR_TEXT_CHARS]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:ERROR_TEXT_CHARS]
    if isinstance(error, str):
        return error[:ERROR_TEXT_CHARS]
    return text[:ERROR_TEXT_CHARS]


def parse_response(kind: str, data) -> LlmResult:
    """The content, model and token counts of a successful answer (StepError llm_bad_response otherwise)."""

    def bad(why: str) -> StepError:
        return StepError(
            "llm_bad_response", f"The LLM provider's answer is not usable: {why}.", retryable=False
        )

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}

    def count(*names) -> int:
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return 0

    model = data.get("model") if isinstance(data.get("model"), str) else ""
    if kind == ANTHROPIC:
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise bad("no content blocks")
        texts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise bad("no text content")
        return LlmResult(
            content="".join(texts),
            model=model,
            prompt_tokens=count("input_tokens"),
            completion_tokens=count("output_tokens"),
            stop_reason=str(data.get("stop_reason") or ""),
        )
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise bad("no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # some compatible servers answer with content parts
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(parts) if parts and all(isinstance(t, str) for t in parts) else None
    if not isinstance(content, str):
        refusal = message.get("refusal") if isinstance(message, dict) else None
        raise bad(f"the model refused: {refusal}" if isinstance(refusal, str) else "no message content")
    return LlmResult(
        content=content,
        model=model,
        prompt_tokens=count("prompt_tokens", "input_tokens"),
        completion_tokens=count("completion_tokens", "output_tokens"),
        stop_reason=str(choices[0].get("finish_reason") or ""),
    )


def _outbound_error(exc: OutboundError) -> StepError:
    details = {"outbound_code": exc.code, **exc.details}
    if exc.code == "stopped":
        return StepError("terminated", "The LLM call was abandoned: the run was terminated.", retryable=False)
    if exc.code == "ssrf_blocked":
        return StepError(
            "policy_violation",
            f"The LLM provider's address was refused by the security policy: {exc.message}",
            retryable=False,
            details=details,
        )
    if exc.code == "timeout":
        return StepError(
            "llm_timeout", f"The LLM provider did not answer in time: {exc.message}", details=details
        )
    if exc.code in ("connection_failed", "dns_failed"):
        return StepError(
            "llm_unreachable", f"The LLM provider is unreachable: {exc.message}", details=details
        )
    if exc.code == "response_too_large":
        return StepError("llm_bad_response", f"The LLM provider's answer: {exc.message}", retryable=False,
                         details=details)  # fmt: skip
    return StepError(
        exc.code, f"Calling the LLM provider failed: {exc.message}", retryable=False, details=details
    )


def complete(
    call: LlmCall,
    *,
    deadline: float,
    policy: OutboundPolicy,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] | None = None,
) -> LlmResult:
    """Send the call; retry 429 and 5xx up to MAX_CALL_RETRIES times, waiting Retry-After (at most
    RETRY_AFTER_CAP_SECONDS) when the wait still leaves time before `deadline` (a time.monotonic() value).
    Raises StepError (see the module docstring)."""
    url, headers, body = request_for(call)
    retries: list[dict] = []
    for attempt in range(MAX_CALL_RETRIES + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StepError("llm_timeout", "The step's deadline passed before the LLM provider answered.")
        try:
            response = fetch(
                "POST",
                url,
                headers=headers,
                json=body,
                timeout=min(timeout_seconds, remaining),
                policy=policy,
                max_response_bytes=MAX_RESPONSE_BYTES,
                should_stop=should_stop,  # a terminated run abandons the call
            )
        except OutboundError as exc:
            raise _outbound_error(exc) from None
        status = response.status_code
        if status < 300:
            try:
                data = response.json()
            except ValueError:
                raise StepError(
                    "llm_bad_response", "The LLM provider's answer is not JSON.", retryable=False
                ) from None
            result = parse_response(call.kind, data)
            return LlmResult(**{**result.__dict__, "retries": retries})
        message = _redact(_provider_message(response.text), call.api_key)
        details = {"status_code": status, "provider_message": message}
        if status in (401, 403):
            raise StepError(
                "llm_auth_failed",
                f"The LLM provider refused the credentials (HTTP {status}): {message}",
                retryable=False,
                details=details,
            )
        if status == 408:
            raise StepError(
                "llm_timeout", f"The LLM provider timed out (HTTP 408): {message}", details=details
            )
        if status == 429 or status >= 500:
            code = "llm_rate_limited" if status == 429 else "llm_server_error"
            after = retry_after_seconds(response.headers.get("retry-after"))
            wait = after if after is not None else SERVER_ERROR_BACKOFF_SECONDS * (2**attempt)
            details["retry_after_seconds"] = after
            fits = wait <= RETRY_AFTER_CAP_SECONDS and time.monotonic() + wait < deadline - 1.0
            if attempt < MAX_CALL_RETRIES and fits:
                retries.append({"status_code": status, "waited_seconds": round(wait, 3)})
                sleep(wait)
                continue
            what = "rate-limited the request" if status == 429 else f"failed with HTTP {status}"
            raise StepError(
                code, f"The LLM provider {what}: {message}", details={**details, "retries": retries}
            )
        raise StepError(
            "llm_request_rejected",
            f"The LLM provider rejected the request (HTTP {status}): {message}",
            retryable=False,
            details=details,
        )
    raise AssertionError("unreachable")  # the loop returns or raises
