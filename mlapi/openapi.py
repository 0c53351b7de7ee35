"""OpenAPI documentation settings and the Blueprint class every API resource uses."""

from __future__ import annotations

from typing import Any, NoReturn

import flask
import flask_smorest
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser

from mlapi.errors import APIError

FORM_MIMETYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

OPENAPI_CONFIG: dict[str, Any] = {
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    # The UI assets are served by the app itself (mlapi.docs): no CDN, works offline.
    "OPENAPI_SWAGGER_UI_URL": "/v1/docs/assets/swagger-ui/",
    # Swagger UI would otherwise send the spec to an online validator.
    "OPENAPI_SWAGGER_UI_CONFIG": {"validatorUrl": None, "deepLinking": True},
    "OPENAPI_REDOC_PATH": "redoc",
    "OPENAPI_REDOC_URL": "/v1/docs/assets/redoc/redoc.standalone.js",
    "API_SPEC_OPTIONS": {
        "info": {"description": "Secure, observable, versioned inference for PyTorch models."},
    },
}


class StrictContentTypeParser(FlaskParser):
    """Answers 415 when a body arrives in a media type the endpoint does not take.

    webargs would otherwise treat a non-JSON body as absent and report missing fields.
    """

    DEFAULT_VALIDATION_STATUS = 422

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        if not core.is_json(req.mimetype):
            _unsupported("application/json", req.mimetype)
        return super().load_json(req, schema)

    def load_form(self, req: flask.Request, schema: ma.Schema) -> Any:
        if req.mimetype not in FORM_MIMETYPES:
            _unsupported(" or ".join(FORM_MIMETYPES), req.mimetype)
        return super().load_form(req, schema)


def _unsupported(expected: str, got: str) -> NoReturn:
    raise APIError(415, f"Expected a body of type {expected}, got {got or 'none'}.")


class ErrorSchema(ma.Schema):
    """The one error envelope (see mlapi.errors)."""

    error = ma.fields.String(required=True, metadata={"example": "not_found"})
    detail = ma.fields.String(required=True)
    status_code = ma.fields.Integer(required=True)
    request_id = ma.fields.String(required=True)
    timestamp = ma.fields.DateTime(required=True)
    errors = ma.fields.Dict(metadata={"description": "Messages per field (validation errors only)."})


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        """Errors are rendered by mlapi.errors, for every blueprint alike."""


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictContentTypeParser()
