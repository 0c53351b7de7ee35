"""No container engine runs here: parse the deploy files and check that what they use exists in the app."""

import re
from pathlib import Path

import pytest
import yaml

from mlapi.cli.main import cli
from tests.gunicorn_server import ROOT

DEPLOY = ROOT / "deploy"
CONFIG_SOURCE = (ROOT / "mlapi" / "config.py").read_text()
KNOWN_ENV = set(re.findall(r'"(MLAPI_[A-Z_]+)"', CONFIG_SOURCE)) | {
    "MLAPI_MIGRATIONS_DIR",  # read by mlapi db
    "PROMETHEUS_MULTIPROC_DIR",
}
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def kubernetes():
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def app_env_names():
    names = set()
    for service in compose()["services"].values():
        names |= {n for n in (service.get("environment") or {}) if n.startswith("MLAPI_")}
    for doc in kubernetes():
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= set(doc.get("data") or {}) | set(doc.get("stringData") or {})
    return names


def commands():
    """Every entrypoint/command list in compose and Kubernetes."""
    found = []
    for service in compose()["services"].values():
        for key in ("entrypoint", "command"):
            if isinstance(service.get(key), list) and service.get("image", "").startswith("mlapi"):
                found.append(service[key])
    for doc in kubernetes():
        spec = doc.get("spec", {})
        spec = spec.get("jobTemplate", {}).get("spec", spec)  # a CronJob's job
        template = spec.get("template", {}).get("spec", {})
        for container in template.get("containers", []):
            if "command" in container:
                found.append(container["command"])
    return found


def test_every_environment_variable_is_one_the_app_reads():
    names = app_env_names()
    assert {"MLAPI_SECRET_KEY", "MLAPI_DATABASE_URL", "MLAPI_REDIS_URL", "MLAPI_PROXY_HOPS"} <= names
    assert names <= KNOWN_ENV, names - KNOWN_ENV
    assert set(re.findall(r"(MLAPI_[A-Z_]+)=", DOCKERFILE)) <= KNOWN_ENV


def test_every_command_exists(app):
    found = commands()
    assert ["mlapi", "db", "upgrade"] in found
    assert ["mlapi", "usage", "prune"] in found
    available = {**app.cli.commands, **cli.commands}
    for command in found:
        if command[0] == "mlapi":
            group = available.get(command[1]) or pytest.fail(f"no mlapi command {command[1]}")
            assert command[2] in group.commands, command
        else:
            assert command[:3] == ["gunicorn", "-c", "/app/gunicorn.conf.py"] and command[3] == "wsgi:app", command
    assert "COPY gunicorn.conf.py wsgi.py ./" in DOCKERFILE and "WORKDIR /app" in DOCKERFILE


def test_ports_and_probes_match_the_app(app):
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    (deployment,) = [d for d in kubernetes() if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in rules
    (configmap,) = [d for d in kubernetes() if d["kind"] == "ConfigMap"]
    port = int(configmap["data"]["MLAPI_BIND"].rsplit(":", 1)[1])
    assert container["ports"][0]["containerPort"] == port
    assert f"EXPOSE {port}" in DOCKERFILE and "127.0.0.1:8000/health" in DOCKERFILE
    assert compose()["services"]["app1"]["environment"]["MLAPI_BIND"].endswith(f":{port}")
    assert "/ready" in " ".join(compose()["services"]["app1"]["healthcheck"]["test"])
    upstreams = re.findall(r"server (app\d):(\d+)", (DEPLOY / "nginx" / "mlapi.conf").read_text())
    assert {name for name, _ in upstreams} <= set(compose()["services"])
    assert {int(p) for _, p in upstreams} == {port}
    targets = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert targets["static_configs"][0]["targets"] == [f"app1:{port}", f"app2:{port}"]


def test_graceful_shutdown_fits_in_the_pod_grace_period():
    hooks = (ROOT / "gunicorn.conf.py").read_text()
    graceful = int(re.search(r"graceful_timeout = (\d+)", hooks).group(1))
    (deployment,) = [d for d in kubernetes() if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > graceful


def test_the_examples_ship_no_secret_values():
    """Applied as they are, they must not run with a value anyone who read the repository knows."""
    assert not [d for d in kubernetes() if d["kind"] == "Secret"]
    configmap_text = (DEPLOY / "kubernetes" / "configmap.yaml").read_text()
    assert "kubectl create secret generic mlapi" in configmap_text and "openssl rand" in configmap_text
    services = compose()["services"]
    secrets = {
        "MLAPI_SECRET_KEY": services["app1"]["environment"]["MLAPI_SECRET_KEY"],
        "MLAPI_DATABASE_URL": services["app1"]["environment"]["MLAPI_DATABASE_URL"],
        "POSTGRES_PASSWORD": services["postgres"]["environment"]["POSTGRES_PASSWORD"],
        "GF_SECURITY_ADMIN_PASSWORD": services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"],
    }
    for name, value in secrets.items():
        assert re.search(r"\$\{[A-Z_]+:\?", value), f"{name} is not required from the environment: {value}"
    assert Path(DEPLOY / "systemd" / "mlapi.service").read_text().count("ExecStart=") == 1


def test_only_nginx_listens_beyond_the_host():
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert name == "nginx" or port.startswith("127.0.0.1:"), (name, port)
