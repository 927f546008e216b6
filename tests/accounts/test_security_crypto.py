"""accounts.crypto and `manage.py rotate_encryption`: keys from SECRET_KEY or BATON_ENCRYPTION_KEYS, key
rotation, and re-encryption of every stored ciphertext (secrets, signing secrets, LLM provider keys)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from accounts import crypto
from accounts.models import LlmProvider, Secret, SigningSecret
from accounts.services import llm_provider_create, secret_create, signing_secret_get, signing_secret_rotate
from tests.conftest import owner_principal

ROOT = Path(__file__).resolve().parents[2]


def test_round_trip_and_tampering(settings):
    token = crypto.encrypt("hunter2-but-longer")
    assert token != "hunter2-but-longer" and "hunter2" not in token
    assert crypto.decrypt(token) == "hunter2-but-longer"
    assert crypto.encrypt("same") != crypto.encrypt("same")  # random IV
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    for bad in (tampered, "not-a-token", "", "gAAAAA"):
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(bad)
    assert crypto.decrypt(crypto.encrypt("ünïcødé ✓")) == "ünïcødé ✓"


def test_default_key_is_derived_from_the_secret_key(settings):
    settings.BATON_ENCRYPTION_KEYS = []
    token = crypto.encrypt("value-1234")
    assert Fernet(crypto.derive_key(settings.SECRET_KEY)).decrypt(token.encode()) == b"value-1234"
    old_secret_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-completely-different-secret-key-" * 2
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)
    # Django's SECRET_KEY_FALLBACKS keep old ciphertexts readable after a secret-key rotation.
    settings.SECRET_KEY_FALLBACKS = [old_secret_key]
    assert crypto.decrypt(token) == "value-1234"
    assert crypto.encrypted_with_current_key(crypto.encrypt("x-new")) is True
    assert crypto.encrypted_with_current_key(token) is False


def test_configured_keys_first_encrypts_all_decrypt(settings):
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    settings.BATON_ENCRYPTION_KEYS = [key_a]
    old = crypto.encrypt("value-abcd")
    settings.BATON_ENCRYPTION_KEYS = [key_b, key_a]  # a new key first: old ciphertexts still open
    assert crypto.decrypt(old) == "value-abcd"
    new = crypto.encrypt("value-efgh")
    assert Fernet(key_b.encode()).decrypt(new.encode()) == b"value-efgh"
    rotated = crypto.rotate(old)
    settings.BATON_ENCRYPTION_KEYS = [key_b]  # the old key removed
    assert crypto.decrypt(rotated) == "value-abcd" and crypto.decrypt(new) == "value-efgh"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(old)


def test_secret_key_entry_stands_for_the_derived_key(settings):
    settings.BATON_ENCRYPTION_KEYS = []
    derived = crypto.encrypt("made-with-derived")
    new_key = crypto.generate_key()
    settings.BATON_ENCRYPTION_KEYS = [new_key, "secret_key"]
    assert crypto.decrypt(derived) == "made-with-derived"
    assert not crypto.encrypted_with_current_key(derived)


@pytest.mark.slow
@pytest.mark.parametrize("value", ["not-a-key", "c2hvcnQ=", "secret_key,nope"])
def test_settings_refuse_malformed_keys(tmp_path, value):
    env = {**os.environ, "BATON_ENCRYPTION_KEYS": value, "BATON_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; "
         "django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "BATON_ENCRYPTION_KEYS must be" in result.stderr


def test_rotate_command_reencrypts_every_registered_column(settings, org, owner):
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    settings.BATON_ENCRYPTION_KEYS = [key_a]
    actor = owner_principal(org, owner)
    secret = secret_create(organization=org, actor=actor, name="TOKEN", value="secret-value-1")
    signing_secret_get(organization_id=org.id)
    signing_secret_rotate(organization=org, actor=actor, grace_seconds=600)  # a previous secret too
    provider = llm_provider_create(
        organization=org, actor=actor, name="P", kind="openai", api_key="sk-provider-key-0123456789",
        default_model="m",
    )  # fmt: skip
    before = SigningSecret.objects.get(organization=org)
    plain_signing = crypto.decrypt(before.secret_encrypted), crypto.decrypt(before.previous_secret_encrypted)

    settings.BATON_ENCRYPTION_KEYS = [key_b, key_a]
    out = io.StringIO()
    call_command("rotate_encryption", "--dry-run", stdout=out)
    assert "accounts.Secret.value_encrypted: would re-encrypt 1" in out.getvalue()
    assert Secret.objects.get(pk=secret.pk).value_encrypted == secret.value_encrypted  # dry run: untouched
    out = io.StringIO()
    call_command("rotate_encryption", stdout=out)
    text = out.getvalue()
    assert "accounts.Secret.value_encrypted: re-encrypted 1, already current 0, failed 0" in text
    assert "accounts.SigningSecret.secret_encrypted: re-encrypted 1" in text
    assert "accounts.SigningSecret.previous_secret_encrypted: re-encrypted 1" in text
    assert "accounts.LlmProvider.api_key_encrypted: re-encrypted 1" in text

    settings.BATON_ENCRYPTION_KEYS = [key_b]  # the old key is gone: everything still decrypts
    assert crypto.decrypt(Secret.objects.get(pk=secret.pk).value_encrypted) == "secret-value-1"
    after = SigningSecret.objects.get(organization=org)
    assert (crypto.decrypt(after.secret_encrypted), crypto.decrypt(after.previous_secret_encrypted)) == (
        plain_signing
    )
    stored_key = LlmProvider.objects.get(pk=provider.pk).api_key_encrypted
    assert crypto.decrypt(stored_key) == "sk-provider-key-0123456789"
    out = io.StringIO()
    call_command("rotate_encryption", stdout=out)  # idempotent
    assert "accounts.Secret.value_encrypted: re-encrypted 0, already current 1, failed 0" in out.getvalue()


def test_rotate_command_reports_values_it_cannot_decrypt(settings, org, owner):
    settings.BATON_ENCRYPTION_KEYS = [crypto.generate_key()]
    secret_create(organization=org, actor=owner_principal(org, owner), name="TOKEN", value="secret-value-1")
    settings.BATON_ENCRYPTION_KEYS = [crypto.generate_key()]  # the key it was made with is lost
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 value"):
        call_command("rotate_encryption", stdout=io.StringIO(), stderr=err)
    assert "cannot be decrypted" in err.getvalue() and "secret-value-1" not in err.getvalue()


def test_generate_key_prints_a_usable_key():
    out = io.StringIO()
    call_command("rotate_encryption", "--generate-key", stdout=out)
    key = Fernet(out.getvalue().strip().encode())  # raises if not a valid key
    assert key.decrypt(key.encrypt(b"round trip")) == b"round trip"


def test_registry_accepts_new_columns():
    crypto.register_encrypted_field("accounts.Secret", "value_encrypted")  # already there: no duplicate
    assert crypto.ENCRYPTED_FIELDS.count(("accounts.Secret", "value_encrypted")) == 1
