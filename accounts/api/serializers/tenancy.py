"""Shapes of sign-in, /me, /organization, members and API keys."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.choices import ALL_SCOPES, LIMIT_FIELDS, Plan, Role
from accounts.models import ApiKey, Membership, Organization, User
from config.api.serializers import StrictSerializer

# Largest values the limit columns hold on every database (PositiveIntegerField / PositiveBigIntegerField).
LIMIT_MAX = {field: 2_147_483_647 for field in LIMIT_FIELDS} | {
    "monthly_token_quota": 9_223_372_036_854_775_807
}


# --- output ---------------------------------------------------------------------------------


class LimitsSerializer(serializers.Serializer):
    rate_per_minute = serializers.IntegerField(
        allow_null=True, help_text="Requests per minute; null = unlimited."
    )
    rate_per_day = serializers.IntegerField(allow_null=True)
    monthly_run_limit = serializers.IntegerField(allow_null=True)
    monthly_token_quota = serializers.IntegerField(allow_null=True)
    max_concurrent_runs = serializers.IntegerField(allow_null=True)
    max_schedules = serializers.IntegerField(allow_null=True, help_text="Schedules in the organisation.")
    max_schedules_per_workflow = serializers.IntegerField(allow_null=True)
    min_schedule_interval_seconds = serializers.IntegerField(
        allow_null=True, help_text="Never below the server's BATON_SCHEDULE_MIN_INTERVAL_SECONDS."
    )


class OrganizationSerializer(serializers.ModelSerializer):
    limits = LimitsSerializer(read_only=True)
    notification_webhook_set = serializers.SerializerMethodField(
        help_text="Whether a notification webhook URL is set (the URL itself is never shown)."
    )

    class Meta:
        model = Organization
        fields = [
            "id",
            "name",
            "plan",
            "limits",
            "retention_days",
            "require_two_factor",
            "notification_webhook_set",
            "created_at",
        ]
        read_only_fields = fields

    def get_notification_webhook_set(self, organization) -> bool:
        return bool(organization.notification_webhook_encrypted)


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name"]
        read_only_fields = fields


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.CharField(source="user.id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.CharField(source="user.name", read_only=True)
    invited = serializers.SerializerMethodField(
        help_text="True while the person has not set a password (added by email, never signed in)."
    )

    class Meta:
        model = Membership
        fields = ["user_id", "email", "name", "role", "invited", "created_at"]
        read_only_fields = fields

    def get_invited(self, membership) -> bool:
        return not membership.user.has_usable_password()


class MemberCreatedSerializer(MemberSerializer):
    invitation_url = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="For a person without a password: the one-time, expiring link that sets it and signs them "
        "in (shown only in this response); null when the person already has an account.",
    )

    class Meta(MemberSerializer.Meta):
        fields = [*MemberSerializer.Meta.fields, "invitation_url"]
        read_only_fields = fields


class ApiKeySerializer(serializers.ModelSerializer):
    scopes = serializers.ListField(child=serializers.CharField(), read_only=True)
    created_by = UserSerializer(read_only=True, allow_null=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "last4",
            "scopes",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "created_by",
        ]
        read_only_fields = fields


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown only in this response.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class MembershipBriefSerializer(serializers.Serializer):
    organization = OrganizationSerializer()
    role = serializers.CharField()


class MeSerializer(serializers.Serializer):
    actor_type = serializers.ChoiceField(choices=["user", "api_key"])
    user = UserSerializer(allow_null=True)
    api_key = ApiKeySerializer(allow_null=True)
    organization = OrganizationSerializer()
    role = serializers.CharField(allow_null=True, help_text="The person's role, or the role a key acts with.")
    scopes = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="An API key's scopes."
    )
    organizations = serializers.ListField(
        child=serializers.DictField(), help_text="Every organisation the person belongs to (empty for a key)."
    )


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")
    organization = OrganizationSerializer()
    user = UserSerializer()


class AccessTokenSerializer(serializers.Serializer):
    access = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField()
    organization = OrganizationSerializer()


# --- input ----------------------------------------------------------------------------------


class TokenRequestSerializer(StrictSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)
    organization = serializers.CharField(
        required=False, allow_null=True, max_length=64, help_text="Organisation id; required when in several."
    )
    otp = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=32,
        help_text="A current code of the authenticator app (or a recovery code) when two-factor is on.",
    )


class RefreshRequestSerializer(StrictSerializer):
    refresh = serializers.CharField(max_length=4096)


@extend_schema_field(
    {
        "type": "object",
        "properties": {field: {"type": "integer", "minimum": 0, "nullable": True} for field in LIMIT_FIELDS},
        "additionalProperties": False,
    }
)
class LimitsField(serializers.Field):
    """A partial dict of limits: each a non-negative integer, or null for unlimited."""

    default_error_messages = {"not_object": "Must be an object of limits."}

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_object")
        errors, limits = {}, {}
        for field, value in data.items():
            if field not in LIMIT_FIELDS:
                errors[field] = [f"Unknown limit; expected one of {', '.join(LIMIT_FIELDS)}."]
            elif value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                errors[field] = ["Must be a non-negative integer or null."]
            elif value is not None and not 0 <= value <= LIMIT_MAX[field]:
                errors[field] = [f"Must be between 0 and {LIMIT_MAX[field]}, or null."]
            else:
                limits[field] = value
        if errors:
            raise serializers.ValidationError(errors)
        return limits

    def to_representation(self, value):
        return value


class OrganizationUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    plan = serializers.ChoiceField(choices=Plan.choices, required=False)
    limits = LimitsField(required=False, help_text="Partial; null = unlimited. Owner only.")
    retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    require_two_factor = serializers.BooleanField(
        required=False, help_text="Owners, admins and members must use two-factor sign-in in the dashboard."
    )
    notification_webhook_url = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2048,
        write_only=True,
        help_text='A Slack-compatible incoming-webhook URL for notifications (write-only); "" removes it.',
    )


class MemberCreateSerializer(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
    name = serializers.CharField(max_length=150, required=False, default="", allow_blank=True)


class MemberUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class ApiKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_SCOPES),
        required=False,
        allow_empty=False,
        help_text="Default: workflows:read runs:read runs:write.",
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Must be in the future."
    )
