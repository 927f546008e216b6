"""Settings for the multi-process server the race tests start: Baton's own, plus the test-only URLs."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tests.config.support.urls_testing"
