"""Template helpers of the dashboard: timestamps for the browser's zone, pretty JSON, status badges."""

import json
from datetime import UTC

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

JSON_PREVIEW_CHARS = 4000


@register.simple_tag
def when(moment, empty="—"):
    """<time datetime=ISO title="exact UTC">UTC text</time>; dashboard.js rewrites the text in the
    browser's time zone and keeps the exact UTC time in the title."""
    if moment is None:
        return empty
    utc = moment.astimezone(UTC)
    exact = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        utc.isoformat().replace("+00:00", "Z"),
        exact,
        utc.strftime("%Y-%m-%d %H:%M UTC"),
    )


@register.simple_tag
def json_block(value, limit=JSON_PREVIEW_CHARS, download=""):
    """A value as indented JSON in <pre>, cut at `limit` characters with a note saying how much is left
    (and a link to `download`, when given, for the whole value)."""
    if value is None:
        return mark_safe('<p class="muted">None</p>')
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    if len(text) <= limit:
        return format_html('<pre class="json">{}</pre>', text)
    note = format_html(
        '<pre class="json">{}</pre><p class="muted">Truncated: {} of {} characters shown.',
        text[:limit],
        limit,
        len(text),
    )
    link = (
        format_html(' <a href="{}" download>Download the whole value (JSON)</a>', download)
        if download
        else ""
    )
    return format_html("{}{}</p>", note, link)


@register.simple_tag
def status(value, label=None):
    """A status badge: the word is always written (colour is never the only signal)."""
    text = label or str(value).replace("_", " ")
    return format_html('<span class="status status-{}">{}</span>', value, text)


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.simple_tag
def duration(start, end, empty="—"):
    """How long from `start` to `end` (both datetimes), in the largest fitting units."""
    if start is None or end is None:
        return empty
    return format_seconds(max(0.0, (end - start).total_seconds()))
