"""Does a django-q2 cluster still execute tasks after a SIGKILL of one of its processes? (docs/reliability.md)

    python bench/cluster_probe.py --kills 40 --seed 1        # SQLite, or PostgreSQL + Redis with DATABASE_URL

One `manage.py qcluster` of two workers on a scratch database, a light stream of tasks (sleeps of 0–0.2 s,
ten a second), and every 1–3 s a SIGKILL of a random process under its sentinel (a worker, the pusher or
the monitor). A second after each kill a probe task must execute within 10 s; when it does not, the kill
stopped the cluster, which is then started again. Prints how many kills stopped it.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, load_average


def probe(marks: Path, timeout: float = 10) -> bool:
    """True when a task enqueued now executes within `timeout` seconds (it makes a directory)."""
    from django_q.tasks import async_task

    mark = marks / uuid.uuid4().hex
    async_task("os.mkdir", str(mark))
    deadline = time.monotonic() + timeout
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return mark.exists()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    stack = Stack("probe", BATON_ENGINE_DISPATCH="queue", BATON_WORKERS=2).prepare()
    from django.db import connection
    from django_q.tasks import async_task

    from tests.runs.support.kill_harness import Cluster  # the crash tests' harness (needs the settings)

    rng = random.Random(options.seed)
    marks = Path(tempfile.mkdtemp(dir=stack.scratch))
    cluster = Cluster(stack.env, "probe", log=Path(stack.scratch) / "cluster.log").start()
    stop = threading.Event()

    def stream():
        pick = random.Random(options.seed + 1)
        while not stop.wait(0.1):
            async_task("time.sleep", pick.choice([0, 0.05, 0.2]))
        connection.close()

    stopped = kills = 0
    load_before = load_average()
    threading.Thread(target=stream, daemon=True).start()
    try:
        time.sleep(6)  # the cluster starts
        for _ in range(options.kills):
            time.sleep(rng.uniform(1, 3))
            victims = cluster.children()
            if not victims:
                continue
            cluster.kill_process(rng.choice(victims))
            kills += 1
            time.sleep(1)
            if not probe(marks):
                stopped += 1
                cluster.kill()
                cluster.start()
                time.sleep(6)
    finally:
        stop.set()
        cluster.kill()
        stack.close()
    print(f"{stack.backend}: {stopped} of {kills} kills stopped the cluster "
          f"(load average {load_before} at start, {load_average()} at the end)")  # fmt: skip
    return 1 if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
