"""Dashboard pages of the accounts app: sign in, sign out, the landing page, switching organisation."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.authentication import SESSION_ORG_KEY, session_membership
from accounts.forms import LoginForm, OrganizationSwitchForm
from accounts.models import Membership
from config.errors import RateLimited, Unauthorized


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


@never_cache
@login_required
def home(request):
    """The signed-in landing page: the current organisation, the role in it, where to go next."""
    membership = session_membership(request, request.user)
    memberships = Membership.objects.filter(user=request.user).select_related("organization")
    context = {
        "membership": membership,
        "organization": membership.organization if membership else None,
        "memberships": memberships.order_by("organization__name"),
    }
    return render(request, "dashboard/home.html", context)


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
