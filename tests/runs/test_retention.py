"""Retention: finished, unpinned runs older than their retention go with their steps, events and files;
nothing else does (active, pinned, recent runs; the audit log). Runs are real (the manual engine driver),
then aged by moving their timestamps back."""

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from runs import retention
from runs.choices import RunStatus
from runs.models import Run, RunEvent, RunFile, StepRun
from runs.services import run_create
from tests.runs.conftest import transform

STEPS = [transform("a", "{{ 1 }}"), transform("b", "{{ steps.a.output + 1 }}", depends_on=["a"])]


def age(run, days, *, completed=True):
    then = timezone.now() - timedelta(days=days)
    Run.objects.filter(pk=run.pk).update(
        created_at=then - timedelta(minutes=5), completed_at=then if completed else None
    )


def finished_runs(engine, count, *, workflow=None):
    workflow = workflow or engine.workflow(STEPS)
    runs = [run_create(workflow=workflow, actor=engine.actor, input_data={}) for _ in range(count)]
    engine.drain()
    assert set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True)) == {
        RunStatus.COMPLETED
    }
    return runs


def attach(run, media_root, name="report.txt", body=b"hello"):
    from config.ids import new_id

    file_id = new_id("file")
    path = media_root / run.organization_id / file_id
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    RunFile.objects.create(
        id=file_id, run=run, organization_id=run.organization_id, name=name, size=len(body),
        sha256="0" * 64, storage_path=f"{run.organization_id}/{file_id}",
    )  # fmt: skip
    return path


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "files"
    return settings.MEDIA_ROOT


