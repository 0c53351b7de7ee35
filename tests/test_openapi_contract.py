"""/v1 is a contract: contracts/openapi-v1.json holds its OpenAPI document, and the app may only add to it.

The checker is proven here on the snapshot itself: each kind of breaking change, made in code, must be
reported, and each kind of addition must pass.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from mlapi.contract import breaking_changes, render, versioned_document
from mlapi.extensions import db
from tests.conftest import ROOT, make_test_app

SNAPSHOT = ROOT / "contracts" / "openapi-v1.json"
REGENERATE = (
    "The app breaks the /v1 contract in contracts/openapi-v1.json. Restore what clients rely on; only if the"
    " change is intended, regenerate the snapshot with `mlapi contract snapshot` (docs/api.md, Versioning).\n"
)


def _snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


def _resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        target = document
        for token in node["$ref"].removeprefix("#/").split("/"):
            target = target[token]
        node = target
    return node


def _request(document: dict, path: str, media_type: str = "application/json") -> dict:
    """The (shared, mutable) schema of the POST body of ``path``."""
    body = document["paths"][path]["post"]["requestBody"]
    return _resolve(document, body["content"][media_type]["schema"])


def _response(document: dict, path: str, method: str = "post", status: str = "200") -> dict:
    response = _resolve(document, document["paths"][path][method]["responses"][status])
    return _resolve(document, response["content"]["application/json"]["schema"])


def _parameter(document: dict, path: str, name: str, method: str = "get") -> dict:
    item = document["paths"][path]
    for parameter in [*item.get("parameters", []), *item.get(method, {}).get("parameters", [])]:
        if parameter["name"] == name:
            return parameter
    raise LookupError(f"{path} has no parameter {name}")


def _items(document: dict, schema: dict, name: str) -> dict:
    """The schema of the items of the array property ``name``."""
    return _resolve(document, schema["properties"][name]["items"])


def _changes_after(mutate: Callable[[dict], object]) -> list[str]:
    old = _snapshot()
    new = copy.deepcopy(old)
    mutate(new)
    return breaking_changes(old, new)


# --- the contract itself -------------------------------------------------------------------------


def test_the_served_v1_document_keeps_the_contract(client):
    served = client.get("/v1/openapi.json").get_json()
    changes = breaking_changes(_snapshot(), versioned_document(served))
    assert changes == [], REGENERATE + "\n".join(changes)


def test_the_snapshot_is_generated_not_edited():
    text = SNAPSHOT.read_text()
    document = json.loads(text)
    assert text == render(document), "regenerate it with `mlapi contract snapshot`; never edit it by hand"
    assert document["paths"] and all(path.startswith("/v1/") for path in document["paths"])
    # Only what /v1 uses, and every reference resolves (the checker raises on one that does not).
    assert versioned_document(document) == document
    assert breaking_changes(document, document) == []


def test_versioned_document_keeps_only_the_version_and_what_it_uses():
    def operation(schema: str, scheme: str, tag: str) -> dict:
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
        responses = {200: {"description": "OK", "content": content}}
        return {"get": {"responses": responses, "security": [{scheme: []}], "tags": [tag]}}

    spec = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/v1/things": operation("Thing", "bearer", "things"),
            "/v2/things": operation("ThingV2", "key", "v2"),
            "/v10/things": operation("ThingV2", "key", "v2"),
            "/health": operation("ThingV2", "key", "v2"),
        },
        "components": {
            "schemas": {
                "Thing": {"properties": {"part": {"$ref": "#/components/schemas/Part"}}},
                "Part": {"properties": {"again": {"$ref": "#/components/schemas/Part"}}},
                "ThingV2": {"type": "object"},
                "Unused": {"type": "object"},
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "key": {"type": "apiKey"}},
        },
        "tags": [{"name": "things"}, {"name": "v2"}],
    }
    document = versioned_document(spec)
    assert list(document["paths"]) == ["/v1/things"]
    assert set(document["components"]["schemas"]) == {"Thing", "Part"}
    assert set(document["components"]["securitySchemes"]) == {"bearer"}
    assert document["tags"] == [{"name": "things"}]
    assert list(document["paths"]["/v1/things"]["get"]["responses"]) == ["200"]  # JSON's keys, as served
    assert spec["paths"]["/v1/things"]["get"]["responses"][200], "the input is left as it was"


def test_render_is_stable_and_ascii():
    one = {"b": [2, 1], "a": {"y": "\u3000 \x85", "x": True}}
    other = {"a": {"x": True, "y": "\u3000 \x85"}, "b": [2, 1]}
    assert render(one) == render(other)
    assert render(one).isascii() and render(one).endswith("}\n")
    assert json.loads(render(one)) == one


# --- the checker reports each kind of breaking change ----------------------------------------------


def _remove_required(schema: dict, name: str) -> None:
    schema["required"].remove(name)


BREAKING: dict[str, tuple[Callable[[dict], object], str]] = {
    "path removed": (lambda d: d["paths"].pop("/v1/models/{name}"), "/v1/models/{name}: path removed"),
    "operation removed": (
        lambda d: d["paths"]["/v1/api-keys/{key_id}"].pop("delete"),
        "DELETE /v1/api-keys/{key_id}: operation removed",
    ),
    "response field removed": (
        lambda d: _response(d, "/v1/predict")["properties"].pop("confidence"),
        "POST /v1/predict response 200 (application/json): 'confidence' removed",
    ),
    "nested response field removed": (
        lambda d: _items(d, _response(d, "/v1/predict/batch"), "predictions")["properties"].pop("index"),
        "POST /v1/predict/batch response 200 (application/json): 'predictions[].index' removed",
    ),
    "response field no longer required": (
        lambda d: _remove_required(_response(d, "/v1/predict"), "confidence"),
        "'confidence' no longer required",
    ),
    "response type changed": (
        lambda d: _response(d, "/v1/predict/batch")["properties"]["count"].update(type="string"),
        "POST /v1/predict/batch response 200 (application/json): 'count' type changed from integer to string",
    ),
    "response format changed": (
        lambda d: _response(d, "/v1/predict")["properties"]["timestamp"].update(format="date"),
        "'timestamp' format changed from date-time to date",
    ),
    "response field may be null": (
        lambda d: _response(d, "/v1/predict")["properties"]["result"].update(nullable=True),
        "'result' may now be null",
    ),
    "success response removed": (
        lambda d: d["paths"]["/v1/users/me"]["get"]["responses"].pop("200"),
        "GET /v1/users/me response 200: removed",
    ),
    "response media type removed": (
        lambda d: d["paths"]["/v1/users/me"]["get"]["responses"]["200"].update(content={"text/plain": {}}),
        "GET /v1/users/me response 200: media type application/json removed",
    ),
    "request field made required": (
        lambda d: _request(d, "/v1/predict")["required"].append("temperature"),
        "POST /v1/predict request body (application/json): 'temperature' became required",
    ),
    "new required request field": (
        lambda d: (
            _request(d, "/v1/predict")["properties"].update(top_k={"type": "integer"}),
            _request(d, "/v1/predict")["required"].append("top_k"),
        ),
        "'top_k' is new and required",
    ),
    "request field removed": (
        lambda d: _request(d, "/v1/predict")["properties"].pop("labels"),
        "POST /v1/predict request body (application/json): 'labels' removed",
    ),
    "request type changed": (
        lambda d: _request(d, "/v1/predict")["properties"]["max_tokens"].update(type="string"),
        "'max_tokens' type changed from integer to string",
    ),
    "request enum value removed": (
        lambda d: _request(d, "/v1/embeddings")["properties"]["encoding_format"]["enum"].remove("base64"),
        "POST /v1/embeddings request body (application/json): 'encoding_format' enum value(s) removed: \"base64\"",
    ),
    "request field restricted to an enum": (
        lambda d: _request(d, "/v1/predict")["properties"]["model"].update(enum=["sentiment"]),
        "'model' now restricted to \"sentiment\"",
    ),
    "request bound tightened": (
        lambda d: _request(d, "/v1/predict")["properties"]["text"].update(maxLength=100),
        "'text' maxLength tightened from 5000 to 100",
    ),
    "request lower bound raised": (
        lambda d: _request(d, "/v1/predict")["properties"]["temperature"].update(minimum=0.5),
        "'temperature' minimum tightened from 0.0 to 0.5",
    ),
    "request pattern changed": (
        lambda d: _request(d, "/v1/predict")["properties"]["text"].update(pattern="^[a-z]+$"),
        "'text' pattern changed",
    ),
    "request alternative removed": (
        lambda d: _request(d, "/v1/embeddings")["properties"]["input"]["oneOf"].pop(),
        "'input' 'oneOf' went from 2 to 1 schemas",
    ),
    "form field made required": (
        lambda d: _request(d, "/v1/token", "application/x-www-form-urlencoded")["required"].append("grant_type"),
        "POST /v1/token request body (application/x-www-form-urlencoded): 'grant_type' became required",
    ),
    "request media type removed": (
        lambda d: d["paths"]["/v1/token"]["post"]["requestBody"].update(content={"application/json": {}}),
        "POST /v1/token request body: media type application/x-www-form-urlencoded removed",
    ),
    "request body now required": (
        lambda d: d["paths"]["/v1/token/refresh"]["post"].update(
            requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        ),
        "POST /v1/token/refresh request body: is new and required",
    ),
    "request body removed": (
        lambda d: d["paths"]["/v1/predict"]["post"].pop("requestBody"),
        "POST /v1/predict request body: removed",
    ),
    "query parameter removed": (
        lambda d: d["paths"]["/v1/admin/users"]["get"]["parameters"].remove(_parameter(d, "/v1/admin/users", "page")),
        "GET /v1/admin/users query parameter 'page': removed",
    ),
    "query parameter made required": (
        lambda d: _parameter(d, "/v1/admin/users", "page_size").update(required=True),
        "GET /v1/admin/users query parameter 'page_size': became required",
    ),
    "new required query parameter": (
        lambda d: d["paths"]["/v1/admin/users"]["get"]["parameters"].append(
            {"in": "query", "name": "since", "required": True, "schema": {"type": "string"}}
        ),
        "GET /v1/admin/users: new required query parameter 'since'",
    ),
    "query parameter enum value removed": (
        lambda d: _parameter(d, "/v1/admin/audit", "action")["schema"]["enum"].remove("key.revoked"),
        "GET /v1/admin/audit query parameter 'action': enum value(s) removed: \"key.revoked\"",
    ),
    "path parameter type changed": (
        lambda d: _parameter(d, "/v1/api-keys/{key_id}", "key_id", "delete")["schema"].update(type="string"),
        "DELETE /v1/api-keys/{key_id} path parameter 'key_id': type changed from integer to string",
    ),
    "authentication now required": (
        lambda d: d["paths"]["/v1/token"]["post"].update(security=[{"bearerAuth": []}]),
        "POST /v1/token: no longer accepts anonymous requests",
    ),
    "a way to authenticate dropped": (
        lambda d: d["paths"]["/v1/predict"]["post"].update(security=[{"bearerAuth": []}]),
        "POST /v1/predict: no longer accepts apiKeyAuth",
    ),
}


@pytest.mark.parametrize("mutation", BREAKING)
def test_the_checker_reports_a_breaking_change(mutation):
    mutate, expected = BREAKING[mutation]
    changes = _changes_after(mutate)
    assert any(expected in change for change in changes), changes


# --- ... and lets each kind of addition pass -------------------------------------------------------


def _rename_path_parameter(document: dict) -> None:
    item = document["paths"].pop("/v1/api-keys/{key_id}")
    for parameter in item["parameters"]:
        parameter["name"] = "id"
    document["paths"]["/v1/api-keys/{id}"] = item


ADDITIVE: dict[str, Callable[[dict], object]] = {
    "new paths, another version's included": lambda d: d["paths"].update(
        {"/v1/new": {"get": {"responses": {"200": {"description": "OK"}}}}, "/v2/models": {"get": {"responses": {}}}}
    ),
    "new operation": lambda d: d["paths"]["/v1/users/me"].update(patch={"responses": {"200": {"description": "OK"}}}),
    "new optional request field": lambda d: _request(d, "/v1/predict")["properties"].update(top_k={"type": "integer"}),
    "request field made optional": lambda d: _remove_required(_request(d, "/v1/predict"), "text"),
    "request enum value added": lambda d: _request(d, "/v1/embeddings")["properties"]["encoding_format"]["enum"].append(
        "int8"
    ),
    "request bound loosened": lambda d: _request(d, "/v1/predict")["properties"]["text"].update(maxLength=10_000),
    "request type widened from integer to number": lambda d: _request(d, "/v1/predict")["properties"][
        "max_tokens"
    ].update(type="number"),
    "new optional query parameter": lambda d: d["paths"]["/v1/admin/users"]["get"]["parameters"].append(
        {"in": "query", "name": "since", "required": False, "schema": {"type": "string"}}
    ),
    "new response field": lambda d: (
        _response(d, "/v1/predict")["properties"].update(tokens={"type": "integer"}),
        _response(d, "/v1/predict")["required"].append("tokens"),
    ),
    "response field made required": lambda d: _items(d, _response(d, "/v1/models/{name}", "get"), "versions")[
        "required"
    ].append("dimensions"),
    "new response status": lambda d: d["paths"]["/v1/models/{name}"]["get"]["responses"].update(
        {"410": {"description": "Gone."}}
    ),
    "documented error status dropped": lambda d: d["paths"]["/v1/models/{name}"]["get"]["responses"].pop("404"),
    "new way to authenticate": lambda d: d["paths"]["/v1/predict"]["post"]["security"].append({"oauth": []}),
    "path parameter renamed": _rename_path_parameter,
    "documentation reworded": lambda d: (
        d["paths"]["/v1/predict"]["post"].update(summary="Classify a text.", description="Longer words."),
        d["info"].update(version="9.9.9"),
    ),
}


@pytest.mark.parametrize("mutation", ADDITIVE)
def test_the_checker_lets_an_addition_pass(mutation):
    assert _changes_after(ADDITIVE[mutation]) == []


# --- rules the snapshot has no example of --------------------------------------------------------


def _one_operation(request: dict | None = None, response: dict | None = None, **operation: object) -> dict:
    content = {"application/json": {"schema": response or {"type": "object"}}}
    post: dict = {"responses": {"200": {"description": "OK", "content": content}}, **operation}
    if request is not None:
        post["requestBody"] = {"required": True, "content": {"application/json": {"schema": request}}}
    return {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/v1/things": {"post": post}}}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            _one_operation(request={"type": "string", "nullable": True}),
            _one_operation(request={"type": "string"}),
            "request body (application/json): no longer accepts null",
        ),
        (
            _one_operation(request={"type": "object"}),
            _one_operation(request={"type": "object", "additionalProperties": False}),
            "no longer accepts undocumented properties",
        ),
        (
            _one_operation(response={"properties": {"tags": {"type": "array", "items": {"type": "string"}}}}),
            _one_operation(response={"properties": {"tags": {"type": "array"}}}),
            "'tags[]' type changed from string to any",
        ),
        (
            _one_operation(response={"properties": {"scores": {"additionalProperties": {"type": "number"}}}}),
            _one_operation(response={"properties": {"scores": {"additionalProperties": {"type": "string"}}}}),
            "'scores.*' type changed from number to string",
        ),
        (
            _one_operation(response={"oneOf": [{"type": "string"}]}),
            _one_operation(response={"oneOf": [{"type": "string"}, {"type": "integer"}]}),
            "'oneOf' went from 1 to 2 schemas",
        ),
        (
            _one_operation(response={"type": "string"}),
            _one_operation(response={"oneOf": [{"type": "string"}]}),
            "'oneOf' added",
        ),
        (
            _one_operation(response={"properties": {"kind": {"enum": ["a", "b"]}}}),
            _one_operation(response={"properties": {"kind": {"type": "string"}}}),
            "'kind' no longer restricted to its enum values",
        ),
        (
            _one_operation(parameters=[{"in": "header", "name": "X-Tenant", "schema": {}}]),
            _one_operation(parameters=[{"in": "header", "name": "x-tenant", "required": True, "schema": {}}]),
            "header parameter 'x-tenant': became required",
        ),
    ],
)
def test_the_checker_reports(old, new, expected):
    changes = breaking_changes(old, new)
    assert any(expected in change for change in changes), changes


def test_properties_that_do_not_travel_that_way_do_not_count():
    old = _one_operation(
        request={"properties": {"id": {"type": "integer", "readOnly": True}, "name": {"type": "string"}}},
        response={"properties": {"password": {"type": "string", "writeOnly": True}, "name": {"type": "string"}}},
    )
    kept = {"properties": {"name": {"type": "string"}}}
    assert breaking_changes(old, _one_operation(request=kept, response=kept)) == []


def test_a_recursive_schema_is_compared_without_end():
    def tree(leaf_type: str, *, typed_children: bool = True) -> dict:
        document = _one_operation(response={"$ref": "#/components/schemas/Node"})
        children: dict = {"type": "array"}
        if typed_children:
            children["items"] = {"$ref": "#/components/schemas/Node"}
        properties = {"value": {"type": leaf_type}, "children": children}
        document["components"] = {"schemas": {"Node": {"type": "object", "properties": properties}}}
        return document

    assert breaking_changes(tree("string"), tree("string")) == []
    assert breaking_changes(tree("string"), tree("integer")) == [
        "POST /v1/things response 200 (application/json): 'value' type changed from string to integer"
    ]
    assert breaking_changes(tree("string"), tree("string", typed_children=False)) == [
        "POST /v1/things response 200 (application/json): 'children[]' type changed from object to any"
    ]


def test_a_change_to_a_shared_schema_is_reported_once():
    def drop_detail(document: dict) -> None:
        error = _response(document, "/v1/predict", status="422")
        error["properties"].pop("detail")

    changes = _changes_after(drop_detail)
    assert len(changes) == 1 and changes[0].endswith("'detail' removed"), changes


@pytest.mark.parametrize("ref", ["#/components/schemas/Missing", "other.json#/Thing", "#/components/schemas/Loop"])
def test_a_reference_that_cannot_be_resolved_is_an_error(ref):
    document = _one_operation(response={"$ref": ref})
    document["components"] = {"schemas": {"Loop": {"$ref": "#/components/schemas/Loop"}}}
    with pytest.raises(ValueError, match="cannot resolve"):
        breaking_changes(document, document)


# --- mlapi contract snapshot | check ---------------------------------------------------------------


@pytest.fixture
def spec_app(tmp_path) -> Iterator[Flask]:
    """The app as the CLI builds it: no models loaded, no database needed."""
    app = make_test_app(f"sqlite:///{tmp_path / 'mlapi.db'}", migrate=False, load_models=False)
    yield app
    db.dispose()


def _invoke(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["contract", *args])


def test_snapshot_writes_the_same_canonical_document_every_time(spec_app, tmp_path):
    first, second = tmp_path / "new" / "first.json", tmp_path / "second.json"
    for output in (first, second):
        result = _invoke(spec_app, "snapshot", "--output", str(output))
        assert result.exit_code == 0, result.output
        assert f"wrote {output}" in result.output
    text = first.read_text()
    assert text == second.read_text() == render(json.loads(text))
    served = spec_app.test_client().get("/v1/openapi.json").get_json()
    assert json.loads(text) == versioned_document(served)


def test_snapshot_refuses_a_deployment_s_deprecation_schedule(tmp_path):
    database = f"sqlite:///{tmp_path / 'mlapi.db'}"
    app = make_test_app(database, migrate=False, load_models=False, MLAPI_DEPRECATED_VERSIONS="v1=2099-06-30")
    try:
        result = _invoke(app, "snapshot", "--output", str(tmp_path / "contract.json"))
    finally:
        db.dispose()
    assert result.exit_code == 1
    assert "unset MLAPI_DEPRECATED_VERSIONS" in result.output
    assert not (tmp_path / "contract.json").exists()


def test_check_passes_against_the_committed_snapshot(spec_app):
    result = _invoke(spec_app, "check", "--snapshot", str(SNAPSHOT))
    assert result.exit_code == 0, result.output
    assert "no breaking change" in result.output


def test_check_lists_each_breaking_change_and_fails(spec_app, tmp_path):
    contract = _snapshot()
    contract["paths"]["/v1/gone"] = {"get": {"responses": {"200": {"description": "OK"}}}}
    _response(contract, "/v1/predict")["properties"]["retired"] = {"type": "string"}
    path = tmp_path / "contract.json"
    path.write_text(render(contract))
    result = _invoke(spec_app, "check", "--snapshot", str(path))
    assert result.exit_code == 1
    assert "/v1/gone: path removed" in result.output
    assert "POST /v1/predict response 200 (application/json): 'retired' removed" in result.output
    assert "2 breaking change(s)" in result.output and "mlapi contract snapshot" in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "Expecting property name"),
        ("[]", "not an OpenAPI document"),
        ('{"paths": {"/v1/predict": {"$ref": "#/nowhere"}}}', "cannot resolve $ref"),
        ("\udcff", "codec can't decode"),
    ],
)
def test_check_reports_an_unusable_snapshot_in_one_line(spec_app, tmp_path, content, expected):
    path = tmp_path / "contract.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    result = _invoke(spec_app, "check", "--snapshot", str(path))
    assert result.exit_code == 1
    assert expected in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def test_check_needs_an_existing_snapshot(spec_app, tmp_path):
    result = _invoke(spec_app, "check", "--snapshot", str(tmp_path / "missing.json"))
    assert result.exit_code == 2
    assert "does not exist" in result.output
