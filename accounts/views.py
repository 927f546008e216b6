"""Dashboard pages of the accounts app: sign in (with two-factor), sign out, invitations, the profile,
switching organisation, settings → organisation, API keys, members."""

import time
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors, services
from accounts.authentication import SESSION_ORG_KEY
from accounts.choices import DEFAULT_KEY_SCOPES, Role, Scope
from accounts.dashboard import dashboard_page
from accounts.forms import (
    ApiKeyCreateForm,
    LoginForm,
    MemberInviteForm,
    MemberRoleForm,
    OrganizationForm,
    OrganizationSwitchForm,
    ProfileForm,
    TwoFactorCodeForm,
    TwoFactorDisableForm,
)
from accounts.links import invitation_email, invitation_url
from accounts.models import Membership, User
from accounts.twofactor import (
    pending_secret,
    provisioning_uri,
    qr_svg,
    two_factor_begin,
    two_factor_check,
    two_factor_confirm,
    two_factor_disable,
    two_factor_enabled,
    two_factor_required,
)
from config import ratelimit
from config.errors import ApplicationError, RateLimited, Unauthorized


def _safe_next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return settings.LOGIN_REDIRECT_URL


# The second sign-in step (two-factor) must follow the password within this many seconds.
PENDING_SIGN_IN_SECONDS = 300
PENDING_USER, PENDING_AT, PENDING_NEXT = "baton_2fa_user", "baton_2fa_at", "baton_2fa_next"


def _signed_in(request, user):
    """Sign `user` in, select their first organisation, and go where they were going."""
    target = request.session.pop(PENDING_NEXT, None) or _safe_next(request)
    for key in (PENDING_USER, PENDING_AT):
        request.session.pop(key, None)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    first = Membership.objects.filter(user=user).order_by("created_at").first()
    if first is not None:
        request.session[SESSION_ORG_KEY] = first.organization_id
    return redirect(target)


@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def login_view(request):
    """Email + password sign-in. Attempts are limited per client IP and per account; a failure is
    audited in each organisation of the account; success selects the first organisation. With two-factor
    on, the password only opens the code step (`login_code`)."""
    if request.method == "GET" and request.user.is_authenticated:
        return redirect(_safe_next(request))
    form = LoginForm(request.POST or None)
    error, status = None, 200
    if request.method == "POST" and form.is_valid():
        email, password = form.cleaned_data["email"], form.cleaned_data["password"]
        try:
            user = services.auth_sign_in(request=request, email=email, password=password)
        except RateLimited as exc:
            error, status = exc.message, 429
        except Unauthorized as exc:
            error, status = exc.message, 400
        else:
            if not two_factor_enabled(user):
                return _signed_in(request, user)
            request.session[PENDING_USER] = user.id
            request.session[PENDING_AT] = time.time()
            request.session[PENDING_NEXT] = _safe_next(request)
            return redirect("dashboard:login-code")
    elif request.method == "POST":
        status = 400
    context = {"form": form, "error": error, "next": _safe_next(request)}
    return render(request, "accounts/login.html", context, status=status)


