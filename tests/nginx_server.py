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


def render_site(upstream_ports: list[int], listen_port: int) -> str:
    """The deployed site file, with its upstream servers and listen address pointed at this test."""
    site = SITE.read_text()
    servers = "\n".join(f"    server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;" for port in upstream_ports)
    site, count = re.subn(r"(?m)^    server [\w.-]+:\d+ .*;\n(    server [\w.-]+:\d+ .*;\n)*", servers + "\n", site)
    assert count == 1, "the upstream block of deploy/nginx/mlapi.conf changed shape"
    site, count = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen_port};", site)
    assert count == 1
    return site


class NginxServer:
    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        self.binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if self.binary is None:
            unavailable("nginx", FileNotFoundError("nginx is not installed (make test installs it)"))
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "site.conf").write_text(render_site(upstream_ports, self.port))
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
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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
