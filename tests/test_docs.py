import re

import pytest


def test_openapi_document(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert "/health" in spec["paths"] and "/ready" in spec["paths"]


def test_summaries_and_descriptions_are_markdown_not_restructuredtext(client):
    """Swagger UI and ReDoc render Markdown: RST's double backticks would show literally."""
    spec = client.get("/v1/openapi.json").get_data(as_text=True)
    assert "``" not in spec and ":mod:" not in spec


@pytest.mark.parametrize("page", ["/v1/docs", "/v1/redoc"])
def test_doc_pages_load_every_asset_from_this_server(client, page):
    response = client.get(page)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, "the page should load its UI bundle"
    for asset in assets:
        assert asset.startswith("/"), f"{asset} would leave the machine"
        with client.get(asset) as served:
            assert served.status_code == 200, asset
            assert len(served.data) > 1000


def test_swagger_ui_does_not_send_the_spec_to_an_online_validator(client):
    html = client.get("/v1/docs").get_data(as_text=True)
    assert re.search(r'"validatorUrl":\s*null', html)


def test_asset_paths_cannot_escape_the_bundle(client):
    assert client.get("/v1/docs/assets/swagger-ui/../../__init__.py").status_code == 404
    assert client.get("/v1/docs/assets/redoc/%2e%2e/__init__.py").status_code == 404


HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(spec):
    """``(method, path, operation)`` for every operation in an OpenAPI document."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def send(client, method, path, **kwargs):
    return client.open(re.sub(r"\{[^}]+\}", "1", path), method=method, **kwargs)


@pytest.fixture
def app_without_database(tmp_path):
    from mlapi.app import create_app
    from mlapi.extensions import db

    gone = f"sqlite:///{tmp_path / 'gone' / 'mlapi.db'}"
    app = create_app({"MLAPI_DATABASE_URL": gone, "MLAPI_MAX_BODY_BYTES": "1024"}, load_models=False)
    yield app
    db.dispose()


def test_every_error_is_documented_as_the_envelope(client):
    spec = client.get("/v1/openapi.json").get_json()
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                if "$ref" in response:
                    response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_every_operation_documents_its_413(app_without_database):
    client = app_without_database.test_client()
    spec = client.get("/v1/openapi.json").get_json()
    for method, path, operation in operations(spec):
        answer = send(client, method, path, data=b"x" * 1025, content_type="application/json")
        assert answer.status_code == 413, (method, path)
        assert "413" in operation["responses"], (method, path)


def test_every_operation_that_checks_credentials_documents_its_503_without_database(app_without_database):
    from types import SimpleNamespace

    from flask_jwt_extended import create_access_token, create_refresh_token

    client = app_without_database.test_client()
    spec = client.get("/v1/openapi.json").get_json()
    with app_without_database.app_context():
        someone = SimpleNamespace(id=1, tier="pro", username="someone")
        session = {"sid": "00000000-0000-0000-0000-000000000000"}
        access = create_access_token(identity=someone, additional_claims=session)
        refresh = create_refresh_token(identity=someone, additional_claims=session)
    checked = 0
    for method, path, operation in operations(spec):
        if "401" not in operation["responses"]:
            continue
        token = refresh if path.endswith("/refresh") else access
        answer = send(
            client, method, path, headers={"Authorization": f"Bearer {token}"}, data={"username": "a", "password": "b"}
        )
        assert answer.status_code == 503, (method, path)
        body = answer.get_json()  # under /v2, "error" holds the message and "code" the name
        assert "database_unavailable" in (body["error"], body.get("code")), (method, path)
        assert "503" in operation["responses"], (method, path)
        checked += 1
    assert checked > 10
    assert "503" not in spec["paths"]["/health"]["get"]["responses"]


def test_bodies_and_query_strings_document_400_and_bodies_415(client):
    spec = client.get("/v1/openapi.json").get_json()
    for method, path, operation in operations(spec):
        statuses = set(operation["responses"])
        if "requestBody" in operation:
            assert {"400", "415"} <= statuses, (method, path)
        if any(parameter["in"] == "query" for parameter in operation.get("parameters", [])):
            assert "400" in statuses, (method, path)
