"""Dashboard pages of the accounts app: sign in, sign out, the landing page, switching organisation,
settings → API keys."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import url_has_allowed_host_and_scheme, urlsafe_base64_encode
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
)
from accounts.models import Membership
from config.errors import ApplicationError, RateLimited, Unauthorized


def _safe_next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return settings.LOGIN_REDIRECT_URL


@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def login_view(request):
    """Email + password sign-in. Attempts are limited per client IP and per account; a failure is
    audited in each organisation of the account; success selects the first organisation."""
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
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            first = Membership.objects.filter(user=user).order_by("created_at").first()
            if first is not None:
                request.session[SESSION_ORG_KEY] = first.organization_id
            return redirect(_safe_next(request))
    elif request.method == "POST":
        status = 400
    context = {"form": form, "error": error, "next": _safe_next(request)}
    return render(request, "accounts/login.html", context, status=status)


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
                invitation = invitation_url(request, membership.user)
                if settings.BATON_EMAIL_URL:
                    send_mail(
                        f"You are invited to {organization.name} on Baton",
                        f"Set your password to join {organization.name} as {role}:\n\n{invitation}\n",
                        None,
                        [membership.user.email],
                    )
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


def invitation_url(request, user) -> str:
    """The absolute one-time link with which an invited person sets their password and signs in."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return request.build_absolute_uri(reverse("dashboard:invitation", args=[uid, token]))


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
    """Settings → organisation: the name (admins), the plan and run retention (owners), the limits."""
    organization = request.principal.organization
    current = {
        "name": organization.name,
        "plan": organization.plan,
        "retention_days": organization.retention_days,
    }
    form = OrganizationForm(request.POST if request.method == "POST" else None, initial=current)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            # Only what changed is sent, so an admin renaming does not "change" the owner's fields.
            changes = {k: v for k, v in form.cleaned_data.items() if v != current[k]}
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
    }
    return render(request, "settings/organization.html", context, status=status)


@dashboard_page()
def profile(request):
    """The signed-in person: email, name, their organisations (switch here) and a link to change the
    password."""
    memberships = Membership.objects.filter(user=request.user).select_related("organization")
    context = {"memberships": memberships.order_by("organization__name"), "current": request.membership}
    return render(request, "accounts/profile.html", context)


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
