"""The email backend without BATON_EMAIL_URL: Django's console backend, written to stderr (with the logs)
so that a process whose stdout is data (a management command's `--json`, a worker) is not mixed with
emails such as notifications."""

import sys

from django.core.mail.backends.console import EmailBackend as ConsoleBackend


class StderrEmailBackend(ConsoleBackend):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream", sys.stderr)
        super().__init__(*args, **kwargs)
