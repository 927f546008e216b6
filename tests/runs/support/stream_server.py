"""A real uvicorn server for the stream tests, with a real engine beside it, in one subprocess.

    python -m tests.runs.support.stream_server PORT

Serves `config.asgi:application` on 127.0.0.1:PORT (uvicorn in a thread) and answers JSON commands, one
per line on stdin, with one JSON line on stdout (the first line printed is {"ready": true}):

- {"cmd": "setup"}: an organisation with keys and tokens for every authentication path, and another one;
- {"cmd": "run", "steps": N, "seconds": S, "hold": bool}: a workflow of N chained `nap` steps (a test-only
  step type that sleeps S seconds, so a run takes a while) and a run of it, executed by this process's
  engine thread (manual dispatch, `dispatch.drain`) unless held;
- {"cmd": "release"}: let the engine thread execute held work;
- {"cmd": "quiesce"}: release, and answer once the engine thread has nothing left to do;
- {"cmd": "events", "run_id": id}: the run's event log from the database, [[seq, type], ...];
- {"cmd": "status"}: {"active_streams": open streams in this process, "connections": database
  connections this process holds right now}.
"""

import gc
import json
import os
import sys
import threading
import time

import django


def register_nap_step():
    from runs.engine.context import StepOutcome
    from workflows.steps import STEP_TYPES, StepType, object_schema

    def execute(context):
        time.sleep(float(context.config.get("seconds") or 0))
        return StepOutcome.completed({"slept": context.config.get("seconds")})

    STEP_TYPES["nap"] = StepType(
        name="nap",
        description="test-only: sleeps",
        config_schema=object_schema({"seconds": {}}),
        execute=execute,
    )


class Engine:
    """Executes queued steps (manual dispatch) in a thread, unless held."""

    def __init__(self):
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.released.set()
        threading.Thread(target=self._loop, daemon=True).start()

    def quiesce(self, timeout: float = 30) -> None:
        """Release held work and return once the engine has nothing left to do (no step in progress), so
        the test database can be flushed without a worker in the middle of a transaction."""
        from runs.engine import dispatch

        self.released.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not (dispatch.MANUAL_QUEUE or dispatch.MANUAL_ADMISSIONS):
                    return
            time.sleep(0.02)

    def _loop(self):
        from django.db import close_old_connections

        from runs.engine import dispatch

        while True:
            self.released.wait()
            with self.lock:
                busy = bool(dispatch.MANUAL_QUEUE or dispatch.MANUAL_ADMISSIONS)
                if busy:
                    dispatch.drain(limit=1)
            if not busy:
                close_old_connections()
                time.sleep(0.01)


def setup(rate_per_minute: int | None = None) -> dict:
    from django.conf import settings
    from django.test import Client

    from accounts.choices import Role
    from tests.conftest import jwt_for, key_for
    from tests.factories import UserFactory, add_member, make_org

    owner = UserFactory()
    org = make_org(name="Streamers", plan="enterprise", owner=owner)
    if rate_per_minute is not None:
        org.rate_per_minute = rate_per_minute
        org.save(update_fields=["rate_per_minute"])
    viewer = add_member(org, Role.VIEWER)
    other_owner = UserFactory()
    other = make_org(name="Others", plan="enterprise", owner=other_owner)
    browser = Client()
    browser.force_login(viewer)
    return {
        "organization": org.pk,
        "owner": owner.pk,
        "key": key_for(org, owner),
        "key_without_runs_read": key_for(org, owner, ["workflows:read", "runs:write"]),
        "viewer_jwt": jwt_for(viewer, org),
        "viewer_session": browser.cookies[settings.SESSION_COOKIE_NAME].value,
        "other_key": key_for(other, other_owner),
    }


def start_run(
    engine: Engine, organization: str, owner: str, steps: int, seconds: float, hold: bool = False
) -> dict:
    from accounts.models import Organization, User
    from accounts.principal import Principal
    from runs.services import run_create
    from workflows.services import workflow_create

    org = Organization.objects.get(pk=organization)
    actor = Principal(organization=org, user=User.objects.get(pk=owner), role="owner")
    nodes = [{"id": "s1", "type": "nap", "config": {"seconds": seconds}}]
    nodes += [
        {"id": f"s{i}", "type": "nap", "config": {"seconds": seconds}, "depends_on": [f"s{i - 1}"]}
        for i in range(2, steps + 1)
    ]
    workflow = workflow_create(
        organization=org, actor=actor, definition={"name": f"Naps {time.time_ns()}", "steps": nodes}
    )
    if hold:
        engine.released.clear()
    with engine.lock:  # the engine thread starts on the steps only once the run is committed
        run = run_create(workflow=workflow, actor=actor, input_data={})
    return {"run_id": run.pk}


def events(run_id: str) -> list:
    from runs.models import RunEvent

    return [
        list(row) for row in RunEvent.objects.filter(run_id=run_id).order_by("seq").values_list("seq", "type")
    ]


def connections_held() -> int:
    """Database connections open in this process (this thread's is closed first): on PostgreSQL the
    server's count of this process's sessions; on SQLite Django's open connection objects."""
    from django.db import connection

    connection.close()
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        # Open file descriptors are no measure here: SQLite's unix VFS defers closing a connection's
        # file while another connection of the process holds a lock on it, and reuses it later. Count
        # Django's connection objects that have an open database connection, in every thread.
        from django.db.backends.base.base import BaseDatabaseWrapper

        wrappers = [obj for obj in gc.get_objects() if isinstance(obj, BaseDatabaseWrapper)]
        return sum(1 for wrapper in wrappers if wrapper.connection is not None)
    import psycopg

    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        application_name="stream-test-probe",
    ) as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [settings["OPTIONS"]["application_name"]],
        ).fetchone()
    return row[0]


def main(argv):
    django.setup()
    import uvicorn
    from django.core.management import call_command

    from runs import stream

    if os.environ.get("STREAM_TEST_MIGRATE") == "1":
        call_command("migrate", verbosity=0)
    register_nap_step()
    engine = Engine()
    config = uvicorn.Config(
        "config.asgi:application", host="127.0.0.1", port=int(argv[0]), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "setup":
            result = setup(**command)
        elif name == "run":
            result = start_run(engine, **command)
        elif name == "release":
            engine.released.set()
            result = {}
        elif name == "quiesce":
            engine.quiesce()
            result = {}
        elif name == "events":
            result = events(command["run_id"])
        elif name == "status":
            result = {"active_streams": stream.ACTIVE_STREAMS, "connections": connections_held()}
        else:
            result = {"error": f"unknown command {name}"}
        print(json.dumps(result), flush=True)
    server.should_exit = True


if __name__ == "__main__":
    main(sys.argv[1:])
