"""Template context for every dashboard page: the inbox badge and what the person's role allows."""

from runs.views.selectors import awaiting_person_count


def dashboard(request) -> dict:
    """Lazy values (templates call them only when the navigation is drawn, i.e. on signed-in pages)."""
    principal = getattr(request, "principal", None)
    if principal is None:
        return {}
    return {
        "inbox_count": lambda: awaiting_person_count(principal=principal),
        "can_write": principal.has_role("member"),
        "can_admin": principal.has_role("admin"),
        "principal": principal,
    }
