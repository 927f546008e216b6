"""Audit chain: verification throughput (database read included, as GET /audit/verify does it),
against raw SHA-256 over the same canonical bytes; in-memory verify; export; append latency."""

import hashlib
import time
from datetime import UTC, datetime, timedelta

import orjson
import rfc8785
from django.db import connection, transaction

from bench.common import Row, best_of, percentile, rate, timed

VERIFY_TARGET = 300_000  # events/s
APPEND_P50_TARGET_MS = 2.0
ACTIONS = (
    ("workflow.created", "workflow", "wf"), ("workflow.updated", "workflow", "wf"),
    ("run.triggered", "run", "run"), ("run.completed", "run", "run"), ("api_key.created", "api_key", "key"),
    ("member.added", "user", "usr"), ("secret.updated", "secret", "sec"), ("run.approved", "run", "run"),
)  # fmt: skip


def add_arguments(parser):
    group = parser.add_argument_group("audit")
    group.add_argument("--events", type=int, default=100_000, help="chain length to verify (default 100,000)")
    group.add_argument("--appends", type=int, default=2_000, help="appends timed for latency (default 2,000)")
    group.add_argument("--repeats", type=int, default=5, help="timed repetitions, best kept (default 5)")


def build_chain(organization, count: int, start_seq: int, prev_hash: str) -> tuple[list, str]:
    """`count` chained AuditEvent rows after (start_seq, prev_hash), hashed by the rule (rfc8785)."""
    from audit.chain import chain_hash
    from audit.models import AuditEvent
    from audit.services import event_as_dict
    from config.ids import new_id

    base = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    rows = []
    for n in range(count):
        event, target_type, prefix = ACTIONS[n % len(ACTIONS)]
        seq = start_seq + n + 1
        row = AuditEvent(
            id=new_id("evt"),
            organization=organization,
            seq=seq,
            event=event,
            actor=f"usr_{n % 7:026d}",
            actor_type="user" if n % 3 else "api_key",
            target_type=target_type,
            target_id=f"{prefix}_{n % 1000:026d}",
            run_id=f"run_{n:026d}" if target_type == "run" else None,
            note="approved after review" if event == "run.approved" else None,
            data={"name": f"Nightly sync {n % 50}", "version": n % 17, "tags": ["etl", "prod"], "ok": True},
            ip="203.0.113.7",
            request_id=f"req_{n:026d}",
            timestamp=base + timedelta(milliseconds=37 * n),
            prev_hash=prev_hash,
            hash="",
        )
        body = event_as_dict(row)
        del body["prev_hash"], body["hash"]
        row.hash = prev_hash = chain_hash(prev_hash, body)
        rows.append(row)
    return rows, prev_hash


def _insert(organization, count: int) -> None:
    from audit.models import AuditChainHead, AuditEvent

    head = AuditChainHead.objects.get(organization=organization)
    rows, last_hash = build_chain(organization, count, head.seq, head.hash)
    with transaction.atomic():
        AuditEvent.objects.bulk_create(rows, batch_size=2000)
        AuditChainHead.objects.filter(pk=head.pk).update(seq=head.seq + count, hash=last_hash)
    with connection.cursor() as cursor:
        # Steady state: a long-running SQLite has its WAL checkpointed, so reads come from the main file.
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            cursor.execute(f"ANALYZE {AuditEvent._meta.db_table}")


