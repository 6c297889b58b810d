"""``conveyor serve``: the producer as an HTTP service, for producers written in any language.

One asyncio event loop (uvicorn's) serves every connection; the service talks to the backend
through the asyncio roles of the queue protocol (``services.protocol.aio``), so no request
blocks another. Data flow of a submission::

    POST /v1/queues/q/jobs --> limits (body cap) --> auth (bearer) --> routes.jobs
        --> JobService.submit --> submission (registry check, job id, encode)
        --> AsyncBackend.put_many (put-if-absent; concurrent puts share a round trip)
    <-- 202 {"job_id", "new"} + Location: /v1/jobs/<id>

Modules: ``settings`` (what the command decides: bind address, token, caps), ``submission``
(requests to encoded jobs, framework-free), ``service`` (``JobService``: every operation of the
API as a coroutine on the backend, framework-free), ``problems`` (errors as HTTP statuses and
codes), ``models`` (the JSON bodies, which the OpenAPI document is generated from), ``errors``
(the JSON error body for every failure), ``auth`` (bearer tokens), ``limits`` (the body cap),
``routes`` (one router per resource), ``app`` (``create_app``), ``command`` (the click command,
which runs uvicorn).

**Why FastAPI** (on Starlette): the OpenAPI document is generated from the same pydantic models
that parse and check the requests, so the published schema and the behaviour cannot drift
apart, which is what the test suite checks with schemathesis against the running service.
Starlette alone would leave the schema to be written by hand next to the code. FastAPI and
Starlette are imported only in this package, uvicorn only in ``command``
(``tests/test_architecture.py``).
"""
