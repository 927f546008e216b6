"""Who hears of a workflow's failed runs (docs/notifications.md): each person subscribes or unsubscribes
themselves; an admin or owner may remove anyone's subscription. Subscriptions are preferences, not
security settings, so they are not audited."""

from accounts.choices import Role
from config.errors import Forbidden, NotFound
from runs.models import WorkflowSubscription


def subscribers_of(workflow) -> list:
    """The workflow's subscribers who are still members of its organisation, by email (one query)."""
    rows = (
        WorkflowSubscription.objects.filter(
            workflow=workflow, user__memberships__organization_id=workflow.organization_id
        )
        .select_related("user")
        .order_by("user__email")
    )
    return [row.user for row in rows]


def subscription_set(*, workflow, actor, subscribed: bool) -> None:
    """Subscribe (or unsubscribe) the acting person to the workflow's failure notices (idempotent)."""
    if actor.user is None:
        raise Forbidden("forbidden", "Only a person can subscribe to failure notices.")
    if subscribed:
        WorkflowSubscription.objects.get_or_create(workflow=workflow, user=actor.user)
    else:
        WorkflowSubscription.objects.filter(workflow=workflow, user=actor.user).delete()


def subscription_remove(*, workflow, actor, user_id: str):
    """Remove a person's subscription to the workflow (an admin's or owner's action, or the person's own);
    returns that person. NotFound when they are not subscribed (or not in the workflow's organisation)."""
    own = actor.user is not None and actor.user.pk == user_id
    if not own and not actor.has_role(Role.ADMIN):
        raise Forbidden("forbidden", "Removing someone else's subscription needs the admin role or higher.")
    members = {"user__memberships__organization_id": workflow.organization_id}
    row = (
        WorkflowSubscription.objects.select_related("user")
        .filter(workflow=workflow, user_id=user_id, **members)
        .first()
    )
    deleted = WorkflowSubscription.objects.filter(pk=row.pk).delete()[0] if row is not None else 0
    if not deleted:
        raise NotFound("subscription_not_found", "This person does not follow this workflow's failures.")
    return row.user
