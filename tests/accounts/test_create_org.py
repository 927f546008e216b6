import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.choices import ALL_SCOPES, plan_limits
from accounts.models import ApiKey, Membership, Organization, User
from audit.models import AuditEvent
from tests.conftest import PASSWORD


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("create_org", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_json_output_shape(db):
    out, _ = run(
        "--name",
        "Initech",
        "--owner-email",
        "Bill@Initech.test",
        "--owner-password",
        PASSWORD,
        "--api-key-name",
        "bootstrap",
        "--plan",
        "growth",
        "--json",
    )
    result = json.loads(out)
    assert set(result) == {"organization", "owner", "api_key"}
    org = result["organization"]
    assert set(org) == {
        "id",
        "name",
        "plan",
        "limits",
        "retention_days",
        "require_two_factor",
        "notification_webhook_set",
        "created_at",
    }
    assert (org["name"], org["plan"], org["limits"]) == ("Initech", "growth", plan_limits("growth"))
    assert set(result["owner"]) == {"id", "email", "name"} and result["owner"]["email"] == "bill@initech.test"
    key = ApiKey.objects.get(organization_id=org["id"])
    assert key.scopes == sorted(ALL_SCOPES)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {result['api_key']}")
    assert client.get("/api/v1/organization").json()["id"] == org["id"]
    assert Membership.objects.get(organization_id=org["id"]).role == "owner"
    assert {e.event for e in AuditEvent.objects.filter(organization_id=org["id"])} == {
        "organization.created",
        "member.added",
        "api_key.created",
    }
    token = APIClient().post(
        "/api/v1/auth/token", {"email": "bill@initech.test", "password": PASSWORD}, format="json"
    )
    assert token.status_code == 200


def test_without_plan_the_organisation_gets_the_default_plan(db, settings):
    out, _ = run("--name", "Solo", "--owner-email", "solo@x.test", "--owner-password", PASSWORD, "--json")
    org = json.loads(out)["organization"]
    assert (org["plan"], org["limits"]) == ("self_hosted", dict.fromkeys(org["limits"]))
    settings.BATON_DEFAULT_PLAN = "starter"
    out, _ = run("--name", "Hosted", "--owner-email", "h@x.test", "--owner-password", PASSWORD, "--json")
    org = json.loads(out)["organization"]
    assert (org["plan"], org["limits"]) == ("starter", plan_limits("starter"))
    assert org["limits"]["rate_per_minute"] == 60


def test_self_hosted_plan_caps_runs_at_once_only_when_set(db, settings):
    assert plan_limits("self_hosted")["max_concurrent_runs"] is None
    settings.BATON_SELF_HOSTED_MAX_CONCURRENT_RUNS = 25
    assert plan_limits("self_hosted")["max_concurrent_runs"] == 25


def test_without_api_key_name_the_key_is_null(db):
    out, _ = run("--name", "Solo", "--owner-email", "solo@x.test", "--owner-password", PASSWORD, "--json")
    assert json.loads(out)["api_key"] is None
    assert not ApiKey.objects.exists()


def test_human_summary(db):
    out, _ = run(
        "--name", "Solo", "--owner-email", "solo@x.test", "--owner-password", PASSWORD, "--api-key-name", "k"
    )
    assert "Created organisation Solo" in out and "bt_live_" in out


def test_existing_user_is_reused_when_the_password_matches(owner, org):
    out, _ = run("--name", "Second", "--owner-email", owner.email, "--owner-password", PASSWORD, "--json")
    assert json.loads(out)["owner"]["id"] == owner.id
    assert owner.memberships.count() == 2


def test_existing_user_with_another_password_is_an_error(owner, org):
    with pytest.raises(CommandError, match="already exists"):
        run("--name", "Second", "--owner-email", owner.email, "--owner-password", "not-their-password")
    assert Organization.objects.count() == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "", "--owner-email", "a@b.test", "--owner-password", PASSWORD],
        ["--name", "X", "--owner-email", "not-an-email", "--owner-password", PASSWORD],
        ["--name", "X", "--owner-email", "a@b.test", "--owner-password", ""],
        ["--name", "X", "--owner-email", "a@b.test", "--owner-password", PASSWORD, "--api-key-name", ""],
    ],
)
def test_bad_input_is_an_error_and_creates_nothing(db, args):
    with pytest.raises(CommandError):
        run(*args)
    assert not Organization.objects.exists() and not User.objects.exists()


def test_unknown_plan_exits_non_zero(db):
    with pytest.raises(CommandError):
        run("--name", "X", "--owner-email", "a@b.test", "--owner-password", PASSWORD, "--plan", "platinum")


def test_weak_password_is_accepted_with_a_warning(db):
    _, err = run("--name", "X", "--owner-email", "a@b.test", "--owner-password", "short", "--json")
    assert "weak owner password" in err


@pytest.mark.slow
def test_exit_status_of_the_real_command(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "BATON_DATA_DIR": str(tmp_path), "BATON_SQLITE_PATH": str(tmp_path / "db.sqlite3")}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, check=True)
    ok = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "create_org",
            "--name",
            "X",
            "--owner-email",
            "a@b.test",
            "--owner-password",
            PASSWORD,
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["organization"]["name"] == "X"
    bad = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "create_org",
            "--name",
            "Y",
            "--owner-email",
            "a@b.test",
            "--owner-password",
            "wrong-password",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "already exists" in bad.stderr
