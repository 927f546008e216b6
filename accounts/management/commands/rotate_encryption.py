"""Re-encrypt every stored ciphertext with the current first key of BATON_ENCRYPTION_KEYS.

    python manage.py rotate_encryption              # re-encrypt; exit 1 if a value could not be decrypted
    python manage.py rotate_encryption --dry-run    # only count what would change
    python manage.py rotate_encryption --generate-key

Covers every column in accounts.crypto.ENCRYPTED_FIELDS. Each value is replaced with a compare-and-set, so
a value changed concurrently is left alone (it was written with the current key anyway). Safe to re-run."""

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.core.management.base import BaseCommand, CommandError

from accounts import crypto


class Command(BaseCommand):
    help = "Re-encrypt stored secrets, signing secrets and LLM keys with the current encryption key."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-encrypted.")
        parser.add_argument("--generate-key", action="store_true", help="Print a new Fernet key and exit.")

    def handle(self, *args, dry_run=False, generate_key=False, **options):
        if generate_key:
            self.stdout.write(crypto.generate_key())
            return
        failed_total = 0
        for label, field in list(crypto.ENCRYPTED_FIELDS):
            try:
                model = apps.get_model(label)
                model._meta.get_field(field)
            except (LookupError, FieldDoesNotExist):
                continue
            rotated = current = failed = 0
            rows = model.objects.exclude(**{field: ""}).values_list("pk", field)
            for pk, token in rows.iterator(chunk_size=500):
                if crypto.encrypted_with_current_key(token):
                    current += 1
                    continue
                try:
                    new_token = crypto.rotate(token)
                except crypto.DecryptionError:
                    failed += 1
                    self.stderr.write(f"{label}.{field} {pk}: cannot be decrypted with the configured keys")
                    continue
                if not dry_run:
                    model.objects.filter(pk=pk, **{field: token}).update(**{field: new_token})
                rotated += 1
            verb = "would re-encrypt" if dry_run else "re-encrypted"
            self.stdout.write(
                f"{label}.{field}: {verb} {rotated}, already current {current}, failed {failed}"
            )
            failed_total += failed
        if failed_total:
            raise CommandError(
                f"{failed_total} value(s) could not be decrypted; add the key they were made with."
            )
