"""Appends from several threads or processes at once (real transactions) stay gapless and valid.

Threads with their own connections: on PostgreSQL they contend for the chain head's row lock, on SQLite
(the test database is a file, as deployed: tests/conftest.py) IMMEDIATE transactions serialize them. And
worker processes on a file database in WAL mode, as deployed."""

import json
import subprocess
from pathlib import Path

import pytest
from django.db import close_old_connections, transaction

from accounts.principal import SYSTEM
from audit import selectors
from audit.models import AuditEvent
from audit.services import audit_record
from tests.support.concurrency import at_once
from tests.support.processes import django_code, run_django_code, sqlite_child_env

THREADS = 6
PER_THREAD = 15
PROCESSES = 3
PER_PROCESS = 10


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_concurrent_thread_appends_stay_gapless_and_valid(org):
    start = AuditEvent.objects.filter(organization=org).count()

    def append(worker: int):
        for i in range(PER_THREAD):
            with transaction.atomic():
                # Work inside the transaction before the append widens the race window.
                AuditEvent.objects.filter(organization=org).exists()
                audit_record(organization=org, event="load.append", actor=SYSTEM, data={"w": worker, "i": i})

    errors = at_once(THREADS, append, timeout=120)
    close_old_connections()

    assert errors == []
    seqs = list(AuditEvent.objects.filter(organization=org).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, start + THREADS * PER_THREAD + 1))
    written = AuditEvent.objects.filter(organization=org, event="load.append").values_list("data", flat=True)
    assert sorted((d["w"], d["i"]) for d in written) == [
        (w, i) for w in range(THREADS) for i in range(PER_THREAD)
    ]
    result = selectors.audit_chain_verify(organization=org)
    assert result.valid, result.first_invalid
    assert result.checked == start + THREADS * PER_THREAD


SETUP = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from tests.factories import make_org, UserFactory
print(make_org(name="Load", owner=UserFactory(email="load@baton.test")).id)
"""

WORKER = """
import sys
from django.db import transaction
from accounts.models import Organization
from accounts.principal import SYSTEM
from audit.models import AuditEvent
from audit.services import audit_record
org = Organization.objects.get(pk=sys.argv[1])
for i in range(int(sys.argv[3])):
    with transaction.atomic():
        AuditEvent.objects.filter(organization=org).exists()
        data = {"w": int(sys.argv[2]), "i": i}
        audit_record(organization=org, event="load.append", actor=SYSTEM, data=data)
"""

REPORT = """
import json, sys
from audit import selectors
from audit.models import AuditEvent
events = AuditEvent.objects.filter(organization_id=sys.argv[1]).order_by("seq")
seqs = list(events.values_list("seq", flat=True))
print(json.dumps({"seqs": seqs, "verify": selectors.audit_chain_verify(organization=sys.argv[1]).as_dict()}))
"""


@pytest.mark.slow
def test_concurrent_process_appends_on_file_sqlite_stay_gapless_and_valid(tmp_path):
    env = sqlite_child_env(tmp_path)
    org_id = run_django_code(env, SETUP)
    workers = [
        subprocess.Popen(
            django_code(WORKER, org_id, n, PER_PROCESS),
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    failures = [proc.stderr.read() for proc in workers if proc.wait(timeout=120) != 0]
    assert failures == []
    report = json.loads(run_django_code(env, REPORT, org_id))
    assert report["seqs"] == list(range(1, 2 + PROCESSES * PER_PROCESS + 1))
    assert report["verify"]["valid"] is True, report["verify"]
    assert report["verify"]["checked"] == 2 + PROCESSES * PER_PROCESS
