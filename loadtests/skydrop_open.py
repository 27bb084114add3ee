"""Sky-drop on app open through ``POST /api/skydrop/open``: the gateway picks what falls.

The run makes four sky-drop campaigns and one trigger rule for each (admin API), matching
only this run's opens (condition ``channel`` = ``lt-<run-id>``):

* ``sd-always``: falls on every open (probability 1), one per user, a budget for three
  quarters of the stock (runs out of money);
* ``sd-lucky``: probability 0.3, one a day per user;
* ``sd-first``: only on a user's first 2 opens;
* ``sd-small``: probability 0.5, a small stock (sells out).

Users (``--user-pool`` of them, named for the run so "first opens" start at zero) open the
app as a Poisson process; a tenth of the opens are retried with the same requestId (the
same coupons must come back), and an open that times out is retried until it is answered.
At most ``FLASHCLAIM_SKYDROP_MAX_GRANTS`` (K) coupons may fall per open.

Checked on every answer: at most K dropped, each grant's rule rolled it (the roll is fixed
by requestId and rule: ``gateway.channels.triggers.chance``), a retry answers the same
coupons. The verdict after the run (besides ``flashclaim verify``: stock, budgets, limits,
duplicates): the rules tried on each open, replayed from the rolls, fell exactly when
their dice said so (each rule's rate printed against its probability), nobody got a
``sd-first`` coupon past their second open, and the coupon rows in PostgreSQL are exactly
the coupons the answers named, each once. Single runner only (the answers live in it).
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust import events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from gateway.channels.triggers import chance
from loadtests import rows
from loadtests.common import (
    Shopper,
    admin,
    after_verify,
    campaign_id,
    cash_off,
    declare,
    new_request_id,
    options_of,
    window,
)

OPEN_PATH = "/api/skydrop/open"
MEAN_GAP_S = 0.5  # mean time between one simulated user's app opens
RETRIES = 8  # an unanswered open is retried this often, with the same requestId
# The rules: campaign short name -> (probability, first opens).
RULES = {"sd-always": (1.0, 0), "sd-lucky": (0.3, 0), "sd-first": (1.0, 2), "sd-small": (0.5, 0)}
MISSED = frozenset({"SOLD_OUT", "BUDGET_EXHAUSTED", "USER_LIMIT", "USER_DAILY_LIMIT",
                    "DEVICE_LIMIT", "DAILY_SOLD_OUT", "RATE_LIMITED", "OVERLOADED",
                    "UNAVAILABLE"})  # fmt: skip


def max_drops() -> int:
    """K: the gateway's ``FLASHCLAIM_SKYDROP_MAX_GRANTS`` (its default, 1, unless set)."""
    return int(os.environ.get("FLASHCLAIM_SKYDROP_MAX_GRANTS", "1"))


