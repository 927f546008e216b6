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
