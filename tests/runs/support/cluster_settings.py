"""Settings for the cluster tests' subprocesses: Baton's own, on a queue named for this test run, so parallel
test runs sharing one Redis never take each other's tasks."""

import os

from config.settings import *  # noqa: F403
from config.settings import Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "name": os.environ["BATON_TEST_QUEUE"]}
