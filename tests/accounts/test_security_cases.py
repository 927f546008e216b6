"""Security cases of sign-in and secrets (docs/reliability.md "Security cases"): passwords hashed with Argon2
as Django recommends (older hashes still verify and are upgraded at sign-in), the session rotated at sign-in
(no fixation), and every secret compared in constant time (an audit of the code's comparisons)."""

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import identify_hasher, make_password
from django.contrib.sessions.backends.db import SessionStore

from accounts.models import User

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def real_hashers(settings):
    """The deployment's hashers (the test settings use MD5 for speed)."""
    settings.PASSWORD_HASHERS = settings.PRODUCTION_PASSWORD_HASHERS


def test_argon2_is_the_first_hasher():
    assert settings.PRODUCTION_PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


def test_new_passwords_are_hashed_with_argon2id(db, real_hashers):
    user = User.objects.create_user("new@x.test", PASSWORD)
    assert user.password.startswith("argon2$argon2id$")
    assert user.check_password(PASSWORD) and not user.check_password(PASSWORD + "x")


@pytest.mark.parametrize("old_hasher", ["pbkdf2_sha256", "pbkdf2_sha1", "scrypt"])
@pytest.mark.parametrize("sign_in", ["dashboard", "api"])
def test_older_hashes_still_verify_and_are_upgraded_at_sign_in(db, client, real_hashers, old_hasher, sign_in):
    from tests.factories import make_org

    user = User.objects.create_user("old@x.test", PASSWORD)
    make_org(name="Old", owner=user)
    User.objects.filter(pk=user.pk).update(password=make_password(PASSWORD, hasher=old_hasher))
    wrong = client.post("/login/", {"email": "old@x.test", "password": "not-the-password"})
    assert wrong.status_code == 400
    assert (
        identify_hasher(User.objects.get(pk=user.pk).password).algorithm == old_hasher
    )  # a failure changes nothing
    if sign_in == "dashboard":
        response = client.post("/login/", {"email": "old@x.test", "password": PASSWORD})
        assert response.status_code == 302
    else:
        response = client.post("/api/v1/auth/token", {"email": "old@x.test", "password": PASSWORD},
                               content_type="application/json")  # fmt: skip
        assert response.status_code == 200, response.content
    upgraded = User.objects.get(pk=user.pk).password
    assert upgraded.startswith("argon2$argon2id$")
    assert User.objects.get(pk=user.pk).check_password(PASSWORD)


def test_the_session_is_rotated_at_sign_in(db, client):
    from tests.factories import make_org

    user = User.objects.create_user("fixed@x.test", PASSWORD)
    make_org(name="Fixation", owner=user)
    # An attacker plants a session id in the victim's browser before the victim signs in.
    planted = SessionStore()
    planted["planted"] = True
    planted.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    response = client.post("/login/", {"email": "fixed@x.test", "password": PASSWORD})
    assert response.status_code == 302
    new_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key and new_key != planted.session_key
    assert not SessionStore().exists(planted.session_key)  # the planted id no longer names any session
    signed_in = SessionStore(session_key=new_key).load()
    assert signed_in["_auth_user_id"] == str(user.pk)
    assert client.get("/").status_code == 200
    # Signing out ends the session: its id is worthless afterwards.
    client.post("/logout/")
    assert not SessionStore().exists(new_key)


# --- constant-time comparisons ------------------------------------------------------------------------------

SECRET_NAMES = re.compile(
    r"(token|secret|signature|passw|pepper|hmac|api_?key|raw_key|nonce|csrf|session_key)", re.I
)

# Every `==` / `!=` in Baton's code whose operands look like secrets, reviewed: none compares a secret value.
REVIEWED_EQUALITIES = {
    (
        "accounts/services/security.py",
        "name != secret.name",
    ): "a secret's name (shown in lists), not its value",
    ("accounts/services/security.py", '(description or "") != secret.description'): "its description",
    ("config/settings.py", '_entry == "secret_key"'): "a setting's keyword, compared with a constant",
    ("audit/management/commands/audit_verify.py", 'report.signatures == "verified"'): "a status word",
}

# The places that do compare secrets, each with hmac.compare_digest.
CONSTANT_TIME_SITES = {
    "accounts/keys.py": 1,  # an API key's checksum (before the lookup by its HMAC, an indexed equality)
    "accounts/twofactor.py": 2,  # a TOTP code, and a recovery code's digest
    "config/metrics.py": 1,  # the /metrics bearer token
    "runs/engine/signing.py": 1,  # X-Baton-Signature, every v1= candidate
    "workflows/webhooks.py": 3,  # the webhook token, X-Baton-Signature and GitHub's X-Hub-Signature-256
}


def _python_files():
    root = Path(settings.BASE_DIR)
    for path in sorted(root.glob("*/**/*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in ("tests", "bench", ".venv", ".uv", "var") or "migrations" in relative.parts:
            continue
        yield relative, path.read_text()


def test_no_secret_is_compared_with_equality():
    found = {}
    for relative, source in _python_files():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                text = ast.get_source_segment(source, node) or ""
                if SECRET_NAMES.search(text):
                    found[(str(relative), text)] = node.lineno
    unreviewed = {site: line for site, line in found.items() if site not in REVIEWED_EQUALITIES}
    assert unreviewed == {}, "compare secrets with hmac.compare_digest, or review the site here"
    assert set(REVIEWED_EQUALITIES) <= set(found), "a reviewed site is gone: drop it from the list"


def test_secrets_are_compared_in_constant_time():
    counts = {}
    for relative, source in _python_files():
        calls = source.count("hmac.compare_digest(") + source.count("constant_time_compare(")
        if calls:
            counts[str(relative)] = calls
    assert counts == CONSTANT_TIME_SITES
    # What Django and the libraries compare (password hashes, the session's auth hash, CSRF tokens, password
    # reset tokens, JWT signatures) goes through their own constant-time functions.
    from django.contrib.auth import hashers
    from django.contrib.auth.tokens import PasswordResetTokenGenerator

    assert "constant_time_compare" in Path(hashers.__file__).read_text()
    assert (
        "constant_time_compare"
        in Path(PasswordResetTokenGenerator.check_token.__code__.co_filename).read_text()
    )
