"""Inbound webhook tokens never reach a log: `/hooks/<workflow_id>/<token>` is written
`/hooks/<workflow_id>/…` in every record this filter sees (Django's handlers via settings.LOGGING, and
uvicorn's access log, whose logger gets the filter in config/apps.py)."""

import logging
import re

HOOK_TOKEN = re.compile(r"(/hooks/[^/\s?\"']+/)[^/\s?\"']+")


def redact_hook_tokens(text: str) -> str:
    return HOOK_TOKEN.sub(r"\1…", text)


class HookTokenFilter(logging.Filter):
    """Redacts the arguments in place (uvicorn's access formatter unpacks them), else the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_hook_tokens(arg) if isinstance(arg, str) and "/hooks/" in arg else arg
                for arg in record.args
            )
        if isinstance(record.msg, str) and "/hooks/" in record.msg:
            record.msg = redact_hook_tokens(record.msg)
        if isinstance(record.args, dict):
            record.args = {
                key: redact_hook_tokens(value) if isinstance(value, str) else value
                for key, value in record.args.items()
            }
        return True
