"""A person's TOTP two-factor enrolment (docs/authentication.md); the logic is accounts/twofactor.py."""

from django.db import models
from django.utils import timezone


class TwoFactor(models.Model):
    """The TOTP secret (encrypted with accounts.crypto), confirmed once a code from the person's app matched;
    an unconfirmed row is an enrolment in progress and asks nothing at sign-in."""

    user = models.OneToOneField(
        "accounts.User", on_delete=models.CASCADE, primary_key=True, related_name="two_factor"
    )
    secret_encrypted = models.TextField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # The time step of the last accepted code: a code is accepted once (no replay within its window).
    last_step = models.BigIntegerField(default=0)
    # SHA-256 hex digests of the recovery codes not used yet (each works once, instead of a code).
    recovery_hashes = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Two-factor of {self.user_id}"

    @property
    def enabled(self) -> bool:
        return self.confirmed_at is not None