def test_expired_runs_go_with_steps_events_and_files_and_the_audit_log_stays(
    engine, org, media_root, django_capture_on_commit_callbacks
):
    old, recent = finished_runs(engine, 2)
    age(old, 91)
    age(recent, 89)
    old_file, recent_file = attach(old, media_root), attach(recent, media_root)
    audit_before = set(AuditEvent.objects.filter(organization=org).values_list("id", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        assert retention.prune_expired_runs() == 1

    assert list(Run.objects.values_list("id", flat=True)) == [recent.pk]
    assert not StepRun.objects.filter(run_id=old.pk).exists()
    assert not RunEvent.objects.filter(run_id=old.pk).exists()
    assert not RunFile.objects.filter(run_id=old.pk).exists()
    assert not old_file.exists() and recent_file.exists()
    assert StepRun.objects.filter(run_id=recent.pk).count() == 2 and RunEvent.objects.filter(run_id=recent.pk)
    # The audit log is never pruned; the prune itself is recorded.
    audit_after = AuditEvent.objects.filter(organization=org)
    assert audit_before < set(audit_after.values_list("id", flat=True))
    assert audit_after.filter(run_id=old.pk, event="run.triggered").exists()
    pruned = audit_after.get(event="runs.pruned")
    assert pruned.actor_type == "system" and pruned.data["run_ids"] == [old.pk]
    assert pruned.data["count"] == 1 and pruned.data["retention_days"] == 90


def test_active_pinned_and_recent_runs_are_kept(engine, org):
    done, pinned = finished_runs(engine, 2)
    age(done, 200)
    age(pinned, 200)
    Run.objects.filter(pk=pinned.pk).update(pinned=True)
    workflow = engine.workflow(STEPS)
    active = run_create(workflow=workflow, actor=engine.actor, input_data={})  # queued, not drained
    age(active, 200, completed=False)
    Run.objects.filter(pk=active.pk).update(status=RunStatus.RUNNING)

    assert retention.prune_expired_runs() == 1
    assert set(Run.objects.values_list("id", flat=True)) == {pinned.pk, active.pk}
    engine.drain()


def test_workflow_override_wins_over_the_organisation(engine, org):
    short = engine.workflow(STEPS)
    short.retention_days = 7
    short.save(update_fields=["retention_days"])
    long_kept = engine.workflow(STEPS)
    long_kept.retention_days = 365
    long_kept.save(update_fields=["retention_days"])
    plain = engine.workflow(STEPS)
    (short_run,) = finished_runs(engine, 1, workflow=short)
    (long_run,) = finished_runs(engine, 1, workflow=long_kept)
    (plain_run,) = finished_runs(engine, 1, workflow=plain)
    for run in (short_run, long_run, plain_run):
        age(run, 100)  # older than the organisation's 90 days

    assert retention.count_expired_runs() == {org.pk: 2}
    assert retention.prune_expired_runs() == 2
    assert list(Run.objects.values_list("id", flat=True)) == [long_run.pk]

    (recent_plain,) = finished_runs(engine, 1, workflow=plain)
    age(recent_plain, 10)
    org.retention_days = 5
    org.save(update_fields=["retention_days"])
    assert retention.prune_expired_runs() == 1
    assert list(Run.objects.values_list("id", flat=True)) == [long_run.pk]


def test_other_organisations_use_their_own_retention(engine, org, other_org, outsider):
    from accounts.principal import Principal
    from tests.runs.conftest import Driver

    other = Driver(other_org, Principal(organization=other_org, user=outsider, role="owner"))
    other_org.retention_days = 365
    other_org.save(update_fields=["retention_days"])
    (mine,) = finished_runs(engine, 1)
    (theirs,) = finished_runs(other, 1)
    age(mine, 100)
    age(theirs, 100)
    assert retention.prune_expired_runs() == 1
    assert list(Run.objects.values_list("id", flat=True)) == [theirs.pk]


def test_batches_each_commit_on_their_own_and_reruns_lose_only_their_link(engine, org):
    runs = finished_runs(engine, 7)
    for run in runs:
        age(run, 120)
    rerun = run_create(workflow=runs[0].workflow, actor=engine.actor, input_data={}, parent_run=runs[0])
    engine.drain()

    assert retention.prune_expired_runs(batch=3) == 7
    assert list(Run.objects.values_list("id", flat=True)) == [rerun.pk]
    assert Run.objects.get(pk=rerun.pk).parent_run_id is None
    batches = AuditEvent.objects.filter(organization=org, event="runs.pruned").order_by("seq")
    assert [event.data["count"] for event in batches] == [3, 3, 1]


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    """The prune's pauses, recorded instead of slept. Only the retention module's `time` is replaced:
    `time.sleep` itself is every thread's (an engine thread left by an earlier test would spin on it)."""
    recorded = []
    monkeypatch.setattr(retention, "time", SimpleNamespace(monotonic=time.monotonic, sleep=recorded.append))
    return recorded


def test_oldest_runs_go_first_and_each_batch_is_followed_by_its_pause(engine, org, pauses):
    runs = finished_runs(engine, 5)
    for days, run in zip((150, 110, 190, 130, 170), runs, strict=True):
        age(run, days)

    assert retention.prune_expired_runs(batch=2, pause_percent=100) == 5
    batches = AuditEvent.objects.filter(organization=org, event="runs.pruned").order_by("seq")
    oldest_first = [runs[2].pk, runs[4].pk, runs[0].pk, runs[3].pk, runs[1].pk]
    assert [event.data["run_ids"] for event in batches] == [
        sorted(oldest_first[:2]),
        sorted(oldest_first[2:4]),
        oldest_first[4:],
    ]
    assert len(pauses) == 3 and all(pause > 0 for pause in pauses)


def test_no_pause_at_zero_percent_and_the_setting_is_the_default(engine, settings, pauses):
    for run in finished_runs(engine, 2):
        age(run, 120)
    assert retention.prune_expired_runs(batch=1, pause_percent=0) == 2
    assert pauses == []

    settings.BATON_RETENTION_PAUSE_PERCENT = 50
    (run,) = finished_runs(engine, 1)
    age(run, 120)
    assert retention.prune_expired_runs(batch=1) == 1
    assert len(pauses) == 1 and pauses[0] > 0


def test_a_sub_workflow_run_outlives_its_pruned_parent_without_the_links(engine, org):
    parent, child = finished_runs(engine, 2)
    parent_step = StepRun.objects.filter(run=parent).first()
    Run.objects.filter(pk=child.pk).update(parent_run=parent, parent_step_run=parent_step, pinned=True)
    age(parent, 120)
    age(child, 120)

    assert retention.prune_expired_runs() == 1
    child.refresh_from_db()
    assert (child.parent_run_id, child.parent_step_run_id) == (None, None)
    assert not StepRun.objects.filter(run_id=parent.pk).exists()


def test_a_batch_deletes_with_a_fixed_number_of_queries(engine, django_assert_max_num_queries):
    steps = [transform(f"s{i}", "{{ 1 }}", depends_on=[f"s{i - 1}"] if i else None) for i in range(10)]
    steps[0].pop("depends_on", None)
    runs = finished_runs(engine, 20, workflow=engine.workflow(steps))
    for run in runs:
        age(run, 120)
    assert StepRun.objects.count() == 200
    with django_assert_max_num_queries(30):
        assert retention.prune_expired_runs() == 20
    assert not StepRun.objects.exists() and not RunEvent.objects.exists()


def test_a_run_resumed_after_the_scan_is_not_deleted(engine, org):
    (run,) = finished_runs(engine, 1)
    age(run, 120)
    scope = retention.Scope(organization=org, days=90)
    queryset, cutoff = scope.candidates(timezone.now())
    ids = list(queryset.values_list("id", flat=True))
    assert ids == [run.pk]
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)  # e.g. resumed meanwhile
    assert retention._delete_batch(scope, ids, cutoff) == 0
    assert Run.objects.filter(pk=run.pk).exists()


def test_maybe_prune_runs_once_per_window_across_processes(engine, settings, monkeypatch):
    settings.BATON_RETENTION_INTERVAL_SECONDS = 3600
    (run,) = finished_runs(engine, 1)
    age(run, 100)
    monkeypatch.setattr(retention, "_checked_window", None)
    now = timezone.now().replace(minute=10)

    assert retention.maybe_prune(now) == 1
    assert retention.maybe_prune(now + timedelta(minutes=5)) is None  # this process already asked
    # Another process (its own memo) in the same window: the shared guard says it is not its turn.
    monkeypatch.setattr(retention, "_checked_window", None)
    (late,) = finished_runs(engine, 1)
    age(late, 100)
    assert retention.maybe_prune(now + timedelta(minutes=20)) is None
    assert Run.objects.filter(pk=late.pk).exists()
    # The next window: whoever comes first prunes.
    assert retention.maybe_prune(now + timedelta(hours=1)) == 1
    assert not Run.objects.exists()


def test_prune_runs_command_dry_run_then_for_real(engine, org, capsys):
    runs = finished_runs(engine, 2)
    for run in runs:
        age(run, 100)
    call_command("prune_runs", "--dry-run")
    out = capsys.readouterr().out
    assert f"{org.pk}: 2 run(s) would be deleted" in out and "2 run(s) would be deleted (dry run" in out
    assert Run.objects.count() == 2
    call_command("prune_runs", "--batch", "1")
    assert "2 run(s) deleted" in capsys.readouterr().out
    assert not Run.objects.exists()


def test_retention_imports_nothing_from_the_http_layer():
    """The engine's reconciler calls maybe_prune(): retention must keep the engine's import rule."""
    from tests.runs.test_engine_imports import walk_imports

    seen, offenders = walk_imports(["runs.retention"])
    assert "runs.services" in seen and "audit.services" in seen
    assert offenders == []
