"""Absolute links Baton hands out (invitations, notifications): from BATON_PUBLIC_URL when it is set, else
from the request's host; without either, the path alone."""

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode


def absolute_url(path: str, request=None) -> str:
    if settings.BATON_PUBLIC_URL:
        return settings.BATON_PUBLIC_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return path


def invitation_url(user, request=None) -> str:
    """The one-time link with which an invited person sets their password and signs in (Django's password
    reset token: it stops working once the password is set, and expires after BATON_INVITATION_SECONDS)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return absolute_url(reverse("dashboard:invitation", args=[uid, token]), request)


def invitation_email(membership, url: str) -> bool:
    """Email the invitation link to the invited person when email is configured (BATON_EMAIL_URL); the
    dashboard also shows the link once, and `POST /members` answers with it. Returns whether it was sent."""
    if not settings.BATON_EMAIL_URL:
        return False
    organization, role = membership.organization.name, membership.get_role_display()
    send_mail(
        f"You are invited to {organization} on Baton",
        f"Set your password to join {organization} as {role}:\n\n{url}\n",
        None,
        [membership.user.email],
    )
    return True
