"""Every operation of ``/openapi.json``, fuzzed by schemathesis with every check it has.

Schemathesis generates requests from the document, valid ones and ones that break it, and checks
each response against it: no 5xx, a documented status, content type, headers and body, valid
data accepted and invalid data refused.  The fast run sends a few derandomized examples per
operation, the soak run many, to the scripted app on a loopback port.

Two settings say what the document cannot:

- ``/v1/hybrid/events`` never ends; schemathesis stops reading an event stream after
  ``max-stream-events`` events, and the first one, the snapshot, is all a check can see.
- The answering routes' schemas are deliberately loose (unknown fields and content kinds are
  let through, so that hybrid can refuse them with a 400 that names them), so a schema-valid
  body may still be one hybrid cannot honour: a tool message without its call's id, ``echo``,
  a float ``max_tokens``.  There a 400, in the documented error shape, is an accepted answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from live_app import serving
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema
from scripted import scripted_app
from server_logs import logged_tracebacks
from soak_tally import SoakTally

from hybrid.settings import Settings

OPERATIONS = [
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/messages",
    "GET /v1/models",
    "GET /health",
    "GET /v1/hybrid/stats",
    "GET /v1/hybrid/events",
    "POST /v1/hybrid/mode",
    "POST /v1/hybrid/feedback",
    "GET /v1/hybrid/model",
    "POST /v1/hybrid/model",
    "GET /metrics",
]
# Only a body can be made invalid: the other operations take no parameters.
WITH_BODY = [label for label in OPERATIONS if label.startswith("POST")]
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, GenerationMode.NEGATIVE) for label in WITH_BODY
]

FAST_EXAMPLES = 12
SOAK_EXAMPLES = 250

load_all_checks()
EVERY_CHECK = list(CHECKS.get_all())
_ACCEPTED = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
CONFIG = schemathesis.Config.from_dict(
    {
        "max-stream-events": 1,
        "operations": [
            {
                # Feedback on a generated request id is a 404: no such request was answered.
                "include-path-regex": "^/v1/(chat/completions|completions|messages"
                "|hybrid/feedback)$",
                "checks": {"positive_data_acceptance": {"expected-statuses": _ACCEPTED}},
            }
        ],
    }
)


def operation_of(schema: BaseSchema, label: str) -> APIOperation:
    method, path = label.split(" ", 1)
    return schema[path][method]


def fuzz(
    operation: APIOperation,
    mode: GenerationMode,
    statuses: list[int],
    *,
    examples: int,
    derandomize: bool,
    **call: Any,
) -> None:
    """Send up to ``examples`` generated requests and check every response, adding each
    response's status to ``statuses``.

    Raises:
        schemathesis.FailureGroup: a check failed (hypothesis shrinks the request first).
    """

    @hypothesis.settings(
        max_examples=examples,
        derandomize=derandomize,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(mode))
    def exchange(case: schemathesis.Case) -> None:
        response = case.call(**call)
        statuses.append(response.status_code)
        case.validate_response(response, checks=EVERY_CHECK)

    exchange()


@pytest.fixture(scope="module")
def served_schema(
    fresh_settings: Callable[..., Settings],
) -> Iterator[tuple[BaseSchema, requests.Session]]:
    # A loopback server of the scripted app: its lifespan lasts exactly as long as the module.
    with serving(scripted_app(fresh_settings())) as base_url, requests.Session() as session:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=CONFIG), session


def test_the_document_lists_the_operations_fuzzed_here(
    served_schema: tuple[BaseSchema, requests.Session],
) -> None:
    schema, _ = served_schema
    listed = [f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()]
    assert sorted(listed) == sorted(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{m}-{op}" for op, m in CASES])
def test_every_operation_answers_as_its_document_says(
    served_schema: tuple[BaseSchema, requests.Session], label: str, mode: GenerationMode
) -> None:
    schema, session = served_schema
    statuses: list[int] = []
    with logged_tracebacks() as tracebacks:
        fuzz(
            operation_of(schema, label),
            mode,
            statuses,
            examples=FAST_EXAMPLES,
            derandomize=True,
            session=session,
            timeout=60,
        )
    assert statuses
    assert tracebacks == []


def test_the_documented_answers_are_the_sent_ones(default_server: str) -> None:
    # What the fuzzing found: each of these went out undocumented before.
    document = httpx.get(f"{default_server}/openapi.json").json()
    paths = document["paths"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(paths["/v1/hybrid/events"]["get"]["responses"]["200"]["content"]) == {
        "text/event-stream"
    }
    assert set(paths["/v1/messages"]["post"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/event-stream",
    }
    mode = paths["/v1/hybrid/mode"]["post"]["requestBody"]["content"]["application/json"]
    assert mode["schema"]["required"] == ["mode"]
    assert {"403", "404", "413", "429", "503"} <= set(
        paths["/v1/chat/completions"]["post"]["responses"]
    )
    assert "401" not in paths["/health"]["get"]["responses"]
    empty = httpx.post(f"{default_server}/v1/hybrid/mode", json={})
    assert empty.status_code == 400
    stats = paths["/v1/hybrid/stats"]["get"]
    (by,) = stats["parameters"]
    assert (by["name"], by["in"]) == ("by", "query")
    assert by["schema"]["enum"] == ["route", "model", "reason", "day", "decided", "instance"]
    assert {"400", "403"} <= set(stats["responses"]) and "413" not in stats["responses"]
    refused = httpx.get(f"{default_server}/v1/hybrid/stats", params={"by": "colour"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "by"


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_every_operation_on_a_loopback_server(
    fresh_settings: Callable[..., Settings], soak_tally: SoakTally
) -> None:
    failures: list[str] = []
    statuses: list[int] = []
    with logged_tracebacks() as tracebacks, serving(scripted_app(fresh_settings())) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=CONFIG)
        with requests.Session() as session:
            for label, mode in CASES:
                try:
                    fuzz(
                        operation_of(schema, label),
                        mode,
                        statuses,
                        examples=SOAK_EXAMPLES,
                        derandomize=False,
                        session=session,
                        timeout=60,
                    )
                except (Exception, FailureGroup) as exc:
                    failures.append(f"{mode} {label}: {exc}")
    soak_tally.add(
        "schemathesis",
        requests=len(statuses),
        server_errors=sum(status >= 500 for status in statuses),
        tracebacks=len(tracebacks),
    )
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
    assert tracebacks == []
