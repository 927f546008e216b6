"""manage.py create_org --name NAME --owner-email EMAIL --owner-password PW [--api-key-name NAME]
[--plan starter|growth|enterprise|self_hosted] [--json]

Creates an organisation with its owner (reusing an existing user only when the password matches) and,
with --api-key-name, an API key with every scope. --json prints {"organization": {...as GET
/organization}, "owner": {"id", "email", "name"}, "api_key": "bt_live_…" | null}."""

import json

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts.api.serializers import OrganizationSerializer, UserSerializer
from accounts.choices import ALL_SCOPES, Plan
from accounts.models import User
from accounts.principal import SYSTEM
from accounts.services import api_key_create, organization_create


class Command(BaseCommand):
    help = "Create an organisation, its owner and optionally an API key with every scope."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Organisation name.")
        parser.add_argument("--owner-email", required=True)
        parser.add_argument("--owner-password", required=True)
        parser.add_argument("--owner-name", default="", help="The owner's display name (new users only).")
        parser.add_argument("--api-key-name", default=None, help="Also create an API key with every scope.")
        parser.add_argument(
            "--plan",
            default=None,
            choices=[plan.value for plan in Plan],
            help="The organisation's plan (default BATON_DEFAULT_PLAN).",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, **options):
        name = options["name"].strip()
        email = (options["owner_email"] or "").strip().lower()
        password = options["owner_password"]
        key_name = options["api_key_name"]
        if not name or len(name) > 200:
            raise CommandError("--name must be 1 to 200 characters.")
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"--owner-email {email!r} is not a valid email address.") from None
        if not password:
            raise CommandError("--owner-password must not be empty.")
        if key_name is not None and not (0 < len(key_name.strip()) <= 100):
            raise CommandError("--api-key-name must be 1 to 100 characters.")

        with transaction.atomic():
            owner = User.objects.filter(email=email).first()
            if owner is None:
                try:
                    validate_password(password, User(email=email))
                except ValidationError as exc:
                    # Operators may want a throwaway password on a laptop: warn, do not refuse.
                    self.stderr.write("Warning: weak owner password: " + " ".join(exc.messages))
                owner = User.objects.create_user(email=email, password=password, name=options["owner_name"])
            elif not owner.check_password(password):
                raise CommandError(
                    f"A user with email {email} already exists and --owner-password does not match their "
                    "password. Use their current password to make them the owner of another organisation."
                )
            org = organization_create(name=name, owner=owner, plan=options["plan"], actor=SYSTEM)
            raw_key = None
            if key_name is not None:
                raw_key = api_key_create(
                    organization=org, actor=SYSTEM, name=key_name.strip(), scopes=ALL_SCOPES
                ).key

        result = {
            "organization": OrganizationSerializer(org).data,
            "owner": UserSerializer(owner).data,
            "api_key": raw_key,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"Created organisation {org.name} ({org.id}), plan {org.plan}.")
        self.stdout.write(f"Owner: {owner.email} ({owner.id}).")
        if raw_key:
            self.stdout.write(f"API key (every scope; shown once, store it now): {raw_key}")
        self.stdout.write("Sign in: POST /api/v1/auth/token with the owner's email and password.")
