"""Shapes of the security policy, secrets and the webhook signing secret (docs/security.md). Secret values
are write-only: no response carries one. Every field is read strictly (no "true" for true, no "10" for
10)."""

import re

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts import crypto, services
from accounts.models import Secret
from accounts.models.security import (
    MAX_RUN_DURATION_LIMIT,
    MAX_STEPS_LIMIT,
    MAX_TOKENS_LIMIT,
    SECRET_NAME_PATTERN,
    SECRET_VALUE_MAX_BYTES,
)
from accounts.network import parse_allowlist_entry
from accounts.policy import MAX_REDACT_PATTERNS, MIN_REDACT_LENGTH, compile_pattern
from accounts.services.security import DEFAULT_SIGNING_GRACE_SECONDS, MAX_SIGNING_GRACE_SECONDS
from config.api.serializers import StrictBooleanField, StrictCharField, StrictIntegerField, StrictSerializer

MAX_ALLOWLIST_ENTRIES = 100
MAX_ALLOWLIST_ENTRY_LENGTH = 300
MAX_APPROVAL_ENVS = 20
ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _allowlist_entry_error(entry) -> str | None:
    if not isinstance(entry, str):
        return "Each entry is a string."
    text = entry.strip()
    if not text or len(text) > MAX_ALLOWLIST_ENTRY_LENGTH:
        return f"Each entry is 1 to {MAX_ALLOWLIST_ENTRY_LENGTH} characters."
    host, sep, port = text.rpartition(":")
    if sep and port.isascii() and port.isdigit() and (host.count(":") == 0 or host.endswith("]")):
        return (
            f"{entry!r}: entries do not restrict ports; write the host without ':{port}' "
            "(it then allows every port of that host)."
        )
    try:
        parse_allowlist_entry(text)
    except ValueError as exc:
        return str(exc)
    return None


class _UniqueListField(serializers.Field):
    """A JSON list of at most `max_items` `what`, checked by `check`, repeated items dropped."""

    what = noun = ""
    max_items = 0

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError(f"Must be a list of {self.what}.")
        if len(data) > self.max_items:
            raise serializers.ValidationError(f"At most {self.max_items} {self.noun}.")
        self.check(data)
        return list(dict.fromkeys(self.clean(item) for item in data))

    def check(self, items: list) -> None:
        """Subclasses refuse a bad list here (ValidationError); the base accepts any."""

    def clean(self, item):
        return item

    def to_representation(self, value):
        return list(value)


@extend_schema_field({"type": "array", "items": {"type": "string"}, "maxItems": MAX_ALLOWLIST_ENTRIES})
class AllowlistField(_UniqueListField):
    what, noun, max_items = "host names, *.domains, IP addresses or CIDRs", "entries", MAX_ALLOWLIST_ENTRIES

    def check(self, items):
        errors = [error for error in map(_allowlist_entry_error, items) if error]
        if errors:
            raise serializers.ValidationError(errors)

    def clean(self, item):
        return item.strip()


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 500},
        "maxItems": MAX_REDACT_PATTERNS,
    }
)
class RedactPatternsField(_UniqueListField):
    what, noun, max_items = "regular expressions", "patterns", MAX_REDACT_PATTERNS

    def check(self, items):
        errors = []
        for pattern in items:
            try:
                compile_pattern(pattern)
            except ValueError as exc:
                errors.append(str(exc))
        if errors:
            raise serializers.ValidationError(errors)


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "pattern": ENV_NAME_RE.pattern},
        "maxItems": MAX_APPROVAL_ENVS,
    }
)
class EnvListField(_UniqueListField):
    what, noun, max_items = "environment names", "environments", MAX_APPROVAL_ENVS

    def check(self, items):
        if any(not isinstance(env, str) or not ENV_NAME_RE.match(env) for env in items):
            raise serializers.ValidationError(
                "Environment names are 1 to 64 letters, digits, '_', '.' or '-', starting with a letter "
                "or digit."
            )


POLICY_HELP = {
    "allow_script_steps": "false: every script step fails with policy_violation.",
    "block_private_networks": "Refuse outbound requests to private, loopback, link-local and other "
    "non-public addresses unless allowlisted (metadata endpoints are refused either way).",
    "http_allowlist": "Host names, *.domains, IP addresses or CIDRs that outbound requests may reach even "
    "when they resolve to private addresses. Ports are not restricted. At most 100.",
    "max_run_duration_seconds": "A run still active after this long fails with run_timeout (capped by the "
    "deployment's BATON_MAX_RUN_DURATION_SECONDS).",
    "max_steps_per_run": "Step runs a run may create, loop iterations included; beyond it the run (or loop "
    "step) fails with policy_violation.",
    "max_tokens_per_run": "null = no cap. Checked before every LLM call of an agent step: "
    "token_limit_exceeded once the run's tokens reach it.",
    "require_approval_for_envs": "Runs triggered with one of these environments (exact, case-sensitive) wait "
    "as awaiting_approval until someone approves them (POST /runs/{id}/approve) and only then start; "
    "dry runs and sub-workflow runs are exempt. At most 20.",
    "redact_patterns": "RE2 regular expressions (no backreferences or lookaround; at most 50, each at most "
    "500 characters); every match in stored run traces becomes ***.",
}


