"""The rate limit and budget of a key, a user or a tenant, as the API shows and takes them (one shape for all)."""

from __future__ import annotations

from appliance.accounting.budgets import Budgets
from appliance.db.keys import Budget
from appliance.protocol.keys import BudgetIn, BudgetOut, Spent
from appliance.serving.errors import validation_error


def to_budget(budget: BudgetIn | None) -> Budget | None:
    if budget is None:
        return None
    return Budget(budget.period, budget.tokens, budget.images,
                  float(budget.audio_seconds) if budget.audio_seconds is not None else None,
                  float(budget.cost) if budget.cost is not None else None)


def budget_out(budgets: Budgets, scope_id: str, budget: Budget | None) -> BudgetOut | None:
    """The budget with what its scope spent and holds reserved in the current period."""
    if budget is None:
        return None
    spend = budgets.spend_of(scope_id, budget)
    return BudgetOut(
        period=budget.period, tokens=budget.tokens, images=budget.images,  # type: ignore[arg-type]
        audio_seconds=budget.audio_seconds, cost=budget.cost,
        period_resets_at=spend[0].resets_at if spend else None,
        spend=[Spent(unit=s.unit, limit=s.limit, spent=round(s.spent, 9 if s.unit == "cost" else 3),
                     reserved=round(s.reserved, 9 if s.unit == "cost" else 3),
                     remaining=round(max(0.0, s.limit - s.spent - s.reserved), 9 if s.unit == "cost" else 3))
               for s in spend])


def budget_warnings(budgets: Budgets, scope_id: str, budget: Budget | None, owner: str) -> list[str]:
    """What a new budget means when its period has already used it up: accepted, but new requests are refused."""
    if budget is None:
        return []
    out = []
    for spend in budgets.spend_of(scope_id, budget):
        if spend.spent >= spend.limit:
            renews = (f"until it renews at {spend.resets_at:%Y-%m-%dT%H:%M:%SZ}" if spend.resets_at
                      else "for good (a total budget), unless it is raised")
            period = "in total" if budget.period == "total" else f"this {budget.period}"
            out.append(f"budget.{spend.unit}: the new limit of {spend.limit:g} is at or below the "
                       f"{round(spend.spent, 9):g} this {owner} has already spent {period}; its new requests are "
                       f"refused {renews}.")
    return out


def check_rate_limit(rate_limit: int | None) -> None:
    if rate_limit is not None and rate_limit <= 0:
        raise validation_error("rate_limit", "must be a positive number of requests per minute")
