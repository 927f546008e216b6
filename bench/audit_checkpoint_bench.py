"""Audit checkpoints: the default verify of the events appended since the last checkpoint on a long chain, the
append's latency with checkpoints on and off, and `manage.py audit_verify` of a signed export."""

import base64
import hashlib
import resource
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection, transaction

from bench.common import Row, best_of, percentile, rate, timed

INCREMENTAL_TARGET_MS = 50.0
APPEND_RATIO_TARGET = 1.05
OFFLINE_TARGET = 300_000  # events/s
_COLUMNS = (
    "id",
    "organization_id",
    "seq",
    "event",
    "actor",
    "actor_type",
    "target_type",
    "target_id",
    "run_id",
    "note",
    "data",
    "ip",
    "request_id",
    "timestamp",
    "prev_hash",
    "hash",
)


def add_arguments(parser):
    group = parser.add_argument_group("audit_checkpoints")
    group.add_argument(
        "--chain-events", type=int, default=1_000_000, help="events on the long chain (default 1,000,000)"
    )
    group.add_argument(
        "--new-events",
        type=int,
        default=1_000,
        help="events appended since its last checkpoint (default 1,000)",
    )
    group.add_argument(
        "--export-events",
        type=int,
        default=100_000,
        help="events in the export verified offline (default 100,000)",
    )
    group.add_argument(
        "--append-samples", type=int, default=3_000, help="appends timed in each mode (default 3,000)"
    )


def bulk_chain(org_id: str, count: int, *, signed_upto: int) -> tuple[str, int]:
    """Insert a valid chain of `count` events by bulk SQL, with a signed checkpoint every
    BATON_AUDIT_CHECKPOINT_EVENTS events up to `signed_upto` (rows and file); returns (last hash, how many
    checkpoints).
    Hashed by orjson's sorted compact bytes, the rule's for these events (checked against rfc8785)."""
    from audit.chain import chain_hash, checkpoint_digest, checkpoint_message, format_timestamp
    from audit.checkpoints import checkpoint_path, signing_keys
    from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
    from bench.audit_bench import ACTIONS

    every = settings.BATON_AUDIT_CHECKPOINT_EVENTS
    key = signing_keys()[0]
    base = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    table = AuditEvent._meta.db_table
    data_value = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    values = ", ".join(data_value if column == "data" else "%s" for column in _COLUMNS)
    insert = f"INSERT INTO {table} ({', '.join(_COLUMNS)}) VALUES ({values})"
    sha, dumps, sort = hashlib.sha256, orjson.dumps, orjson.OPT_SORT_KEYS
    prev, batch, checkpoints, previous = "0" * 64, [], [], None
    last_second = stamp = None
    with connection.cursor() as cursor:
        for seq in range(1, count + 1):
            n = seq - 1
            event, target_type, prefix = ACTIONS[n % len(ACTIONS)]
            moment = base + timedelta(milliseconds=37 * n)
            second = moment.replace(microsecond=0)
            if second != last_second:  # format_timestamp's string, built once a second
                last_second, stamp = second, format_timestamp(second)[:-4]
            body = {
                "id": f"evt_{org_id[-10:]}{seq:016d}",
                "organization": org_id,
                "seq": seq,
                "event": event,
                "actor": f"usr_{n % 7:026d}",
                "actor_type": "user" if n % 3 else "api_key",
                "target": {"type": target_type, "id": f"{prefix}_{n % 1000:026d}"},
                "run_id": f"run_{n:026d}" if target_type == "run" else None,
                "note": "approved after review" if event == "run.approved" else None,
                "data": {
                    "name": f"Nightly sync {n % 50}",
                    "version": n % 17,
                    "tags": ["etl", "prod"],
                    "ok": True,
                },
                "ip": "203.0.113.7",
                "request_id": f"req_{n:026d}",
                "timestamp": f"{stamp}{moment.microsecond // 1000:03d}Z",
            }
            link = sha(prev.encode() + dumps(body, option=sort)).hexdigest()
            if seq <= 100:
                assert link == chain_hash(prev, body)
                assert body["timestamp"] == format_timestamp(moment)
            batch.append(
                (
                    body["id"],
                    org_id,
                    seq,
                    event,
                    body["actor"],
                    body["actor_type"],
                    target_type,
                    body["target"]["id"],
                    body["run_id"],
                    body["note"],
                    dumps(body["data"]).decode(),
                    body["ip"],
                    body["request_id"],
                    moment,
                    prev,
                    link,
                )
            )
            prev = link
            if seq % every == 0 and seq <= signed_upto:
                line = {
                    "type": "checkpoint",
                    "organization": org_id,
                    "seq": seq,
                    "hash": link,
                    "signed_at": format_timestamp(moment),
                    "previous": previous,
                    "key_id": key.key_id,
                }
                line["signature"] = base64.b64encode(key.private.sign(checkpoint_message(line))).decode()
                previous = checkpoint_digest(line)
                checkpoints.append(line)
            if len(batch) == 20_000:
                with transaction.atomic():  # one commit per batch, not per row
                    cursor.executemany(insert, batch)
                batch = []
        if batch:
            with transaction.atomic():
                cursor.executemany(insert, batch)
    AuditCheckpoint.objects.bulk_create(
        [
            AuditCheckpoint(
                organization_id=org_id,
                seq=cp["seq"],
                hash=cp["hash"],
                previous=cp["previous"],
                signed_at=datetime.fromisoformat(cp["signed_at"]),
                key_id=cp["key_id"],
                signature=cp["signature"],
            )
            for cp in checkpoints
        ],
        batch_size=1000,
    )
    path = checkpoint_path(org_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(cp) + b"\n" for cp in checkpoints))
    AuditChainHead.objects.update_or_create(organization_id=org_id, defaults={"seq": count, "hash": prev})
    with connection.cursor() as cursor:
        cursor.execute(
            "PRAGMA wal_checkpoint(TRUNCATE)" if connection.vendor == "sqlite" else f"ANALYZE {table}"
        )
    return prev, len(checkpoints)