@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def login_code(request):
    """The second sign-in step: a code from the authenticator app (or a recovery code), limited like
    passwords. Only reachable within PENDING_SIGN_IN_SECONDS of a correct password."""
    user_id = request.session.get(PENDING_USER)
    started = request.session.get(PENDING_AT) or 0
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id else None
    if user is None or time.time() - started > PENDING_SIGN_IN_SECONDS:
        for key in (PENDING_USER, PENDING_AT, PENDING_NEXT):
            request.session.pop(key, None)
        messages.info(request, "Sign in again: the code must follow the password within five minutes.")
        return redirect("dashboard:login")
    form = TwoFactorCodeForm(request.POST or None)
    error, status = None, 200
    if request.method == "POST" and form.is_valid():
        try:
            two_factor_check(request=request, user=user, code=form.cleaned_data["code"])
        except RateLimited as exc:
            error, status = exc.message, 429
        except Unauthorized as exc:
            error, status = exc.message, 400
        else:
            return _signed_in(request, user)
    elif request.method == "POST":
        status = 400
    return render(request, "accounts/login_code.html", {"form": form, "error": error}, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def logout_view(request):
    """POST signs out (CSRF protected); GET only shows the confirmation button."""
    if request.method == "POST":
        logout(request)
        messages.info(request, "You have signed out.")
        return redirect(settings.LOGIN_URL)
    if not request.user.is_authenticated:
        return redirect(settings.LOGIN_URL)
    return render(request, "accounts/logout.html")


@require_POST
@login_required
def organization_switch(request):
    """Make another of the user's organisations the session's current one."""
    form = OrganizationSwitchForm(request.POST)
    membership = None
    if form.is_valid():
        membership = (
            Membership.objects.select_related("organization")
            .filter(user=request.user, organization_id=form.cleaned_data["organization"])
            .first()
        )
    if membership is None:
        messages.error(request, "You are not a member of that organisation.")
    else:
        request.session[SESSION_ORG_KEY] = membership.organization_id
        messages.success(request, f"Switched to {membership.organization.name}.")
    return redirect(_safe_next(request))


SCOPE_LABELS = {
    Scope.WORKFLOWS_READ: "Read workflows",
    Scope.WORKFLOWS_WRITE: "Create and change workflows",
    Scope.RUNS_READ: "Read runs",
    Scope.RUNS_WRITE: "Trigger and control runs",
    Scope.RUNS_APPROVE: "Decide approvals",
    Scope.AUDIT_READ: "Read the audit log",
    Scope.ADMIN: "Administer the organisation (every scope)",
}


@dashboard_page(role=Role.ADMIN)
def api_key_list(request):
    """Settings → API keys: the organisation's keys (prefix, scopes, last use) and a form for a new one.
    A created key is shown once, on the page that answers the POST; only its prefix is kept visible."""
    organization = request.principal.organization
    choices = [(scope.value, f"{scope.value} — {SCOPE_LABELS[scope]}") for scope in Scope]
    form = ApiKeyCreateForm(request.POST or None, scopes=choices, initial={"scopes": DEFAULT_KEY_SCOPES})
    created, status = None, 200
    if request.method == "POST":
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                created = services.api_key_create(
                    organization=organization,
                    actor=request.principal,
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    expires_at=timezone.now() + timedelta(days=days) if days else None,
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = exc.status
            else:
                form = ApiKeyCreateForm(scopes=choices, initial={"scopes": DEFAULT_KEY_SCOPES})
        else:
            status = 400
    context = {
        "nav_active": "settings",
        "form": form,
        "created": created,
        "keys": selectors.api_keys_of(organization),
        "now": timezone.now(),
    }
    return render(request, "settings/api_keys.html", context, status=status)


@require_POST
@dashboard_page(role=Role.ADMIN)
def api_key_revoke(request, key_id: str):
    """Revoke a key (another organisation's key is a 404, as in the API)."""
    api_key = selectors.api_key_get(organization=request.principal.organization, key_id=key_id)
    services.api_key_revoke(api_key=api_key, actor=request.principal)
    messages.success(request, f"Key {api_key.name} ({api_key.prefix}…) revoked.")
    return redirect("dashboard:api-key-list")


@dashboard_page(role=Role.ADMIN)
def member_list(request):
    """Settings → members: who belongs to the organisation with which role; add a person by email with a
    role, change a role, remove a member (the owner and last-owner rules are the services')."""
    organization = request.principal.organization
    form = MemberInviteForm(request.POST if request.method == "POST" else None)
    status, invited = 200, None
    if request.method == "POST":
        if form.is_valid():
            try:
                membership = services.member_add(
                    organization=organization,
                    actor=request.principal,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = exc.status
            else:
                role = membership.get_role_display()
                if membership.user.has_usable_password():
                    messages.success(request, f"{membership.user.email} added as {role}.")
                    return redirect("dashboard:member-list")
                # A new account: the invitation link is shown on this response only (and emailed when
                # email is configured); it sets the password once and expires (PASSWORD_RESET_TIMEOUT).
                invitation = invitation_url(membership.user, request)
                invitation_email(membership, invitation)
                form = MemberInviteForm()
                invited = {"email": membership.user.email, "role": role, "url": invitation}
        else:
            status = 400
    context = {
        "nav_active": "settings",
        "form": form,
        "members": selectors.memberships_of(organization),
        "roles": Role.choices,
        "is_owner": request.principal.has_role(Role.OWNER),
        "invited": invited,
        "emailed": bool(settings.BATON_EMAIL_URL),
    }
    return render(request, "settings/members.html", context, status=status)


@require_POST
@dashboard_page(role=Role.ADMIN)
def member_role(request, user_id: str):
    organization = request.principal.organization
    membership = selectors.membership_get(organization=organization, user_id=user_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
        return redirect("dashboard:member-list")
    services.member_change_role(
        organization=organization,
        actor=request.principal,
        user_id=membership.user_id,
        role=form.cleaned_data["role"],
    )
    messages.success(request, f"{membership.user.email} is now {Role(form.cleaned_data['role']).label}.")
    return redirect("dashboard:member-list")


@require_POST
@dashboard_page(role=Role.ADMIN)
def member_remove(request, user_id: str):
    organization = request.principal.organization
    membership = selectors.membership_get(organization=organization, user_id=user_id)
    services.member_remove(organization=organization, actor=request.principal, user_id=membership.user_id)
    messages.success(request, f"{membership.user.email} removed.")
    return redirect("dashboard:member-list")


class InvitationView(auth_views.PasswordResetConfirmView):
    """Accept an invitation: choose a password (Django's one-time, expiring token), then signed in."""

    template_name = "accounts/invitation.html"
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy("dashboard:home")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Welcome to Baton: your password is set.")
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Ask for a reset link by email (sent only to accounts that have a password; no hint either way)."""

    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/email/password_reset.txt"
    subject_template_name = "accounts/email/password_reset_subject.txt"
    success_url = reverse_lazy("dashboard:password-reset-done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("dashboard:login")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is changed: sign in with it.")
        return response


@dashboard_page(role=Role.ADMIN)
def organization_settings(request):
    """Settings → organisation: the name, two-factor requirement and notification webhook (admins), the
    plan and run retention (owners), the limits. The webhook URL is write-only: the page only says whether
    one is set."""
    organization = request.principal.organization
    current = {
        "name": organization.name,
        "plan": organization.plan,
        "retention_days": organization.retention_days,
        "require_two_factor": organization.require_two_factor,
    }
    form = OrganizationForm(request.POST if request.method == "POST" else None, initial=current)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            # Only what changed is sent, so an admin renaming does not "change" the owner's fields.
            changes = {k: v for k, v in form.cleaned_data.items() if k in current and v != current[k]}
            if form.cleaned_data["remove_notification_webhook"]:
                changes["notification_webhook_url"] = ""
            elif form.cleaned_data["notification_webhook_url"]:
                changes["notification_webhook_url"] = form.cleaned_data["notification_webhook_url"]
            try:
                services.organization_update(organization=organization, actor=request.principal, **changes)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = exc.status
            else:
                messages.success(request, "Saved." if changes else "Nothing changed.")
                return redirect("dashboard:organization-settings")
        else:
            status = 400
    organization.refresh_from_db()
    limits = [
        ("Requests per minute", organization.rate_per_minute),
        ("Requests per day", organization.rate_per_day),
        ("Runs per month", organization.monthly_run_limit),
        ("LLM tokens per month", organization.monthly_token_quota),
        ("Concurrent runs", organization.max_concurrent_runs),
        ("Schedules", organization.max_schedules),
        ("Schedules per workflow", organization.max_schedules_per_workflow),
        ("Shortest schedule interval (s)", organization.min_schedule_interval_seconds),
    ]
    context = {
        "nav_active": "settings",
        "form": form,
        "organization": organization,
        "limits": limits,
        "is_owner": request.principal.has_role(Role.OWNER),
        "webhook_set": bool(organization.notification_webhook_encrypted),
    }
    return render(request, "settings/organization.html", context, status=status)


@dashboard_page(two_factor_exempt=True)
def profile(request):
    """The signed-in person: email, name and email notifications (editable), their organisations (switch
    here), two-factor sign-in, and a link to change the password."""
    user = request.user
    current = {
        "name": user.name,
        "notify_requests_email": user.notify_requests_email,
        "notify_failures_email": user.notify_failures_email,
    }
    form = ProfileForm(request.POST if request.method == "POST" else None, initial=current)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            services.user_profile_update(user=user, **form.cleaned_data)
            messages.success(request, "Your profile is saved.")
            return redirect("dashboard:profile")
        status = 400
    memberships = Membership.objects.filter(user=user).select_related("organization")
    context = {
        "form": form,
        "memberships": memberships.order_by("organization__name"),
        "current": request.membership,
        "two_factor": two_factor_enabled(user),
        "two_factor_required": two_factor_required(request.membership),
        "disable_form": TwoFactorDisableForm(),
    }
    return render(request, "accounts/profile.html", context, status=status)


@dashboard_page(two_factor_exempt=True)
def two_factor_setup(request):
    """Turn two-factor sign-in on: the secret as a QR code and as text, then a first code confirms it and
    the recovery codes are shown, once."""
    user = request.user
    if two_factor_enabled(user):
        messages.info(request, "Two-factor sign-in is already on.")
        return redirect("dashboard:profile")
    form = TwoFactorCodeForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            codes = two_factor_confirm(user=user, code=form.cleaned_data["code"])
        except ApplicationError as exc:
            form.add_error("code", exc.message)
            status = exc.status
        else:
            return render(request, "accounts/two_factor_done.html", {"recovery_codes": codes})
    elif request.method == "POST":
        status = 400
    secret = pending_secret(user) or two_factor_begin(user=user)
    uri = provisioning_uri(user, secret)
    context = {
        "form": form,
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "uri": uri,
        "qr": mark_safe(qr_svg(uri)),  # noqa: S308 - segno's SVG of our own URI (no user markup)
        "required": two_factor_required(request.membership),
    }
    return render(request, "accounts/two_factor_setup.html", context, status=status)


@require_POST
@dashboard_page(two_factor_exempt=True)
def two_factor_off(request):
    """Turn two-factor sign-in off with the password and a code."""
    form = TwoFactorDisableForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give your password and a code to turn two-factor sign-in off.")
        return redirect("dashboard:profile")
    try:
        # Guessing the password and a code here is limited like signing in (per IP and per account).
        ratelimit.login_check(request, request.user.email)
        two_factor_disable(user=request.user, **form.cleaned_data)
    except RateLimited as exc:
        messages.error(request, exc.message)
    except ApplicationError as exc:
        ratelimit.login_failed(request, request.user.email)
        messages.error(request, exc.message)
    else:
        messages.success(request, "Two-factor sign-in is off.")
    return redirect("dashboard:profile")


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change (the current password first); the session stays signed in."""

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("dashboard:profile")

    def dispatch(self, request, *args, **kwargs):
        return dashboard_page()(super().dispatch)(request, *args, **kwargs)

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is changed.")
        return response
