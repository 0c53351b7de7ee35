import re

import pytest


def test_openapi_document(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert "/health" in spec["paths"] and "/ready" in spec["paths"]


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
