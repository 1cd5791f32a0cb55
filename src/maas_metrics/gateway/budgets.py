"""Monthly budgets at the gateway: checked with the policies, charged with the token report.

The month's counter is checked in the admission's own store round trip,
before both policies (`BudgetCheck`): a hard budget rejects a user whose
month is at or over its amount (429 `budget_exceeded`, saying when the
month renews) and no policy counts the request; a soft one serves with an
`X-Budget-Warning` header. Like Limitador's token policy this is
check-then-report: requests already in flight when the budget runs out
still finish and are charged, so a month can end slightly over its amount,
and the counter says by exactly how much. Dollars are the config's prices in
force on the day of the answer (`report.pricing`, the report's own prices).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from maas_metrics.config import Budget, Config
from maas_metrics.gateway import errors
from maas_metrics.gateway.auth import Identity
from maas_metrics.gateway.metering import Usage
from maas_metrics.limiter import BudgetCheck, CounterStore, StoreUnavailable
from maas_metrics.limiter.budget import NANO_PER_USD, BudgetCounter, BudgetState
from maas_metrics.report.pricing import Price, price_on
from maas_metrics.report.pricing import Usage as PricedUsage
from maas_metrics.telemetry.metrics import Family

log = logging.getLogger(__name__)

BUDGET_LABELS = ("user", "tier", "unit")
CALL_LABELS = ("user", "tier")


@dataclass(frozen=True, slots=True)
class UserBudget:
    """A user's budget and its amount in counter units (tokens or nano-dollars)."""

    budget: Budget
    limit: int

    def display(self, units: int) -> float:
        """Counter units in the budget's unit (dollars or tokens)."""
        return units / NANO_PER_USD if self.budget.unit == "usd" else float(units)

    def text(self, units: int) -> str:
        if self.budget.unit == "usd":
            return f"${self.display(units):,.2f}"
        return f"{units:,} tokens"


def _units(budget: Budget, amount: float) -> int:
    return round(amount * NANO_PER_USD) if budget.unit == "usd" else round(amount)


