"""The channels' part of the operators' API (mounted under ``/admin/``).

* ``POST /admin/campaigns/{id}/codes`` ``{"count": N}``: generate N redeem codes; the
  answer is the CSV (the only copy of the codes: only their keyed hashes are kept).
* ``GET /admin/bind-jobs/{job}``: a bind job's progress (done, total, rate, ETA, reasons).
* ``GET /admin/triggers``, ``PUT /admin/triggers/{rule}``, ``DELETE /admin/triggers/{rule}``:
  the event and sky-drop rules.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from aiohttp import web

from gateway.campaigns.admin_api import InvalidFields, campaign_id, decode_json
from gateway.campaigns.spec import FieldError, InvalidSpec
from gateway.channels.bind_store import BindJobs, JobProgress, progress
from gateway.channels.code_store import MAX_PER_BATCH, CodeBatches, csv_lines
from gateway.channels.triggers import RuleId, TriggerRule, TriggerRules
from gateway.identifiers import CampaignId, whole
from gateway.infra.http import json_body, json_response, refusal
from gateway.infra.openapi import Operation
from gateway.reasons import Reason

CODES = web.AppKey("code_batches", CodeBatches)
JOBS = web.AppKey("bind_jobs", BindJobs)
RULES = web.AppKey("trigger_rules", TriggerRules)

JOB_ID_PATTERN = whole(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_JOB_ID = re.compile(JOB_ID_PATTERN)
_RULE_ID = re.compile(whole(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"))
JobId = Annotated[str, msgspec.Meta(pattern=JOB_ID_PATTERN)]


class CodeOrder(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /admin/campaigns/{id}/codes``."""

    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_PER_BATCH)]


class RuleList(msgspec.Struct):
    """Every trigger rule."""

    rules: list[TriggerRule]


async def generate_codes(request: web.Request) -> web.StreamResponse:
    """Generate a batch of codes; answer them as CSV."""
    cid = campaign_id(request)
    order: CodeOrder = decode_json(await json_body(request), CodeOrder)
    batch_id, codes = await request.config_dict[CODES].create(cid, order.count)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{batch_id}.csv"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    for chunk in csv_lines(cid, batch_id, codes):
        await response.write(chunk)
    await response.write_eof()
    return response


async def show_job(request: web.Request) -> web.Response:
    """A bind job's progress."""
    job_id = request.match_info["job"]
    state = await request.config_dict[JOBS].get(job_id) if _JOB_ID.match(job_id) else None
    if state is None:
        return refusal(Reason.NOT_FOUND, f"no bind job {job_id!r}")
    return json_response(msgspec.to_builtins(progress(state)))


async def list_rules(request: web.Request) -> web.Response:
    """Every trigger rule."""
    rules = await request.config_dict[RULES].all()
    return json_response({"rules": msgspec.to_builtins(rules)})


async def put_rule(request: web.Request) -> web.Response:
    """Create or replace a rule (the path names it)."""
    rule_id = _rule_id(request)
    rule: TriggerRule = decode_json(await json_body(request), TriggerRule)
    if rule.rule_id != rule_id:
        raise InvalidSpec([FieldError("ruleId", "must be the id in the path")])
    await request.config_dict[RULES].add(rule)
    return json_response(msgspec.to_builtins(rule))


async def delete_rule(request: web.Request) -> web.Response:
    """Delete a rule."""
    rule_id = _rule_id(request)
    if not await request.config_dict[RULES].remove(rule_id):
        return refusal(Reason.NOT_FOUND, f"no trigger rule {rule_id!r}")
    return json_response({"deleted": rule_id})


def _rule_id(request: web.Request) -> str:
    rule_id = request.match_info["rule"]
    if not _RULE_ID.match(rule_id):
        raise web.HTTPNotFound()
    return rule_id


def routes() -> list[web.RouteDef]:
    """The channels' admin routes (mounted under ``/admin/``)."""
    return [
        web.post("/campaigns/{id}/codes", generate_codes),
        web.get("/bind-jobs/{job}", show_job),
        web.get("/triggers", list_rules),
        web.put("/triggers/{rule}", put_rule),
        web.delete("/triggers/{rule}", delete_rule),
    ]


class Deleted(msgspec.Struct):
    """The rule deleted."""

    deleted: str


def _admin(method: str, path: str, summary: str, **details: Any) -> Operation:
    return Operation(method, f"/admin{path}", summary, "admin", auth="admin", **details)


_FOUND = [Reason.NOT_FOUND, Reason.UNAVAILABLE]
_422 = {422: InvalidFields}

OPERATIONS = [
    _admin("POST", "/campaigns/{id}/codes", "Generate redeem codes (answered as CSV, once)",
           ok_media="text/csv", body=CodeOrder, params={"id": CampaignId}, refusal_bodies=_422,
           refusals=[Reason.UNKNOWN_CAMPAIGN, (Reason.INVALID_REQUEST, 409), Reason.UNAVAILABLE]),
    _admin("GET", "/bind-jobs/{job}", "A bind job's progress", ok=JobProgress,
           params={"job": JobId}, refusals=_FOUND),
    _admin("GET", "/triggers", "Every trigger rule", ok=RuleList, refusals=[Reason.UNAVAILABLE]),
    _admin("PUT", "/triggers/{rule}", "Create or replace a trigger rule", ok=TriggerRule,
           body=TriggerRule, params={"rule": RuleId}, refusal_bodies=_422,
           refusals=[Reason.UNAVAILABLE]),
    _admin("DELETE", "/triggers/{rule}", "Delete a trigger rule", ok=Deleted,
           params={"rule": RuleId}, refusals=_FOUND),
]  # fmt: skip