def _spec(name: str) -> Any:
    def spec(options: Any) -> dict[str, Any]:
        stock = options.stock
        if name == "sd-always":
            return cash_off(500, stock, perUserLimit=1, budgetCents=500 * stock * 3 // 4)
        if name == "sd-lucky":
            return cash_off(300, stock * 4, perUserLimit=3, perUserDailyLimit=1)
        if name == "sd-first":
            return cash_off(200, stock * 4, perUserLimit=5)
        return cash_off(800, max(stock // 4, 1), perUserLimit=1)

    return lambda options: spec(options) | window(0)


for _name in RULES:
    declare(_name, _spec(_name))


@dataclass
class Answers:
    """What the gateway answered, kept by the runner for the verdict."""

    opens: dict[str, tuple[str, dict[str, str], set[str]]] = field(default_factory=dict)
    unanswered: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors.append(text)
        raise AssertionError(text)  # counted by Locust as a scenario error, too


_answers = Answers()


def rule_id(options: Any, name: str) -> str:
    return campaign_id(options, name)


def run_channel(options: Any) -> str:
    return f"lt-{options.run_id}".lower()[:32]


@events.test_start.add_listener
def _make_rules(environment: Environment, **_: Any) -> None:
    """One sky-drop rule per campaign, for this run's opens only; then wait until every
    worker reads rules again (``FLASHCLAIM_TRIGGER_CACHE_MS``)."""
    if environment.process_exit_code == 2 or isinstance(environment.runner, WorkerRunner):
        return
    options, host = options_of(environment), str(environment.host)
    for name, (probability, first_opens) in RULES.items():
        rule = {
            "ruleId": rule_id(options, name),
            "kind": "skydrop",
            "campaignId": campaign_id(options, name),
            "probability": probability,
            "firstOpens": first_opens,
            "conditions": {"channel": run_channel(options)},
        }
        admin(host, "PUT", f"/triggers/{rule['ruleId']}", rule)
    gevent.sleep(int(os.environ.get("FLASHCLAIM_TRIGGER_CACHE_MS", "5000")) / 1000 + 0.5)


class AppOpener(Shopper):
    """Opens the app now and then as a random member of the run's user pool."""

    def wait_time(self) -> float:
        return random.expovariate(1 / MEAN_GAP_S)

    @task
    def open_app(self) -> None:
        options = options_of(self.environment)
        self.new_identity(f"sd{options.run_id}-{random.randrange(options.user_pool):06d}")
        request_id = new_request_id()
        reply = self.open(request_id)
        if reply is None:
            _answers.unanswered += 1
            return
        dropped = self.check(request_id, reply)
        missed = {g["ruleId"] for g in reply["missed"]}
        _answers.opens[request_id] = (self.user_id, dropped, missed)
        if random.random() < 0.1:  # a double tap or a flaky network: the same open again
            again = self.open(request_id)
            if again is None:
                return
            fell = self.check(request_id, again)
            if not dropped.items() <= fell.items():  # what fell, falls again, the same coupon
                _answers.error(f"open {request_id}: a retry dropped other coupons")
            # A refusal that passed (RATE_LIMITED, OVERLOADED) may fall now: keep both.
            missed |= {g["ruleId"] for g in again["missed"]}
            _answers.opens[request_id] = (self.user_id, dropped | fell, missed - set(fell))

    def open(self, request_id: str) -> dict[str, Any] | None:
        """POST the open until answered (at most ``RETRIES`` times); None if never."""
        body = {
            "requestId": request_id,
            "deviceId": self.device_id,
            "channel": run_channel(options_of(self.environment)),
            "city": random.choice(["shanghai", "beijing", "shenzhen"]),
        }
        headers = {"Authorization": f"Bearer {self.token}", "X-Forwarded-For": self.ip}
        for attempt in range(RETRIES):
            with self.client.post(
                OPEN_PATH, json=body, headers=headers, catch_response=True, name="open"
            ) as response:
                if response.status_code == 200:
                    reply: dict[str, Any] = response.json()
                    response.request_meta["name"] = f"open: {len(reply['dropped'])} dropped"
                    response.success()
                    return reply
                reason = response.json().get("reason") if response.text else "timed out"
                response.request_meta["name"] = f"open: {reason}"
                if reason in ("timed out", "UNAVAILABLE", "RATE_LIMITED"):
                    response.success()
                else:
                    response.failure(f"{response.status_code} {reason}")
                    return None
            gevent.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
        return None

    def check(self, request_id: str, reply: dict[str, Any]) -> dict[str, str]:
        """The checks every answer must pass; its dropped coupons by rule."""
        options = options_of(self.environment)
        ours = {rule_id(options, name): p for name, (p, _) in RULES.items()}
        if len(reply["dropped"]) > max_drops():
            _answers.error(f"open {request_id}: {len(reply['dropped'])} fell, K={max_drops()}")
        for grant in reply["dropped"] + reply["missed"]:
            rule = grant["ruleId"]
            if rule in ours and chance(request_id, rule) >= ours[rule]:
                _answers.error(f"open {request_id}: {rule} tried though its dice said no")
            if grant in reply["missed"] and grant["reason"] not in MISSED:
                _answers.error(f"open {request_id}: {rule} missed with {grant['reason']}")
        return {g["ruleId"]: g["couponId"] for g in reply["dropped"]}


def replay_rolls(options: Any) -> tuple[Counter[str], Counter[str], list[str]]:
    """Walk each open's rules as the gateway does (order and dice from the requestId, stop
    after K drops): per rule, opens that tried it and opens it fell or was refused on, and
    every disagreement with the answers."""
    names = {rule_id(options, name): name for name in RULES}
    tried: Counter[str] = Counter()
    rolled: Counter[str] = Counter()
    problems: list[str] = []
    for request_id, (_, dropped, missed) in _answers.opens.items():
        if any(rule not in names for rule in (*dropped, *missed)):
            continue  # a rule of someone else's matched too: this open is not ours alone
        fallen = 0
        for rule in sorted(names, key=lambda r: chance(request_id, "order\x00" + r)):
            if fallen >= max_drops():
                break
            probability, first_opens = RULES[names[rule]]
            shown = rule in dropped or rule in missed
            if first_opens:  # skipped past the user's first opens: checked per user below
                fallen += rule in dropped
                continue
            tried[rule] += 1
            rolled[rule] += shown
            if shown != (chance(request_id, rule) < probability):
                problems.append(f"open {request_id}: {rule} shown={shown} against its dice")
            fallen += rule in dropped
    return tried, rolled, problems


def _first_opens_held(options: Any) -> list[str]:
    first = rule_id(options, "sd-first")
    limit = RULES["sd-first"][1]
    opens_with: defaultdict[str, int] = defaultdict(int)
    for user, dropped, missed in _answers.opens.values():
        opens_with[user] += first in dropped or first in missed
    return [
        f"{user}: sd-first on {n} opens > {limit}" for user, n in opens_with.items() if n > limit
    ]


def _rows_match(options: Any) -> list[str]:
    """The rows of the run are exactly the coupons the answers named."""
    named = {coupon for _, dropped, _ in _answers.opens.values() for coupon in dropped.values()}
    stored = rows.fetch(campaign_id(options, ""))
    ids = Counter(row["coupon"] for row in stored)
    problems = [f"coupon {c} stored {n} times" for c, n in ids.items() if n > 1]
    problems += [
        f"{r['coupon']} on channel {r['channel']}" for r in stored if r["channel"] != "skydrop"
    ]
    missing, extra = named - set(ids), set(ids) - named
    if missing:
        problems.append(f"{len(missing)} answered coupons not in PostgreSQL")
    if extra and not _answers.unanswered:  # an unanswered open may have dropped some
        problems.append(f"{len(extra)} rows no answer named")
    print(f"skydrop: {len(_answers.opens)} opens answered ({_answers.unanswered} never),"
          f" {len(named)} coupons fell, {len(ids)} rows")  # fmt: skip
    return problems


@events.quitting.add_listener
def _remove_rules(environment: Environment, **_: Any) -> None:
    """The run's rules go, whatever the outcome."""
    if isinstance(environment.runner, WorkerRunner) or environment.process_exit_code == 2:
        return
    options, host = options_of(environment), str(environment.host)
    for name in RULES:
        try:
            admin(host, "DELETE", f"/triggers/{rule_id(options, name)}")
        except (RuntimeError, OSError) as exc:  # requests' errors are OSErrors
            print(f"skydrop: rule {name} not removed: {exc}")


def _skydrop_verdict(environment: Environment) -> bool:
    """After ``flashclaim verify`` drained the pipeline: the answers against the rolls, the
    first-opens cap and PostgreSQL."""
    options = options_of(environment)
    tried, rolled, problems = replay_rolls(options)
    for rule in sorted(tried):
        n, k = tried[rule], rolled[rule]
        p = RULES[rule.removeprefix(campaign_id(options, ""))][0]
        spread = 4 * math.sqrt(n * p * (1 - p)) + 1
        print(f"skydrop: {rule} tried {n}, rolled in {k} ({k / max(n, 1):.3f}; p={p})")
        if abs(k - n * p) > spread:
            problems.append(f"{rule}: {k} of {n} is outside p={p} ± 4σ")
    problems += _first_opens_held(options) + _rows_match(options) + _answers.errors
    for problem in problems[:20]:
        print(f"skydrop problem: {problem}")
    print("skydrop verdict: " + ("FAIL" if problems else "PASS"))
    return not problems


after_verify.append(_skydrop_verdict)
