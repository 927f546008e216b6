from django.conf import settings
from django.db import models


class Plan(models.TextChoices):
    STARTER = "starter", "Starter"
    GROWTH = "growth", "Growth"
    ENTERPRISE = "enterprise", "Enterprise"
    SELF_HOSTED = "self_hosted", "Self-hosted"


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# owner ⊃ admin ⊃ member ⊃ viewer
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def role_at_least(role: str, minimum: str) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(minimum)]


class Scope(models.TextChoices):
    WORKFLOWS_READ = "workflows:read"
    WORKFLOWS_WRITE = "workflows:write"
    RUNS_READ = "runs:read"
    RUNS_WRITE = "runs:write"
    RUNS_APPROVE = "runs:approve"
    AUDIT_READ = "audit:read"
    ADMIN = "admin"


DEFAULT_KEY_SCOPES = [Scope.WORKFLOWS_READ.value, Scope.RUNS_READ.value, Scope.RUNS_WRITE.value]
ALL_SCOPES = [scope.value for scope in Scope]


def plan_limits(plan: str) -> dict:
    """Default limits of a plan; None (or a limit the plan does not name) means unlimited. Starter, Growth
    and Enterprise are for operators who host Baton for others; Self-hosted (BATON_DEFAULT_PLAN's default)
    has no quota or rate limit, and caps runs at once only when BATON_MAX_CONCURRENT_RUNS is set
    (docs/quotas.md "Plans"). The schedule limits (docs/schedules.md "Limits"): schedules per organisation
    and per workflow, and the shortest interval between two fire times, never below
    BATON_SCHEDULE_MIN_INTERVAL_SECONDS (the machine's own floor, whatever the plan)."""
    cap = settings.BATON_MAX_CONCURRENT_RUNS
    return {
        Plan.STARTER: {
            "rate_per_minute": 60,
            "rate_per_day": 5_000,
            "monthly_run_limit": 1_000,
            "monthly_token_quota": 1_000_000,
            "max_concurrent_runs": cap,
            "max_schedules": 20,
            "max_schedules_per_workflow": 5,
            "min_schedule_interval_seconds": 300,
        },
        Plan.GROWTH: {
            "rate_per_minute": 300,
            "rate_per_day": 100_000,
            "monthly_run_limit": 50_000,
            "monthly_token_quota": 50_000_000,
            "max_concurrent_runs": cap,
            "max_schedules": 500,
            "max_schedules_per_workflow": 20,
            "min_schedule_interval_seconds": 60,
        },
        Plan.ENTERPRISE: {
            "rate_per_minute": None,
            "rate_per_day": None,
            "monthly_run_limit": None,
            "monthly_token_quota": None,
            "max_concurrent_runs": cap,
            "max_schedules": None,
            "max_schedules_per_workflow": None,
            "min_schedule_interval_seconds": None,
        },
        Plan.SELF_HOSTED: {
            "rate_per_minute": None,
            "rate_per_day": None,
            "monthly_run_limit": None,
            "monthly_token_quota": None,
            "max_concurrent_runs": settings.BATON_SELF_HOSTED_MAX_CONCURRENT_RUNS,
            "max_schedules": None,
            "max_schedules_per_workflow": None,
            "min_schedule_interval_seconds": None,
        },
    }[Plan(plan)]


LIMIT_FIELDS = [
    "rate_per_minute",
    "rate_per_day",
    "monthly_run_limit",
    "monthly_token_quota",
    "max_concurrent_runs",
    "max_schedules",
    "max_schedules_per_workflow",
    "min_schedule_interval_seconds",
]