def run(options) -> list[Row]:
    from accounts.models import User
    from accounts.principal import SYSTEM
    from accounts.services import organization_create
    from audit import selectors
    from audit.api.views import _export_sync
    from audit.chain import event_body, verify_chain, verify_links
    from audit.services import audit_record

    count = options.events
    owner = User.objects.create_user("bench@baton.test", "bench-password-1")
    org = organization_create(name="Bench", owner=owner)

    started = time.perf_counter()
    _insert(org, count)
    insert_seconds = time.perf_counter() - started
    total = count + 2

    # The full verify, as the API runs it: head, keyset chunks of raw rows, dicts, fast-path hashing.
    verify_seconds, verify_cpu, result = timed(
        options.repeats, lambda: selectors.audit_chain_verify(organization=org)
    )
    assert result.valid and result.checked == total, result.as_dict()

    # The same canonical bytes, hashed by bare hashlib (the floor any verifier in Python stands on).
    events = list(selectors.row_events(selectors.audit_chain_rows(organization=org, upto_seq=total)))
    blobs = [e["prev_hash"].encode() + rfc8785.dumps(event_body(e)) for e in events]
    assert all(orjson.dumps(event_body(e), option=orjson.OPT_SORT_KEYS) == blob[64:]
               for e, blob in zip(events[:1000], blobs, strict=False))  # fmt: skip
    sha = hashlib.sha256
    sha_seconds, sha_cpu, _ = timed(options.repeats, lambda: [sha(blob).hexdigest() for blob in blobs])

    # In memory: no database; dicts as event_as_dict gives them (what `audit_verify FILE` walks).
    memory_seconds, mem = best_of(options.repeats, lambda: verify_chain(events))
    assert mem.valid
    links = [(event_body(e), e["prev_hash"], e["hash"]) for e in events]
    links_seconds, _ = best_of(options.repeats, lambda: verify_links(links))

    export_seconds, size = best_of(
        options.repeats, lambda: sum(len(chunk) for chunk in _export_sync(org.pk, total))
    )

    # Appends through the service, each in its own transaction (commit included).
    samples = []
    for n in range(options.appends):
        begin = time.perf_counter()
        with transaction.atomic():
            audit_record(organization=org, event="bench.append", actor=SYSTEM, target=("run", f"run_{n}"),
                         data={"n": n, "status": "completed"})  # fmt: skip
        samples.append((time.perf_counter() - begin) * 1000)
    p50, p95, p99 = (percentile(samples, p) for p in (50, 95, 99))
    verify_rate = total / verify_seconds
    return [
        Row("audit", f"verify {total:,} events (DB read incl.)", rate(total, verify_seconds),
            f"≥ {VERIFY_TARGET:,}/s",
            f"{verify_seconds * 1000:,.0f} ms wall; {verify_seconds / sha_seconds:.1f}× the time of raw SHA"
            "-256 over the same bytes", verify_rate >= VERIFY_TARGET),
        Row("audit", "  same, by this process's CPU time", rate(total, verify_cpu), "",
            f"{verify_cpu / sha_cpu:.1f}× raw sha256 CPU time; PostgreSQL's server CPU is not counted"),
        Row("audit", "raw hashlib.sha256, same canonical bytes", rate(total, sha_seconds), "",
            f"{sha_seconds * 1000:,.0f} ms; avg {sum(map(len, blobs)) / len(blobs):.0f} bytes/event"),
        Row("audit", "verify in memory (event dicts)", rate(total, memory_seconds), "",
            f"{memory_seconds / sha_seconds:.1f}× raw sha256"),
        Row("audit", "verify in memory (prebuilt bodies)", rate(total, links_seconds), "",
            f"{links_seconds / sha_seconds:.1f}× raw sha256"),
        Row("audit", "export JSON Lines (DB read incl.)", rate(total, export_seconds), "",
            f"{size / export_seconds / 1e6:,.0f} MB/s, {size / 1e6:,.1f} MB"),
        Row("audit", f"append latency p50 ({options.appends:,} appends)", f"{p50:.2f} ms",
            f"≤ {APPEND_P50_TARGET_MS} ms", f"p95 {p95:.2f} ms, p99 {p99:.2f} ms, max {max(samples):.2f} ms; "
            "audit_record in its own transaction, commit included", p50 <= APPEND_P50_TARGET_MS),
        Row("audit", "setup: bulk insert of the chain", rate(count, insert_seconds), "",
            "rows hashed by rfc8785 and bulk-inserted (not timed above)"),
    ]  # fmt: skip
