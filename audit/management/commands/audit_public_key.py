"""Print the public halves of the audit checkpoint signing keys (as GET /api/v1/audit/public-keys does)."""

import base64
import json
import secrets

from django.core.management.base import BaseCommand

from audit.checkpoints import public_keys_document


class Command(BaseCommand):
    help = (
        "Print the public halves of BATON_AUDIT_SIGNING_KEY (the first signs), for audit_verify "
        "--public-key; --generate-key prints a new private key to put first in BATON_AUDIT_SIGNING_KEY."
    )
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the endpoint's JSON.")
        parser.add_argument(
            "--generate-key", action="store_true", help="Print a new private signing key (base64) and exit."
        )

    def handle(self, *args, as_json: bool, generate_key: bool, **options):
        if generate_key:
            self.stdout.write(base64.b64encode(secrets.token_bytes(32)).decode())
            return
        document = public_keys_document()
        if as_json:
            self.stdout.write(json.dumps(document, indent=2))
            return
        for key in document["keys"]:
            state = "active (signs new checkpoints)" if key["active"] else "retired (verifies older ones)"
            self.stdout.write(f"{key['public_key']}  key_id {key['key_id']}  ed25519  {state}")
