"""Credit reconciliation: the balances equal the journal, to the cent.

Three sums, each must be zero: every account's kept balance minus the sum of its lines
(a balance moved without a line, or a line without its balance); the sum of every line
(double entry: what users hold is exactly what the system accounts gave); and the
unbalanced entries (PostgreSQL refuses them at commit; counted anyway, so a trigger
dropped by hand would show). ``flashclaim credit reconcile`` prints the figures and exits
1 on any difference; the reconciler service exports them as
``flashclaim_credit_difference_cents`` (an alert fires on anything but 0) and
``flashclaim_credit_liability_cents`` (what users hold, by kind: a dashboard panel).
"""

from __future__ import annotations

import asyncpg
import msgspec

from gateway.credit.journal import Conn
from gateway.infra import metrics


class CreditReport(msgspec.Struct, rename="camel"):
    """What one reconciliation found."""

    accounts_off: int  # accounts whose balance is not the sum of their lines
    balance_difference_cents: int  # sum over accounts of |balance - lines|
    journal_sum_cents: int  # sum of every line: 0 in a double-entry ledger
    unbalanced_entries: int
    principal_cents: int  # what users hold, by kind
    bonus_cents: int
    held_cents: int
    entries: int

    @property
    def difference_cents(self) -> int:
        """Every cent that does not add up (0: the ledger is whole)."""
        return (
            self.balance_difference_cents + abs(self.journal_sum_cents) + (self.unbalanced_entries)
        )

    @property
    def ok(self) -> bool:
        """Whether balances and journal agree to the cent."""
        return self.accounts_off == 0 and self.difference_cents == 0


async def reconcile(conn: asyncpg.Pool | Conn) -> CreditReport:
    """Compare every user account's balance with its lines, and sum the journal."""
    off = await conn.fetchrow(
        "SELECT count(*) AS n, COALESCE(sum(abs(a.balance_cents - COALESCE(l.total, 0))), 0)"
        " AS cents FROM credit_accounts a LEFT JOIN (SELECT account_id, sum(amount_cents)"
        " AS total FROM credit_lines GROUP BY account_id) l USING (account_id)"
        " WHERE a.kind <> 'system' AND a.balance_cents <> COALESCE(l.total, 0)"
    )
    totals = await conn.fetchrow(
        "SELECT COALESCE(sum(amount_cents), 0) AS total, count(DISTINCT entry_id) AS entries"
        " FROM credit_lines"
    )
    unbalanced = await conn.fetchval(
        "SELECT count(*) FROM (SELECT entry_id FROM credit_lines GROUP BY entry_id"
        " HAVING sum(amount_cents) <> 0) u"
    )
    held = await conn.fetch(
        "SELECT kind, COALESCE(sum(balance_cents), 0) AS cents FROM credit_accounts"
        " WHERE kind <> 'system' GROUP BY kind"
    )
    by_kind = {row["kind"]: int(row["cents"]) for row in held}
    assert off is not None
    assert totals is not None
    return CreditReport(
        accounts_off=off["n"],
        balance_difference_cents=int(off["cents"]),
        journal_sum_cents=int(totals["total"]),
        unbalanced_entries=unbalanced,
        principal_cents=by_kind.get("principal", 0),
        bonus_cents=by_kind.get("bonus", 0),
        held_cents=by_kind.get("held", 0),
        entries=totals["entries"],
    )


def render(report: CreditReport) -> str:
    """The report as a few aligned lines."""
    verdict = "OK" if report.ok else "DIFFERENCE"
    return "\n".join([
        f"credit ledger: {verdict}",
        f"  accounts off their journal   {report.accounts_off}",
        f"  balance difference (cents)   {report.balance_difference_cents}",
        f"  journal sum (cents)          {report.journal_sum_cents}",
        f"  unbalanced entries           {report.unbalanced_entries}",
        f"  users hold principal/bonus/held (cents)"
        f"  {report.principal_cents} / {report.bonus_cents} / {report.held_cents}",
        f"  entries                      {report.entries}",
    ])  # fmt: skip


def publish(report: CreditReport) -> None:
    """Set the credit gauges from ``report`` (the reconciler's /metrics serves them)."""
    metrics.CREDIT_DIFFERENCE.set(report.difference_cents + report.accounts_off)
    for kind, cents in (("principal", report.principal_cents), ("bonus", report.bonus_cents),
                        ("held", report.held_cents)):  # fmt: skip
        metrics.CREDIT_LIABILITY.labels(kind).set(cents)
