"""Which locks a trigger waits for (PostgreSQL row locks; docs/performance.md "Triggers under load"): the
organisation's row lock only when something is counted under it (a cap on runs at once, a monthly limit,
a workflow's concurrency limit), and the audit chain's head last, with the commit."""

import threading

import psycopg
import pytest
from django.db import OperationalError, connection, connections

from accounts.principal import Principal
from runs.models import Run
from runs.services import run_create
from tests.factories import WorkflowFactory
from tests.runs.conftest import pg_only

pytestmark = [pg_only, pytest.mark.django_db(transaction=True)]


def _other_connection():
    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                           password=db["PASSWORD"] or None, dbname=db["NAME"])  # fmt: skip


def _trigger_while_locked(statement: str, param: str, workflow, actor) -> str:
    """Trigger in a thread while another connection holds `statement`'s lock; "created" or "waited"."""
    outcome = []

    def trigger():
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SET lock_timeout = '500ms'")
            outcome.append(run_create(workflow=workflow, actor=actor).id and "created")
        except OperationalError:
            outcome.append("waited")
        finally:
            connections.close_all()

    with _other_connection() as other:
        other.execute(statement, [param])
        thread = threading.Thread(target=trigger)
        thread.start()
        thread.join(30)
    return outcome[0]


@pytest.fixture
def uncapped(settings, org, owner):
    settings.BATON_ENGINE_DISPATCH = "manual"
    org.max_concurrent_runs = org.monthly_run_limit = org.monthly_token_quota = None
    org.save(update_fields=["max_concurrent_runs", "monthly_run_limit", "monthly_token_quota"])
    actor = Principal(organization=org, user=owner, role="owner")
    return org, actor, WorkflowFactory(organization=org, actor=actor, name="Uncapped")


LOCK_ORGANIZATION = "SELECT 1 FROM accounts_organization WHERE id = %s FOR NO KEY UPDATE"


def test_an_organisation_without_caps_is_not_locked_by_a_trigger(uncapped):
    org, actor, workflow = uncapped
    assert _trigger_while_locked(LOCK_ORGANIZATION, org.pk, workflow, actor) == "created"
    assert Run.objects.filter(organization=org, status="running").count() == 1


@pytest.mark.parametrize("cap", ["max_concurrent_runs", "monthly_run_limit"])
def test_a_cap_makes_the_trigger_count_under_the_organisation_lock(uncapped, cap):
    org, actor, workflow = uncapped
    setattr(org, cap, 5)
    org.save(update_fields=[cap])
    assert _trigger_while_locked(LOCK_ORGANIZATION, org.pk, workflow, actor) == "waited"
    assert not Run.objects.filter(organization=org).exists()  # the whole creation rolled back


def test_a_workflow_concurrency_limit_takes_the_organisation_lock(uncapped):
    org, actor, workflow = uncapped
    workflow.concurrency = {"limit": 1, "on_limit": "queue"}
    workflow.save(update_fields=["concurrency"])
    assert _trigger_while_locked(LOCK_ORGANIZATION, org.pk, workflow, actor) == "waited"


def test_the_audit_head_is_locked_last_and_released_with_the_commit(uncapped):
    """A trigger blocked on the audit chain's head has written everything else: its run exists in its
    transaction, and nothing is committed (the append and the COMMIT go together)."""
    org, actor, workflow = uncapped
    run_create(workflow=workflow, actor=actor)  # the head exists and this process knows it
    lock_head = "SELECT 1 FROM audit_auditchainhead WHERE organization_id = %s FOR UPDATE"
    assert _trigger_while_locked(lock_head, org.pk, workflow, actor) == "waited"
    assert Run.objects.filter(organization=org).count() == 1
    run_create(workflow=workflow, actor=actor)
    assert Run.objects.filter(organization=org).count() == 2
