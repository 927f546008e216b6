"""Dashboard forms for signing in and choosing the current organisation."""

from django import forms

from accounts.choices import Plan, Role


class LoginForm(forms.Form):
    email = forms.EmailField(
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )
    password = forms.CharField(
        max_length=4096, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class OrganizationSwitchForm(forms.Form):
    organization = forms.CharField(max_length=64)


class ApiKeyCreateForm(forms.Form):
    """A new API key: a name, its scopes, and an optional expiry (days from now)."""

    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, required=True)
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Expires in (days)",
        help_text="Leave empty for a key that does not expire.",
    )  # fmt: skip

    def __init__(self, *args, scopes: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scopes"].choices = scopes


class MemberInviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class OrganizationForm(forms.Form):
    """The organisation's settings: admins rename; plan and retention are the owner's (the service checks)."""

    name = forms.CharField(max_length=200)
    plan = forms.ChoiceField(choices=Plan.choices)
    retention_days = forms.IntegerField(min_value=1, max_value=36500, label="Keep finished runs for (days)")
    require_two_factor = forms.BooleanField(
        required=False,
        label="Require two-factor sign-in of owners, admins and members",
        help_text="Those without it are asked to turn it on before they use the dashboard.",
    )
    notification_webhook_url = forms.URLField(
        required=False,
        max_length=2048,
        assume_scheme="https",
        label="Notification webhook URL (Slack-compatible)",
        help_text="Approval and input requests and failed runs are posted here. It is kept secret: "
        "leave the field empty to keep the current one.",
        widget=forms.URLInput(attrs={"autocomplete": "off"}),
    )
    remove_notification_webhook = forms.BooleanField(required=False, label="Remove the notification webhook")


class ProfileForm(forms.Form):
    """The person's name and which notifications they want by email (runs/notifications.py)."""

    name = forms.CharField(
        max_length=150, required=False, help_text="Shown to the others in your organisations."
    )
    notify_requests_email = forms.BooleanField(
        required=False, label="Email me when an approval or an input waits for me"
    )
    notify_failures_email = forms.BooleanField(
        required=False, label="Email me when a run of a workflow I follow fails"
    )


def _code_field(**kwargs) -> forms.CharField:
    return forms.CharField(
        max_length=32,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
        **kwargs,
    )


class TwoFactorCodeForm(forms.Form):
    code = _code_field(label="Code from your authenticator app", help_text="Six digits, or a recovery code.")


class TwoFactorDisableForm(forms.Form):
    password = forms.CharField(
        max_length=4096, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    code = _code_field(label="Code from your authenticator app (or a recovery code)")