def renews_at(state: BudgetState) -> str:
    """The first instant of the next month, in UTC ISO 8601 (`2027-01-01T00:00:00Z`)."""
    return state.month.end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Budgets:
    """Every configured user's budget, its counters and its metrics."""

    def __init__(
        self, config: Config, store: CounterStore, on_failure: str, hold_seconds: float = 0.0
    ) -> None:
        self.config = config
        self.counter = BudgetCounter(store)
        self.on_failure = on_failure
        self._users: dict[str, UserBudget] = {}
        for key in config.api_keys:
            tier = config.tier_for_groups(key.groups)
            budget = None if tier is None else config.budget_for(key.user, tier)
            if budget is not None:
                self._users[key.user] = UserBudget(budget, _units(budget, budget.amount))
        self.used = Family(
            "maas_budget_used",
            "Budget used this calendar month (dollars or tokens, as unit says)",
            "gauge",
            BUDGET_LABELS,
        )
        self.limit = Family(
            "maas_budget_limit", "Monthly budget (dollars or tokens)", "gauge", BUDGET_LABELS
        )
        self.overage = Family(
            "maas_budget_overage_calls_total",
            "Calls served over a soft monthly budget (with X-Budget-Warning)",
            "counter",
            CALL_LABELS,
            hold_seconds,
        )
        self.rejected = Family(
            "maas_budget_rejected_calls_total",
            "Calls rejected by a hard monthly budget (429 budget_exceeded)",
            "counter",
            CALL_LABELS,
            hold_seconds,
        )
        for key in config.api_keys:
            tier = config.tier_for_groups(key.groups)
            user_budget = self._users.get(key.user)
            if tier is not None and user_budget is not None:
                self.limit.set(
                    (key.user, tier.name, user_budget.budget.unit), user_budget.budget.amount
                )
        self._prices: dict[tuple[str, str, date], Price | None] = {}
        # used-gauge labels -> the end of the month its value belongs to
        self._month_ends: dict[tuple[str, ...], datetime] = {}

    def families(self) -> list[Family]:
        """The budget metric families for a scrape; a month that has ended shows 0 used."""
        now = datetime.now(UTC)
        for labels, end in list(self._month_ends.items()):
            if end <= now:
                self.used.set(labels, 0)
                del self._month_ends[labels]
        return [self.used, self.limit, self.overage, self.rejected]

    def of(self, user: str) -> UserBudget | None:
        return self._users.get(user)

    def _publish(self, identity: Identity, user_budget: UserBudget, state: BudgetState) -> None:
        labels = (identity.user, identity.tier, user_budget.budget.unit)
        self.used.set(labels, user_budget.display(state.used))
        self._month_ends[labels] = state.month.end

    async def read(self, identity: Identity) -> BudgetState | None:
        """This month's state of the caller's budget (None: no budget). Raises `StoreUnavailable`."""
        user_budget = self._users.get(identity.user)
        if user_budget is None:
            return None
        state = await self.counter.read(
            identity.user, user_budget.limit, user_budget.budget.timezone
        )
        self._publish(identity, user_budget, state)
        return state

    def check_for(self, identity: Identity) -> BudgetCheck | None:
        """The caller's budget check, run by `Meter.admit` in its admission round trip."""
        user_budget = self._users.get(identity.user)
        if user_budget is None:
            return None
        budget = user_budget.budget
        return self.counter.check(
            identity.user, user_budget.limit, budget.timezone, budget.enforcement == "hard"
        )

    def verdict(self, identity: Identity, checked: tuple[bool, int] | None) -> dict[str, str]:
        """After admission: raise 429 `budget_exceeded` (hard, at or over) or return the soft
        warning headers (else none). `checked` is None when the store did not answer."""
        user_budget = self._users.get(identity.user)
        if user_budget is None:
            return {}
        if checked is None:
            if self.on_failure == "allow":
                return {}
            raise errors.store_unavailable()
        within, used = checked
        state = BudgetState(
            used, user_budget.limit, self.counter.current(user_budget.budget.timezone)
        )
        self._publish(identity, user_budget, state)
        if within:
            return {}
        renews = renews_at(state)
        budget = user_budget.budget
        spent = f"{user_budget.text(state.used)} of {user_budget.text(state.limit)}"
        if budget.enforcement == "soft":
            self.overage.inc((identity.user, identity.tier))
            return {
                "X-Budget-Warning": f"monthly budget exceeded: {spent} used; renews at {renews}",
                "X-Budget-Reset": renews,
            }
        self.rejected.inc((identity.user, identity.tier))
        retry = max(1, int(state.month.seconds_left(datetime.now(UTC)) + 0.999))
        raise errors.GatewayError(
            429,
            f"Monthly budget exceeded: {spent} used in {state.month.label}. It renews at {renews}.",
            type_="budget",
            code="budget_exceeded",
            headers={"Retry-After": str(retry), "X-Budget-Reset": renews},
        )

    def cost_units(
        self, identity: Identity, user_budget: UserBudget, model: str, usage: PricedUsage
    ) -> int:
        """What an answer adds to the counter: its tokens, or its cost at the price of today (UTC)."""
        if user_budget.budget.unit == "tokens":
            return round(usage.tokens)
        key = (identity.tier, model, datetime.now(UTC).date())
        price = self._prices.get(key)
        if price is None:
            if len(self._prices) > 4096:  # one entry per tier, model and day: forget old days
                self._prices.clear()
            price = self._prices[key] = price_on(self.config, *key)
        return 0 if price is None else round(price.cost(usage) * NANO_PER_USD)

    def applies(self, user: str) -> bool:
        return user in self._users

    async def with_report(
        self, report: Awaitable[None], identity: Identity, model: str, usage: Usage, together: bool
    ) -> None:
        """Await the token `report` and charge the answer to the caller's month, if budgeted.

        `together` (a remote store) issues both at once, so they travel in one batched call.
        """
        if identity.user not in self._users:
            await report
            return
        charge = self.charge(
            identity, model, usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
        )
        if together:
            await asyncio.gather(report, charge)
        else:
            await report
            await charge

    async def charge(
        self, identity: Identity, model: str, prompt: int, completion: int, total: int
    ) -> None:
        """Add one answer's tokens or cost to the caller's month (a lost store only logs)."""
        user_budget = self._users.get(identity.user)
        if user_budget is None:
            return
        usage = PricedUsage(float(total), float(prompt), float(completion))
        amount = self.cost_units(identity, user_budget, model, usage)
        try:
            state = await self.counter.charge(
                identity.user, amount, user_budget.limit, user_budget.budget.timezone
            )
        except StoreUnavailable as error:
            log.warning("budget charge of %s lost: store unreachable (%s)", identity.user, error)
            return
        self._publish(identity, user_budget, state)
