"""OpenAPI documentation settings and the Blueprint class every API resource uses."""

from __future__ import annotations

from typing import Any, NoReturn

import flask
import flask_smorest
import marshmallow as ma
from apispec import APISpec, BasePlugin
from webargs import core
from webargs.flaskparser import FlaskParser

from mlapi.serving.text import has_unusable_character
from mlapi.web.compat import ApiWithoutSmorestErrorHandlers
from mlapi.web.errors import APIError
from mlapi.web.versioning import DeprecatedOperationsPlugin

FORM_MIMETYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

OPENAPI_CONFIG: dict[str, Any] = {
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    # The UI assets are served by the app itself (mlapi.api.docs): no CDN, works offline.
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
    """Answers 415 when a body arrives in a media type the endpoint does not take, and 400 when
    a body is not text the service can use.

    webargs would otherwise treat a non-JSON body as absent and report missing fields.
    """

    DEFAULT_VALIDATION_STATUS = 422

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        if not core.is_json(req.mimetype):
            _unsupported("application/json", req.mimetype)
        try:
            data = super().load_json(req, schema)
        except RecursionError:
            # json.loads gives up on deep nesting ("[[[[...", well within the body limit) with a
            # RecursionError rather than a JSONDecodeError: still the client's malformed body.
            raise APIError(400, "The JSON body is nested too deeply.") from None
        except ValueError:
            # And on an integer of more than 4,300 digits (Python's int-string limit) with a
            # plain ValueError, which webargs does not take for invalid JSON.
            raise APIError(400, "The JSON body holds a number too long to read.") from None
        _refuse_unusable_text(data)
        return data

    def load_form(self, req: flask.Request, schema: ma.Schema) -> Any:
        if req.mimetype not in FORM_MIMETYPES:
            _unsupported(" or ".join(FORM_MIMETYPES), req.mimetype)
        _refuse_unusable_text(list(req.form.items(multi=True)))
        return super().load_form(req, schema)

    def load_querystring(self, req: flask.Request, schema: ma.Schema) -> Any:
        _refuse_unusable_text(list(req.args.items(multi=True)))
        return super().load_querystring(req, schema)


def _refuse_unusable_text(data: Any) -> None:
    pending = [data]
    while pending:  # a loop, not recursion: the JSON may be nested nearly to the recursion limit
        value = pending.pop()
        if isinstance(value, str):
            if has_unusable_character(value):
                raise APIError(400, "The request holds a NUL character or an unpaired UTF-16 surrogate; send text.")
        elif isinstance(value, dict):
            pending.extend(value.items())
        elif isinstance(value, (list, tuple)):
            pending.extend(value)


def _unsupported(expected: str, got: str) -> NoReturn:
    raise APIError(415, f"Expected a body of type {expected}, got {got or 'none'}.")


class ErrorSchema(ma.Schema):
    """The one error envelope (see mlapi.web.errors)."""

    class Meta:
        # Some errors carry more: /ready its checks, /v2 the error's name as ``code``.
        unknown = ma.INCLUDE

    error = ma.fields.String(required=True, metadata={"example": "not_found"})
    detail = ma.fields.String(required=True)
    status_code = ma.fields.Integer(required=True)
    request_id = ma.fields.String(required=True)
    timestamp = ma.fields.DateTime(required=True)
    errors = ma.fields.Dict(metadata={"description": "Messages per field (validation errors only)."})


class CommonErrorsPlugin(BasePlugin):
    """Documents, once for every operation, the errors that follow from its shape.

    - any request: 413, as a body over ``MLAPI_MAX_BODY_BYTES`` is refused before routing;
    - a body: 400 (malformed, or text the service cannot use) and 415 (another media type);
      query parameters: 400 as well;
    - credentials (it documents 401): 503, as they are looked up in the database on every request.

    What an operation documents itself is left as it is.
    """

    RESPONSES = {
        "MALFORMED_REQUEST": "Malformed JSON, or text with a NUL or an unpaired surrogate.",
        "BODY_TOO_LARGE": "The body exceeds MLAPI_MAX_BODY_BYTES.",
        "WRONG_MEDIA_TYPE": "The body is not of the documented media type.",
        "DATABASE_UNAVAILABLE": "The database is unavailable (error: database_unavailable); see Retry-After.",
    }

    def init_spec(self, spec: APISpec) -> None:
        for name, description in self.RESPONSES.items():
            content = {"application/json": {"schema": ErrorSchema}}
            spec.components.response(name, {"description": description, "content": content}, lazy=True)

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            has_body = "requestBody" in operation
            has_query = any(_location(parameter) == "query" for parameter in operation.get("parameters", []))
            _document(responses, 413, "BODY_TOO_LARGE")
            if has_body or has_query:
                _document(responses, 400, "MALFORMED_REQUEST")
            if has_body:
                _document(responses, 415, "WRONG_MEDIA_TYPE")
            if _documents(responses, 401):
                _document(responses, 503, "DATABASE_UNAVAILABLE")


def _location(parameter: Any) -> str | None:
    return parameter.get("in") if isinstance(parameter, dict) else None


def _documents(responses: dict, status: int) -> bool:
    # Decorators give status codes as ints, strings or HTTPStatus members.
    return any(code == status or str(code) == str(status) for code in responses)


def _document(responses: dict, status: int, component: str) -> None:
    if not _documents(responses, status):
        responses[status] = component


class Api(ApiWithoutSmorestErrorHandlers):
    ERROR_SCHEMA = ErrorSchema

    def __init__(self, app: flask.Flask | None = None, *, spec_kwargs: dict | None = None, **kwargs: Any) -> None:
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [
            CommonErrorsPlugin(),
            DeprecatedOperationsPlugin(self),
            *spec_kwargs.get("extra_plugins", ()),
        ]
        super().__init__(app, spec_kwargs=spec_kwargs, **kwargs)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictContentTypeParser()

    def alt_response(self, status_code: int, response: Any = None, *, schema: Any = None, **kwargs: Any) -> Any:
        """An error (4xx, 5xx) is documented as the error envelope unless told otherwise."""
        if response is None and schema is None and int(status_code) >= 400:
            schema = ErrorSchema
        return super().alt_response(status_code, response, schema=schema, **kwargs)

    def alt_responses(self, errors: dict[int, str]) -> Any:
        """Document each status of ``errors`` (status: description) as the error envelope."""

        def decorator(view: Any) -> Any:
            for status, description in errors.items():
                view = self.alt_response(status, description=description)(view)
            return view

        return decorator

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        """Parse with one schema instance per view: webargs would build a new one per request."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)
