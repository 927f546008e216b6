"""Settings for the cluster tests' subprocesses: Baton's own, on a queue named for this test run, so parallel
test runs sharing one Redis never take each other's tasks."""

import os

from config.settings import *  # noqa: F403
from config.settings import Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "name": os.environ["BATON_TEST_QUEUE"]}
if os.environ.get("BATON_TEST_RECYCLE"):  # django-q2 recycles a worker after this many tasks
    Q_CLUSTER["recycle"] = int(os.environ["BATON_TEST_RECYCLE"])
