"""The OpenAPI document matches the behaviour: schemathesis against a running ``conveyor serve``.

For every operation of ``/openapi.json``, schemathesis generates requests from the schema
(ones that fit it, and for operations that take input, ones that break it) and checks each
answer: never a 5xx, a status the operation documents, the documented content type and
headers, and a body that fits the documented schema. The examples per operation are bounded so
the whole run stays well under a minute. The service runs with a bearer token and the test job
registry, as it would in production; the token is sent with every case. (schemathesis's
``negative_data_rejection`` is left out: it counts a case without the ``Authorization`` header
as invalid, and the header added here makes it valid again.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.redis_fixtures import RedisServer
from tests.test_http_fixtures import TOKEN, ServeProcess

pytestmark = [pytest.mark.redis]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 25
"""Per operation and mode: the fifteen operations stay well under a minute."""


@pytest.fixture(scope="module")
def running_service(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """One ``conveyor serve`` for the module, with a token, on an empty database."""
    redis_server.flush()
    folder: Path = tmp_path_factory.mktemp("schema")
    token_file = folder / "token"
    token_file.write_text(TOKEN)
    process = ServeProcess(
        redis_server.url,
        folder / "serve.log",
        ["--token-file", str(token_file), "--no-access-log"],
    )
    try:
        yield process.wait_ready()
    finally:
        process.kill()


@pytest.fixture(scope="module")
def api_schema(running_service: ServeProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{running_service.base}/openapi.json")


OPERATIONS = [
    ("POST", "/v1/queues/{queue}/jobs"),
    ("POST", "/v1/queues/{queue}/batches"),
    ("GET", "/v1/jobs/{job_id}"),
    ("DELETE", "/v1/jobs/{job_id}"),
    ("POST", "/v1/jobs/{job_id}/abort"),
    ("GET", "/v1/queues"),
    ("GET", "/v1/queues/{queue}"),
    ("GET", "/v1/queues/{queue}/dead-letters"),
    ("DELETE", "/v1/queues/{queue}/dead-letters"),
    ("POST", "/v1/queues/{queue}/dead-letters/requeue"),
    ("DELETE", "/v1/queues/{queue}/dead-letters/{job_id}"),
    ("GET", "/v1/fleet"),
    ("GET", "/v1/groups/{group}"),
    ("PUT", "/v1/groups/{group}"),
    ("PUT", "/v1/queues/{queue}/pause"),
    ("DELETE", "/v1/queues/{queue}/pause"),
    ("GET", "/v1/dashboard"),
    ("GET", "/v1/dashboard/periodics"),
    ("GET", "/v1/dashboard/limits"),
    ("GET", "/v1/queues/{queue}/jobs"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]


def test_every_operation_of_the_schema_is_tested(api_schema: schemathesis.BaseSchema) -> None:
    found = set()
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result
        found.add((result.ok().method.upper(), result.ok().path))
    assert found == set(OPERATIONS)


WITHOUT_INPUT = {
    ("GET", "/v1/queues"),
    ("GET", "/v1/fleet"),
    ("GET", "/v1/dashboard/periodics"),
    ("GET", "/v1/dashboard/limits"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
}
"""Nothing to break: no negative cases."""
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or (method, path) not in WITHOUT_INPUT
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_the_service_behaves_as_its_schema_says(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    # Given requests generated from the schema of one operation (fitting it, or breaking it)
    operation = api_schema[path][method]

    @given(operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def each(case: Case[Any]) -> None:
        # When each is sent / Then the answer passes every check
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

    each()
