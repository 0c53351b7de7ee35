"""Gunicorn settings, read from the ``MLAPI_*`` environment (see README, Configuration)."""

import sys

from mlapi.config import ConfigError, load_settings

try:
    # Validate every setting in the master, so that a junk value stops start-up once, clearly,
    # instead of failing in each worker.
    settings = load_settings()
except ConfigError as exc:
    print(f"mlapi: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)

bind = [settings.bind]
workers = settings.workers
threads = settings.threads
worker_class = "gthread"
# Models and CUDA must be initialised in each worker, after fork, never in the master.
preload_app = False
timeout = 60
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then to bound slow leaks; jitter avoids restarting them all at once.
max_requests = 20000
max_requests_jitter = 2000
# One fixed control-socket path would collide between instances on one host; it is not used.
control_socket_disable = True
# The app writes one JSON access-log line per request itself (mlapi.request_context).
accesslog = None
errorlog = "-"
loglevel = settings.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "mlapi.logs.json_formatter"}},
    "handlers": {
        "json_stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    },
    # Gunicorn merges this shallowly over its defaults: name every logger it configures.
    "root": {"level": "WARNING", "handlers": ["json_stdout"]},
    "loggers": {
        "gunicorn.error": {"level": settings.log_level, "handlers": ["json_stdout"], "propagate": False},
        # With a logconfig_dict Gunicorn writes access lines too; the app's own are richer: drop these.
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
}
