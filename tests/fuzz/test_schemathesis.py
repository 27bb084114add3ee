"""Schemathesis against the OpenAPI document: every operation, with data that fits its
schemas and data that does not; each answer must be documented (status, body, media
type), a request without its token must be refused, and none may be a 5xx.

Deterministic (derandomized Hypothesis) and bounded (``MAX_EXAMPLES`` per operation).
Random campaign ids would only ever meet 404s, so hooks steer part of the examples onto
campaigns that exist: the fuzzed gateway's open campaign, and a few specs valid across
fields that the create operation stores (then publishes, pauses, tops up...).
"""

from __future__ import annotations

from typing import Any

import msgspec
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gateway.app import OPERATIONS
from gateway.campaigns.spec import CampaignSpec
from gateway.channels.code_store import MAX_PER_BATCH
from gateway.claim.service import ClaimRequest
from gateway.identifiers import CampaignId
from gateway.infra.openapi import build_document
from tests.fuzz.conftest import FUZZ_CAMPAIGN
from tests.helpers import ADMIN_TOKEN, open_now, spec, token

MAX_EXAMPLES = 200
USER_TOKEN = token("fuzzer-1")
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES},
        # Tokens per security scheme: schemathesis sends them where the document asks for
        # them, leaves them out where a negative example must, and checks that an
        # operation refuses a request without one.
        "auth": {
            "openapi": {
                "userToken": {"bearer": USER_TOKEN},
                "adminToken": {"bearer": ADMIN_TOKEN},
            }
        },
        "checks": {
            # A spec can fit its JSON Schema and still break a rule across fields (a
            # cash_off coupon needs a face value below its threshold): that is a 422.
            # Too large is a refusal too (FLASHCLAIM_MAX_BODY_BYTES, admin: 1 MiB).
            "negative_data_rejection": {
                "expected-statuses": [
                    "400",
                    "401",
                    "403",
                    "404",
                    "405",
                    "406",
                    "409",
                    "413",
                    "415",
                    "422",
                    "428",
                    "429",
                ]
            },
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "410", "422", "429"]
            },
        },
    }
)
schema = schemathesis.openapi.from_dict(build_document(OPERATIONS), config=CONFIG)
KNOWN_IDS = [FUZZ_CAMPAIGN, "fz-1", "fz-2", "fz-3"]
CODES_MAX = 2_000  # redeem codes per fuzzed generation request


def fits(body: Any, kind: Any) -> bool:
    """Whether ``body`` fits the struct (a positive example: steering it keeps it so)."""
    try:
        msgspec.convert(body, kind)
    except msgspec.ValidationError:
        return False
    return True


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Half of the ids that fit the id's pattern name campaigns that exist (an id that does
    not fit is a negative example, and must stay one)."""
    if not path_parameters or not fits(path_parameters.get("id"), CampaignId):
        return st.just(path_parameters)
    known = st.sampled_from(KNOWN_IDS).map(lambda cid: {**path_parameters, "id": cid})
    return st.one_of(st.just(path_parameters), known)


def _count(body: dict[str, Any]) -> int:
    count = body.get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """Claims of the open campaign; whole, valid specs for the create operation (only
    in place of bodies that fit their schema: a negative example must stay one)."""
    operation = context.operation
    if operation.path == "/api/coupon/issue" and fits(body, ClaimRequest):
        return st.one_of(st.just(body), st.just({**body, "campaignId": FUZZ_CAMPAIGN}))
    codes = operation.path.endswith("/codes") and isinstance(body, dict)
    if codes and CODES_MAX < _count(body) <= MAX_PER_BATCH:
        # A valid request for a million codes is honoured (tests/channels time it); a fuzz
        # request gets a small batch, so one example does not outlast the request timeout
        # (a count past the limit stays, a negative example).
        return st.just({**body, "count": CODES_MAX})
    if operation.path == "/admin/campaigns" and fits(body, CampaignSpec):
        valid = st.sampled_from(KNOWN_IDS[1:]).map(lambda cid: spec(id=cid, **open_now()))
        return st.one_of(st.just(body), valid)
    return st.just(body)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, fuzzed):
    case.call_and_validate(base_url=fuzzed.url)


def test_after_fuzzing_no_5xx_was_counted_and_no_error_logged(fuzzed):
    fuzzed.assert_healthy()
