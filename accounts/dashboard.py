"""The dashboard's access rule, one decorator for every page: a signed-in person, a membership in the
session's organisation, a role at least the page's, and the session limit (config/dashboard.py).

The view gets `request.principal` (the same Principal the API builds for a session, so services see the
same actor) and `request.membership`. An application error a service or selector raises (another
organisation's object is a NotFound, a 409, a 403 not_an_approver...) becomes an error page with the
error's status, unless the view handles it itself to show it next to a form."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from accounts.authentication import session_membership
from accounts.choices import Role
from accounts.principal import Principal
from accounts.twofactor import two_factor_enabled, two_factor_required
from config.dashboard import session_limit_hit
from config.errors import ApplicationError


def error_page(request, status: int, title: str, message: str):
    return render(request, "dashboard/error.html", {"title": title, "message": message}, status=status)


TITLES = {
    400: "Not accepted",
    402: "Quota used up",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible now",
    413: "Too large",
    422: "Not accepted",
    429: "Too many requests",
}


def application_error_page(request, exc: ApplicationError):
    return error_page(request, exc.status, TITLES.get(exc.status, "Something went wrong"), exc.message)


def dashboard_page(role: str = Role.VIEWER, *, two_factor_exempt: bool = False):
    """Decorate a dashboard view: sign-in, organisation, role `role` or higher, session limit, and
    two-factor sign-in when the organisation requires it of the person's role (the profile and the
    enrolment pages are `two_factor_exempt`: that is where such a person is sent)."""

    def decorate(view):
        @wraps(view)
        @never_cache
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.session.session_key:
                request.session.save()
            retry = session_limit_hit(request.session.session_key)
            if retry:
                response = error_page(
                    request, 429, "Too many requests", f"Slow down: retry in {retry} seconds."
                )
                response["Retry-After"] = str(retry)
                return response
            membership = session_membership(request, request.user)
            if membership is None:
                return error_page(
                    request,
                    403,
                    "No organisation yet",
                    "Your account does not belong to any organisation. Ask an administrator to invite "
                    "you, or create one with manage.py create_org.",
                )
            request.membership = membership
            request.principal = Principal(
                organization=membership.organization, user=request.user, role=membership.role
            )
            if (
                not two_factor_exempt
                and two_factor_required(membership)
                and not two_factor_enabled(request.user)
            ):
                messages.info(
                    request, f"{membership.organization.name} asks you to turn on two-factor sign-in."
                )
                return redirect("dashboard:two-factor")
            if not request.principal.has_role(role):
                return error_page(
                    request,
                    403,
                    "Not allowed",
                    f"This page needs the {role} role or higher in this organisation.",
                )
            try:
                return view(request, *args, **kwargs)
            except ApplicationError as exc:
                return application_error_page(request, exc)

        wrapper.dashboard_role = role
        return wrapper

    return decorate
