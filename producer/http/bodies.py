"""Request bodies of the submission routes: parsed from bytes by pydantic-core in one step, and
declared in the OpenAPI document as if FastAPI had parsed them.

FastAPI's own body handling (the stdlib's ``json.loads``, then validation of the Python
objects, through its dependency machinery) costs about a third of a one-job submission; and it
refuses a body sent without ``Content-Type: application/json`` (``curl -d``) with a puzzling
"valid dictionary" error. Here the raw bytes go straight to ``model_validate_json``, whatever
the content type; its errors become the same ``RequestValidationError`` FastAPI would raise
(400 for a body that is not JSON, 422 otherwise, by ``errors``). ``request_body`` is the
route's ``openapi_extra`` and ``document_bodies`` adds the models' schemas to the document's
components, so the published schema is the model's, as for any other body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

M = TypeVar("M", bound=BaseModel)

_REF = "#/components/schemas/{model}"


async def parse_body(request: Request, model: type[M]) -> M:
    """``model`` from the request's body; ``RequestValidationError`` (located under ``body``)
    when the body is not JSON or does not fit."""
    body = await request.body()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra`` declaring a required JSON body of ``model``."""
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def document_bodies(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Add the JSON schemas of ``models`` (and the models they hold) to ``app``'s OpenAPI
    components, where ``request_body`` points."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _, found = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(found.get("$defs", {}))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
