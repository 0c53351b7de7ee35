"""Runs Debian's NGINX with deploy/nginx/mlapi.conf in front of test instances, on free ports."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.gunicorn_server import ROOT
from tests.services import free_port, unavailable

SITE = ROOT / "deploy" / "nginx" / "mlapi.conf"


def render_site(upstream_ports: list[int], http_port: int, tls_port: int, certificate: Path, key: Path) -> str:
    """The deployed site file, with its upstreams, listen addresses and certificate pointed at this test."""
    site = SITE.read_text()
    servers = "\n".join(f"    server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;" for port in upstream_ports)
    for pattern, replacement in (
        (r"(?m)^    server [\w.-]+:\d+ .*;\n(    server [\w.-]+:\d+ .*;\n)*", servers + "\n"),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
        (r"ssl_certificate +/etc/nginx/tls/mlapi.crt;", f"ssl_certificate {certificate};"),
        (r"ssl_certificate_key /etc/nginx/tls/mlapi.key;", f"ssl_certificate_key {key};"),
    ):
        site, count = re.subn(pattern, replacement, site)
        assert count == 1, f"deploy/nginx/mlapi.conf changed shape: {pattern}"
    return site


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the test (it is also the CA to trust)."""
    certificate, key = folder / "mlapi.crt", folder / "mlapi.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    return certificate, key


class NginxServer:
    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        self.binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if self.binary is None:
            unavailable("nginx", FileNotFoundError("nginx is not installed (make test installs it)"))
        self.workdir = workdir
        self.http_port, self.port = free_port(), free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.url = f"https://127.0.0.1:{self.port}"
        self.certificate, key = make_certificate(workdir)  # clients trust it: requests' verify=
        (workdir / "site.conf").write_text(
            render_site(upstream_ports, self.http_port, self.port, self.certificate, key)
        )
        temp = workdir / "temp"
        temp.mkdir(exist_ok=True)
        (workdir / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {workdir}/site.conf;
}}
""")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> NginxServer:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.workdir / "nginx.conf"), "-p", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(100):
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stderr.close()