class SecurityPolicySerializer(serializers.Serializer):
    allow_script_steps = StrictBooleanField(help_text=POLICY_HELP["allow_script_steps"])
    block_private_networks = StrictBooleanField(help_text=POLICY_HELP["block_private_networks"])
    http_allowlist = AllowlistField(help_text=POLICY_HELP["http_allowlist"])
    max_run_duration_seconds = serializers.IntegerField(help_text=POLICY_HELP["max_run_duration_seconds"])
    max_steps_per_run = serializers.IntegerField(help_text=POLICY_HELP["max_steps_per_run"])
    max_tokens_per_run = serializers.IntegerField(
        allow_null=True, help_text=POLICY_HELP["max_tokens_per_run"]
    )
    require_approval_for_envs = EnvListField(help_text=POLICY_HELP["require_approval_for_envs"])
    redact_patterns = RedactPatternsField(help_text=POLICY_HELP["redact_patterns"])
    updated_at = serializers.DateTimeField(read_only=True)
    updated_by = serializers.CharField(
        read_only=True, help_text="The actor id of the last change ('' if none)."
    )


class SecurityPolicyUpdateSerializer(StrictSerializer):
    """Every field is optional: fields left out keep their current values. `updated_at` and
    `updated_by` (the GET body's read-only fields) are accepted and ignored."""

    ignored_fields = ("updated_at", "updated_by")

    allow_script_steps = StrictBooleanField(required=False, help_text=POLICY_HELP["allow_script_steps"])
    block_private_networks = StrictBooleanField(
        required=False, help_text=POLICY_HELP["block_private_networks"]
    )
    http_allowlist = AllowlistField(required=False, help_text=POLICY_HELP["http_allowlist"])
    max_run_duration_seconds = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=MAX_RUN_DURATION_LIMIT,
        help_text=POLICY_HELP["max_run_duration_seconds"],
    )
    max_steps_per_run = StrictIntegerField(
        required=False, min_value=1, max_value=MAX_STEPS_LIMIT, help_text=POLICY_HELP["max_steps_per_run"]
    )
    max_tokens_per_run = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_TOKENS_LIMIT,
        help_text=POLICY_HELP["max_tokens_per_run"],
    )
    require_approval_for_envs = EnvListField(
        required=False, help_text=POLICY_HELP["require_approval_for_envs"]
    )
    redact_patterns = RedactPatternsField(required=False, help_text=POLICY_HELP["redact_patterns"])

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        return super().to_internal_value(data)


class SecretSerializer(serializers.ModelSerializer):
    class Meta:
        model = Secret
        fields = ["id", "name", "description", "created_at", "updated_at", "created_by", "updated_by"]
        read_only_fields = fields
        extra_kwargs = {
            "created_by": {"help_text": "Actor id (usr_… or key_…) that created the secret."},
            "updated_by": {"help_text": "Actor id of the last change."},
        }


NAME_HELP = f"Used as {{{{ secrets.NAME }}}} in templates. {SECRET_NAME_PATTERN}, unique in the organisation."
VALUE_HELP = (
    f"Write-only: stored encrypted, never returned. {MIN_REDACT_LENGTH} characters to "
    f"{SECRET_VALUE_MAX_BYTES} bytes."
)


@extend_schema_field({"type": "string", "pattern": SECRET_NAME_PATTERN, "maxLength": 64})
class SecretNameField(StrictCharField):
    """A secret's name (the service checks the pattern; the schema states it)."""


@extend_schema_field(
    {"type": "string", "minLength": MIN_REDACT_LENGTH, "maxLength": SECRET_VALUE_MAX_BYTES, "writeOnly": True}
)
class SecretValueField(StrictCharField):
    """A secret's value (the service checks its length: shorter values could not be redacted)."""


class SecretCreateSerializer(StrictSerializer):
    name = SecretNameField(max_length=64, help_text=NAME_HELP)
    value = SecretValueField(
        write_only=True, trim_whitespace=False, max_length=SECRET_VALUE_MAX_BYTES, help_text=VALUE_HELP
    )
    description = StrictCharField(max_length=500, required=False, allow_blank=True, default="")


class SecretUpdateSerializer(StrictSerializer):
    name = SecretNameField(max_length=64, required=False, help_text=NAME_HELP)
    value = SecretValueField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        max_length=SECRET_VALUE_MAX_BYTES,
        help_text=VALUE_HELP + " Replaces the stored value.",
    )
    description = StrictCharField(max_length=500, required=False, allow_blank=True)


class SigningSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="whsec_ + 64 hex: the HMAC-SHA256 key of X-Baton-Signature.")
    header = serializers.CharField(help_text="The header deliveries carry: X-Baton-Signature.")
    previous_secret_expires_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Until then deliveries also carry a v1= signature made with the previous secret.",
    )
    created_at = serializers.DateTimeField()
    rotated_at = serializers.DateTimeField(allow_null=True)


class SigningSecretRotateSerializer(StrictSerializer):
    grace_seconds = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=MAX_SIGNING_GRACE_SECONDS,
        default=DEFAULT_SIGNING_GRACE_SECONDS,
        help_text="How long the previous secret keeps signing deliveries too (default 86400; 0 = stop now).",
    )


def policy_data(policy) -> dict:
    return {
        **services.security_policy_document(policy),
        "updated_at": policy.updated_at,
        "updated_by": policy.updated_by,
    }


def signing_secret_data(row) -> dict:
    expires = row.previous_expires_at
    in_grace = bool(row.previous_secret_encrypted) and expires is not None and expires > timezone.now()
    return {
        "secret": crypto.decrypt(row.secret_encrypted),
        "header": "X-Baton-Signature",
        "previous_secret_expires_at": expires if in_grace else None,
        "created_at": row.created_at,
        "rotated_at": row.rotated_at,
    }
