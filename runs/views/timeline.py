"""A run's steps on a time axis (the run page's Gantt chart), laid out here and drawn as SVG."""

from dataclasses import dataclass

from django.utils import timezone

from config.templatetags.baton import format_seconds

WIDTH = 640
LABEL = 150
ROW = 24


@dataclass(frozen=True)
class Bar:
    step_id: str
    status: str
    x: float
    width: float
    y: int
    label: str  # e.g. "1.2 s", or "running"


def timeline(steps) -> dict | None:
    """Bars for the steps that started (each from its start to its end, or to now while running); None
    when no step started yet."""
    started = [step for step in steps if step.started_at is not None]
    if not started:
        return None
    now = timezone.now()
    begin = min(step.started_at for step in started)
    end = max(step.completed_at or now for step in started)
    span = max((end - begin).total_seconds(), 0.001)
    scale = (WIDTH - LABEL - 10) / span
    bars = []
    for row, step in enumerate(started):
        finish = step.completed_at or now
        seconds = (finish - step.started_at).total_seconds()
        bars.append(
            Bar(
                step_id=step.step_id,
                status=step.status,
                x=round(LABEL + (step.started_at - begin).total_seconds() * scale, 1),
                width=round(max(2.0, seconds * scale), 1),
                y=row * ROW,
                label=format_seconds(seconds) if step.completed_at else step.status.replace("_", " "),
            )
        )
    return {"bars": bars, "width": WIDTH, "height": len(bars) * ROW, "total": format_seconds(span)}