def _org(name: str):
    from accounts.models import Organization

    return Organization.objects.create(name=name)


@contextmanager
def _checkpoints_off():
    """The append with the checkpoint cadence taken out (what "without checkpoints" measures)."""
    import audit.services

    kept = audit.services.checkpoint_due
    audit.services.checkpoint_due = lambda organization_id, seq: None
    try:
        yield
    finally:
        audit.services.checkpoint_due = kept


def run(options) -> list[Row]:
    from django.core.management import call_command

    from accounts.principal import SYSTEM
    from audit import selectors
    from audit.api.views import _export_sync
    from audit.checkpoints import audit_checkpoint_create, public_keys_document
    from audit.services import audit_record

    rows = []
    # 1. The default verify on a long chain: the checkpoints up to `signed` and the events after them.
    total, new = options.chain_events + options.new_events, options.new_events
    long_chain = _org("Bench long chain")
    started = time.perf_counter()
    _, made = bulk_chain(long_chain.pk, total, signed_upto=options.chain_events)
    setup = time.perf_counter() - started
    seconds, cpu, result = timed(
        options.repeats, lambda: selectors.audit_chain_verify(organization=long_chain)
    )
    assert result.valid and result.checked == new, result.as_dict()
    assert result.checkpoint["seq"] == options.chain_events
    full_started = time.perf_counter()
    full = selectors.audit_chain_verify(organization=long_chain, full=True)
    full_seconds = time.perf_counter() - full_started
    assert full.valid and full.checked == total, full.as_dict()
    rows += [
        Row(
            "audit_checkpoints",
            f"default verify: {new:,} new events on a {total:,}-event chain",
            f"{seconds * 1000:,.1f} ms",
            f"≤ {INCREMENTAL_TARGET_MS:.0f} ms",
            f"agrees with {made:,} checkpoints (one every {settings.BATON_AUDIT_CHECKPOINT_EVENTS:,}), walks "
            f"{new:,}; this process's CPU {cpu * 1000:,.1f} ms; full=true: {full_seconds:,.1f} s",
            seconds * 1000 <= INCREMENTAL_TARGET_MS,
        ),
        Row(
            "audit_checkpoints",
            "setup: bulk SQL insert of the chain",
            rate(total, setup),
            "",
            f"{setup:,.0f} s, hashed and signed in Python (not timed above)",
        ),
    ]

    # 2. Append latency, checkpoints on (the default cadence) and off, in alternating blocks.
    appends = _org("Bench appends")
    audit_record(organization=appends, event="bench.first", actor=SYSTEM)
    samples = {True: [], False: []}
    block = 40  # 1,000 is 25 blocks: checkpoint seqs fall in both modes' blocks in turn
    for index in range(2 * -(-options.append_samples // block)):
        on = index % 2 == 0
        with _checkpoints_on_or_off(on):
            for n in range(block):
                begin = time.perf_counter()
                with transaction.atomic():
                    audit_record(
                        organization=appends,
                        event="bench.append",
                        actor=SYSTEM,
                        target=("run", f"run_{n}"),
                        data={"n": n, "status": "completed"},
                    )
                samples[on].append((time.perf_counter() - begin) * 1000)
    with_p50, without_p50 = percentile(samples[True], 50), percentile(samples[False], 50)
    from audit.models import AuditCheckpoint

    signed = AuditCheckpoint.objects.filter(organization=appends).count()
    rows.append(
        Row(
            "audit_checkpoints",
            "append p50, checkpoints on vs off",
            f"{with_p50 / without_p50:.3f}×",
            f"≤ {APPEND_RATIO_TARGET:.2f}×",
            f"{with_p50:.3f} ms vs {without_p50:.3f} ms ({len(samples[True]):,} appends each, alternating "
            f"blocks of {block}; {signed} checkpoints signed; p95 {percentile(samples[True], 95):.3f} vs "
            f"{percentile(samples[False], 95):.3f} ms)",
            with_p50 / without_p50 <= APPEND_RATIO_TARGET,
        )
    )

    # 3. `manage.py audit_verify` of a signed export.
    exported = _org("Bench export")
    count = options.export_events
    bulk_chain(exported.pk, count, signed_upto=count)
    audit_checkpoint_create(organization=exported)
    path = Path(settings.BATON_AUDIT_CHECKPOINT_DIR).parent / "export.jsonl"
    checkpoints = selectors.audit_checkpoints(organization=exported)
    with path.open("wb") as file:
        for chunk in _export_sync(exported.pk, count, checkpoints):
            file.write(chunk)
    key = public_keys_document()["keys"][0]["public_key"]

    def verify(*extra, with_key=True):
        out = StringIO()
        call_command(
            "audit_verify", str(path), *(("--public-key", key) if with_key else ()), *extra, stdout=out
        )
        assert out.getvalue().startswith(f"OK: checked {count} events"), out.getvalue()

    def with_children_cpu(func) -> tuple[float, float]:
        """Fastest wall and CPU seconds, the CPU of the verifier's forked workers included."""
        wall = cpu = float("inf")
        for _ in range(options.repeats):
            started, before = time.perf_counter(), _cpu_with_children()
            func()
            wall, cpu = min(wall, time.perf_counter() - started), min(cpu, _cpu_with_children() - before)
        return wall, cpu

    import os

    parallel, parallel_cpu = with_children_cpu(verify)
    single, single_cpu = with_children_cpu(lambda: verify("--processes", "1"))
    # The baseline, in the same run: without a key every line is parsed and canonicalized (all lines were,
    # before 2026-12-07).
    unsigned, unsigned_cpu = with_children_cpu(lambda: verify("--processes", "1", with_key=False))
    size = path.stat().st_size
    lines = path.read_bytes().split(b"\n")

    def floor():  # parse, canonicalize and hash every event line: what a verifier that trusts no bytes pays
        sha, loads, dumps, sort = hashlib.sha256, orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
        for line in lines:
            if line and not line.startswith(b'{"type"'):
                event = loads(line)
                prev, link = event.pop("prev_hash"), event.pop("hash")
                assert sha(prev.encode() + dumps(event, option=sort)).hexdigest() == link

    floor_seconds, _ = best_of(options.repeats, floor)
    per_event = 1e6 / count
    rows += [
        Row(
            "audit_checkpoints",
            f"audit_verify of a {count:,}-event export",
            rate(count, parallel),
            f"≥ {OFFLINE_TARGET:,}/s",
            f"{parallel * 1000:,.0f} ms, {os.cpu_count()} processes, CPU {parallel_cpu * per_event:.2f} "
            f"µs/event; {len(checkpoints)} signatures checked; {size / 1e6:,.1f} MB; "
            f"{unsigned / parallel:.2f}× the baseline below",
            count / parallel >= OFFLINE_TARGET,
        ),
        Row(
            "audit_checkpoints",
            "  same, one process",
            rate(count, single),
            "",
            f"{single * 1000:,.0f} ms; CPU {single_cpu * per_event:.2f} µs/event; "
            f"{unsigned / single:.2f}× the baseline",
        ),
        Row(
            "audit_checkpoints",
            "  baseline: one process, no key (every line parsed and canonicalized)",
            rate(count, unsigned),
            "",
            f"{unsigned * 1000:,.0f} ms; CPU {unsigned_cpu * per_event:.2f} µs/event",
        ),
        Row(
            "audit_checkpoints",
            "  floor of the baseline: parse + canonicalize + SHA-256 each line",
            rate(count, floor_seconds),
            "",
            f"{floor_seconds * 1000:,.0f} ms, no checks, no file read",
        ),
    ]
    return rows


def _cpu_with_children() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def _checkpoints_on_or_off(on: bool):
    if on:
        yield
    else:
        with _checkpoints_off():
            yield
