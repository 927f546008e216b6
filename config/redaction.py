"""Inbound webhook tokens never reach a log: `/hooks/<workflow_id>/<token>` is written
`/hooks/<workflow_id>/…` in every record this filter sees (Django's handlers via settings.LOGGING, and
uvicorn's access log, whose logger gets the filter in config/apps.py)."""

import logging
import re

HOOK_TOKEN = re.compile(r"(/hooks/[^/\s?\"']+/)[^/\s?\"']+")


def redact_hook_tokens(text: str) -> str:
    return HOOK_TOKEN.sub(r"\1…", text)


class HookTokenFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's error path
            return True
        if "/hooks/" in message:
            record.msg = redact_hook_tokens(message)
            record.args = None
        return True
