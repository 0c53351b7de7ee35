"""Two Gunicorn instances behind a real NGINX (deploy/nginx/mlapi.conf), sharing PostgreSQL and Redis."""

import http.client
import socket
import ssl
import warnings
from types import SimpleNamespace

import pytest
import requests

from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.gunicorn_server import GunicornServer
from tests.nginx_server import NginxServer, render_site
from tests.services import (
    REDIS_URL,
    fresh_postgres_database,
    redis_available,
    unique_prefix,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    redis_available()
    workdir = tmp_path_factory.mktemp("nginx")
    (workdir / "no-models").mkdir()
    with fresh_postgres_database() as url:
        app = make_test_app(url, load_models=False)
        factory = Factory(app)
        free_record, free_key = factory.api_key(factory.user("edge-free", tier="free"))
        pro_record, pro_key = factory.api_key(
            factory.user("edge-pro", tier="pro"), scopes=("inference", "models:read", "keys:write")
        )
        db.dispose()
        env = {
            "MLAPI_DATABASE_URL": url,
            "MLAPI_REDIS_URL": REDIS_URL,
            "MLAPI_REDIS_PREFIX": unique_prefix(),
            "MLAPI_MODEL_DIR": str(workdir / "no-models"),  # this is about the edge, not the models
            "MLAPI_PROXY_HOPS": "1",
            "MLAPI_ANON_LIMIT": "3/minute",
        }
        (workdir / "edge").mkdir()
        with (
            GunicornServer(workdir / "a.log", env, workers=2) as first,
            GunicornServer(workdir / "b.log", env, workers=2) as second,
            NginxServer(workdir / "edge", [first.port, second.port]) as edge,
        ):
            yield SimpleNamespace(
                edge=edge,
                first=first,
                second=second,
                free_key=free_key,
                pro_key=pro_key,
                pro_key_id=pro_record.id,
            )


def get_from(edge: NginxServer, source: str, path: str, headers: dict | None = None) -> int:
    """A request whose TCP connection comes from ``source`` (another loopback address), over TLS."""
    context = ssl.create_default_context(cafile=str(edge.certificate))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", edge.port, timeout=10, source_address=(source, 0), context=context
    )
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_rendered_site_keeps_the_deployed_settings(tmp_path):
    site = render_site([1111, 2222], 3333, 4444, tmp_path / "c.crt", tmp_path / "c.key")
    assert "server 127.0.0.1:1111" in site and "server 127.0.0.1:2222" in site and "listen 127.0.0.1:3333;" in site
    assert "listen 127.0.0.1:4444 ssl;" in site and f"ssl_certificate {tmp_path / 'c.crt'};" in site
    for directive in (
        "keepalive 32",
        "client_max_body_size 1m",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "proxy_read_timeout",
        "location = /metrics",
        "ssl_protocols TLSv1.2 TLSv1.3",
        "Strict-Transport-Security",
        "return 308 https://",
    ):
        assert directive in site


def test_plain_http_only_redirects_to_https(stack):
    response = requests.post(
        f"{stack.edge.http_url}/v1/predict?x=1",
        json={"text": "hi"},
        headers={"X-Request-ID": "plain-http"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 308
    assert response.headers["Location"] == "https://127.0.0.1/v1/predict?x=1"
    # Nothing reached the app: no instance logged the request.
    for instance in (stack.first, stack.second):
        assert not [e for e in instance.access_log() if e.get("request_id") == "plain-http"]


def test_tls_is_modern_and_strict(stack):
    answer = requests.get(f"{stack.edge.url}/health", verify=stack.edge.certificate, timeout=10)
    assert answer.status_code == 200 and answer.headers["Strict-Transport-Security"].startswith("max-age=")
    old = ssl.create_default_context(cafile=str(stack.edge.certificate))
    with warnings.catch_warnings():  # the point is to ask for a deprecated protocol
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", stack.edge.port), timeout=10) as raw:
        old.wrap_socket(raw, server_hostname="127.0.0.1")
    no_forward_secrecy = ssl.create_default_context(cafile=str(stack.edge.certificate))
    no_forward_secrecy.maximum_version = ssl.TLSVersion.TLSv1_2
    no_forward_secrecy.set_ciphers("AES128-SHA:AES256-SHA:AES128-GCM-SHA256")  # RSA key exchange only
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", stack.edge.port), timeout=10) as raw:
        no_forward_secrecy.wrap_socket(raw, server_hostname="127.0.0.1")
    hidden = requests.get(f"{stack.edge.url}/metrics", verify=stack.edge.certificate, timeout=10)
    assert hidden.headers["Strict-Transport-Security"].startswith("max-age=")


def test_requests_pass_through_nginx(stack):
    response = requests.get(
        f"{stack.edge.url}/v1/users/me",
        headers={"X-API-Key": stack.pro_key, "X-Request-ID": "through-the-edge"},
        verify=stack.edge.certificate,
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["username"] == "edge-pro"
    assert response.headers["X-Request-ID"] == "through-the-edge"
    generated = requests.get(f"{stack.edge.url}/health", verify=stack.edge.certificate, timeout=10).headers[
        "X-Request-ID"
    ]
    assert len(generated) >= 16
    too_big = requests.post(
        f"{stack.edge.url}/v1/predict",
        data=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
        verify=stack.edge.certificate,
        timeout=10,
    )
    assert too_big.status_code == 413


def test_metrics_are_not_exposed_through_nginx(stack):
    response = requests.get(f"{stack.edge.url}/metrics", verify=stack.edge.certificate, timeout=10)
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert requests.get(f"{stack.first.url}/metrics", timeout=10).status_code == 200  # scraped directly


def test_one_accounts_limit_is_shared_by_both_instances(stack):
    statuses = [
        requests.get(
            f"{stack.edge.url}/v1/users/me",
            headers={"X-API-Key": stack.free_key, "X-Request-ID": f"share-{i}"},
            verify=stack.edge.certificate,
            timeout=10,
        ).status_code
        for i in range(11)
    ]
    assert statuses == [200] * 10 + [429]
    served_first = any(e.get("request_id", "").startswith("share-") for e in stack.first.access_log())
    served_second = any(e.get("request_id", "").startswith("share-") for e in stack.second.access_log())
    assert served_first and served_second, "NGINX should have used both instances"


def test_per_ip_limits_see_the_real_client_address(stack):
    edge = stack.edge
    assert [get_from(edge, "127.0.0.2", "/v1/users/me") for _ in range(4)] == [401, 401, 401, 429]
    assert get_from(edge, "127.0.0.3", "/v1/users/me") == 401  # another client, its own quota
    # Claiming to be 127.0.0.4 does not buy a fresh quota: the address NGINX saw is what counts.
    spoofed = [get_from(edge, "127.0.0.2", "/v1/users/me", {"X-Forwarded-For": f"127.0.0.{n}"}) for n in (4, 5)]
    assert spoofed == [429, 429]


def test_a_key_revoked_on_one_instance_is_refused_by_the_other(stack):
    headers = {"X-API-Key": stack.pro_key}
    assert requests.get(f"{stack.second.url}/v1/users/me", headers=headers, timeout=10).status_code == 200
    revoked = requests.delete(f"{stack.first.url}/v1/api-keys/{stack.pro_key_id}", headers=headers, timeout=10)
    assert revoked.status_code == 204
    refused = requests.get(f"{stack.second.url}/v1/users/me", headers=headers, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"] == "revoked_key"
    assert (
        requests.get(
            f"{stack.edge.url}/v1/users/me", headers=headers, verify=stack.edge.certificate, timeout=10
        ).status_code
        == 401
    )
