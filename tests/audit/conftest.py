"""Helpers for the audit tests: append events through the real service, tamper with rows by raw SQL."""

import pytest
from django.db import connection

from accounts.principal import SYSTEM
from audit.models import AuditChainHead, AuditEvent
from audit.services import audit_record

TABLE = AuditEvent._meta.db_table


def record(org, count=1, *, event="test.happened", target=None, data=None, note=None, run_id=None):
    """Append `count` events as the system actor; returns the rows."""
    return [
        audit_record(
            organization=org,
            event=event,
            actor=SYSTEM,
            target=target,
            data=data or {"n": i},
            note=note,
            run_id=run_id,
        )
        for i in range(count)
    ]


def raw_sql(sql: str, params=()) -> int:
    """Run SQL behind the model's back (how an attacker with database access would); returns rowcount."""
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.rowcount


def head_of(org) -> dict:
    head = AuditChainHead.objects.get(organization=org)
    return {"seq": head.seq, "hash": head.hash}


def event_at(org, seq) -> AuditEvent:
    return AuditEvent.objects.get(organization=org, seq=seq)


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    """Each test's checkpoint files in a directory of its own (files are outside the database's rollback)."""
    settings.BATON_AUDIT_CHECKPOINT_DIR = tmp_path / "audit-checkpoints"
    return settings.BATON_AUDIT_CHECKPOINT_DIR


@pytest.fixture
def audit_client(make_key_client):
    """An API key with only the audit:read scope."""
    return make_key_client(["audit:read"])


@pytest.fixture
def chain(org):
    """The org's chain grown to 10 events of varied shapes (2 from organisation creation + 8)."""
    record(
        org, 3, event="workflow.created", target=("workflow", "wf_1"), data={"name": "Fetch", "tags": ["a"]}
    )
    record(org, 2, event="api_key.created", target=("api_key", "key_1"), data={"scopes": ["admin"]})
    record(org, 1, event="run.triggered", target=("run", "run_1"), run_id="run_1", note="manual")
    record(
        org, 2, event="run.completed", target=None, data={"cost": 0.25, "nested": {"b": 1, "a": [1.5, None]}}
    )
    return org
