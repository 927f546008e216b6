"""Monthly quotas and the per-run token cap (docs/quotas.md).

- `check_trigger_quota`: a trigger is refused with 402 `quota_exceeded` when the organisation's runs this
  month reached `monthly_run_limit`, or (for a workflow with agent steps) its tokens this month reached
  `monthly_token_quota`. `run_create` calls it under the organisation's row lock, which every run creation
  takes when a limit applies: the run count read there is exact, so N simultaneous triggers with L runs left
  create exactly L runs (on SQLite the IMMEDIATE transaction serializes writers the same way).
- `call_max_tokens`: before each LLM call of an `agent_task` step, the organisation's monthly token quota
  and the security policy's `max_tokens_per_run` are checked; the call fails with `token_quota_exceeded` /
  `token_limit_exceeded` (not retryable) when one is used up, else its `max_tokens` is clipped to what is
  left of both.

The month is the UTC calendar month (`accounts.selectors.usage_period`), and a run counts, with all its
tokens, in the month it was created in — like `GET /usage`.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Sum

from accounts.models import Organization
from accounts.selectors import usage_period
from config.errors import QuotaExceeded
from runs.engine.context import StepError
from runs.models import Run


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def check_trigger_quota(
    organization, *, uses_agents: bool = True, now: datetime | None = None, created: int = 0
) -> None:
    """Raise QuotaExceeded("quota_exceeded") when the organisation may not start another run this month:
    its runs reached `monthly_run_limit`, or — when the run may call an LLM (`uses_agents`) — its tokens
    reached `monthly_token_quota` (null = unlimited). One aggregate query (a count when tokens need no
    check), none when both are unlimited.

    Exact only under the organisation's row lock (runs.concurrency.lock_organization), as run_create calls
    it; elsewhere it is an early, best-effort answer. `created`: runs this transaction already inserted
    (counted by the query, not against the limit)."""
    if organization is None:
        return
    run_limit = organization.monthly_run_limit
    token_quota = organization.monthly_token_quota if uses_agents else None
    if run_limit is None and token_quota is None:
        return
    period, start, end = usage_period(now)
    if token_quota is None:  # a count alone can be answered from the (organization, created_at) index
        from runs.models import Run

        runs, tokens = (
            Run.objects.filter(organization=organization, created_at__gte=start, created_at__lt=end).count(),
            0,
        )
    else:
        runs, tokens, _cost = run_totals(organization=organization, start=start, end=end)
    runs -= created
    if run_limit is not None and runs >= run_limit:
        raise QuotaExceeded(
            "quota_exceeded",
            f"The organisation has used its monthly run limit ({runs} of {run_limit} runs) for {period}; "
            f"it resets at {_iso(end)}.",
            details={
                "quota": "monthly_run_limit",
                "limit": run_limit,
                "used": runs,
                "period": period,
                "resets_at": _iso(end),
            },
        )
    if token_quota is not None and tokens >= token_quota:
        raise QuotaExceeded(
            "quota_exceeded",
            f"The organisation has used its monthly token quota ({tokens} of {token_quota} tokens) for "
            f"{period}, and this workflow has agent steps; it resets at {_iso(end)}.",
            details={
                "quota": "monthly_token_quota",
                "limit": token_quota,
                "used": tokens,
                "period": period,
                "resets_at": _iso(end),
            },
        )


def batch_fits(organization, count: int, *, uses_agents: bool, now: datetime | None = None) -> bool:
    """Whether `count` more runs fit the organisation's monthly run limit, when none of them may call an
    LLM under a token quota (one count; none when the limit is unlimited). Exact under the organisation's
    row lock, as `check_trigger_quota`. A batch that does not fit is created one run at a time, each run
    checked (runs/services/batch.py), so that exactly the runs left are created."""
    if organization is None or (uses_agents and organization.monthly_token_quota is not None):
        return False
    if organization.monthly_run_limit is None:
        return True
    _period, start, end = usage_period(now)
    used = Run.objects.filter(organization=organization, created_at__gte=start, created_at__lt=end).count()
    return used + count <= organization.monthly_run_limit


def _policy(organization_id: str) -> dict:
    from runs.engine import secrets as engine_secrets

    security = engine_secrets.current(organization_id)
    return security.policy if security is not None else engine_secrets.policy_for(organization_id)


def call_max_tokens(context, max_tokens: int, *, spent: int = 0, now: datetime | None = None) -> int:
    """The `max_tokens` an agent step's next LLM call may use, or a non-retryable StepError:

    - `token_limit_exceeded` when the run's tokens (`Run.total_tokens` — completed steps and failed
      attempts — plus `spent`, this attempt's earlier calls) reached the policy's `max_tokens_per_run`;
    - `token_quota_exceeded` when the organisation's tokens this month (the sum of its runs'
      `total_tokens`, plus `spent`) reached `monthly_token_quota`.

    Otherwise `max_tokens` clipped to what is left of both. One query, two with a monthly quota (the policy
    is the step execution's, already loaded). Tokens of
    calls in flight in other steps are not known until they finish: each may pass a limit by at most its
    own completion (and its prompt), see docs/quotas.md."""
    from runs.models import Run

    row = (
        Run.objects.filter(pk=context.run_id)
        .values_list("total_tokens", "organization_id", "organization__monthly_token_quota")
        .first()
    )
    run_tokens, organization_id, quota = row if row is not None else (0, context.organization_id, None)
    cap = _policy(organization_id).get("max_tokens_per_run")
    if cap is not None:
        used = run_tokens + spent
        if used >= cap:
            raise StepError(
                "token_limit_exceeded",
                f"Step '{context.step_id}' was not run: the run has used {used} tokens, reaching the "
                f"security policy's max_tokens_per_run ({cap}).",
                retryable=False,
                details={"limit": cap, "used": used},
            )
        max_tokens = min(max_tokens, cap - used)
    if quota is not None:
        period, start, end = usage_period(now)
        _runs, tokens, _cost = run_totals(organization=organization_id, start=start, end=end)
        used = tokens + spent
        if used >= quota:
            raise StepError(
                "token_quota_exceeded",
                f"Step '{context.step_id}' was not run: the organisation has used its monthly token quota "
                f"({used} of {quota} tokens) for {period}; it resets at {_iso(end)}.",
                retryable=False,
                details={"limit": quota, "used": used, "period": period, "resets_at": _iso(end)},
            )
        max_tokens = min(max_tokens, quota - used)
    return max(int(max_tokens), 1)


def run_totals(*, organization: Organization, start: datetime, end: datetime) -> tuple[int, int, float]:
    """(runs, tokens, cost in USD) of the organisation's runs created in [start, end), in one aggregate
    query over the (organization, created_at) index. Deleted runs no longer count."""
    totals = Run.objects.filter(
        organization=organization, created_at__gte=start, created_at__lt=end
    ).aggregate(runs=Count("pk"), tokens=Sum("total_tokens"), cost=Sum("cost_usd"))
    return totals["runs"], int(totals["tokens"] or 0), float(totals["cost"] or 0)


def usage_for(organization: Organization, now: datetime | None = None) -> dict:
    """The organisation's usage this month against its limits (`limit` None = unlimited)."""
    period, start, end = usage_period(now)
    runs, tokens, cost = run_totals(organization=organization, start=start, end=end)
    return {
        "period": period,
        "runs": {"used": runs, "limit": organization.monthly_run_limit},
        "tokens": {"used": tokens, "limit": organization.monthly_token_quota},
        "cost_usd": cost,
    }
