"""Prometheus metrics, aggregated across Gunicorn workers (multiprocess mode).

The endpoint label is always the URL rule template (``/v1/models/<name>``), never the raw path,
so clients cannot blow up the number of series; unmatched paths share ``<unmatched>``.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics

from mlapi.extensions import limiter
from mlapi.serving.batcher import BatchResult
from mlapi.serving.manifest import Manifest
from mlapi.web import compat
from mlapi.web.errors import APIError
from mlapi.web.request_context import bearer_token

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
UNMATCHED = "<unmatched>"

REQUESTS = Counter("api_requests_total", "HTTP requests answered.", ["method", "endpoint", "status"])
REQUEST_LATENCY = Histogram(
    "api_request_latency_seconds", "HTTP request latency.", ["method", "endpoint"], buckets=LATENCY_BUCKETS
)
ACTIVE_REQUESTS = Gauge("api_active_requests", "Requests in progress.", multiprocess_mode="livesum")
INFERENCE_LATENCY = Histogram(
    "inference_latency_seconds", "Forward-pass time of a batch.", ["model", "model_version"], buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "inference_batch_size", "Inputs per forward pass.", ["model", "model_version"], buckets=BATCH_BUCKETS
)
QUEUE_WAIT = Histogram(
    "inference_queue_wait_seconds",
    "Time a request waited for its batch.",
    ["model", "model_version"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "inference_queue_depth", "Inputs waiting for a batch.", ["model", "model_version"], multiprocess_mode="livesum"
)
CACHE_REQUESTS = Counter("prediction_cache_requests_total", "Prediction cache look-ups.", ["result"])
RATE_LIMIT_REJECTIONS = Counter("rate_limit_rejections_total", "Requests refused with 429.", ["tier"])
AUTH_FAILURES = Counter("auth_failures_total", "Requests refused with 401.", ["reason"])
STORAGE_DEGRADED = Gauge(
    "rate_limit_storage_degraded",
    "1 while a worker counts limits in memory because Redis is unreachable.",
    multiprocess_mode="livemax",
)
# Usage: never by account (that would be a series per tenant); the usage API reports per account.
USAGE_ITEMS = Counter("mlapi_usage_items_total", "Items metered (what the quotas count).", ["tier", "model"])
MONTHLY_QUOTA_REJECTIONS = Counter(
    "mlapi_monthly_quota_rejections_total", "Requests refused for a spent monthly quota.", ["tier"]
)
ACCOUNTS_NEAR_MONTHLY_QUOTA = Gauge(
    "mlapi_accounts_near_monthly_quota",
    "Accounts whose usage this month has reached this share of their monthly quota (from the rollups).",
    ["threshold"],
    multiprocess_mode="livemostrecent",
)
MODEL_INFO = Gauge(
    "model_info",
    "Models loaded, by worker slot and device.",
    ["model", "version", "device", "worker_slot"],
    multiprocess_mode="livesum",
)


def _endpoint() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def _begin() -> None:
    g.metrics_started = time.perf_counter()
    ACTIVE_REQUESTS.inc()


def _finish(response: Response) -> Response:
    endpoint = _endpoint()
    REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
    started = g.pop("metrics_started", None)
    if started is not None:
        REQUEST_LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
        ACTIVE_REQUESTS.dec()
    STORAGE_DEGRADED.set(1 if compat.limiter_storage_is_down(limiter) else 0)
    return response


def record_batch(manifest: Manifest, result: BatchResult) -> None:
    labels = (manifest.name, manifest.version)
    INFERENCE_LATENCY.labels(*labels).observe(result.model_ms / 1000)
    BATCH_SIZE.labels(*labels).observe(result.batch_size)


def record_queue_wait(manifest: Manifest, queue_ms: float) -> None:
    QUEUE_WAIT.labels(manifest.name, manifest.version).observe(queue_ms / 1000)


def record_queue_depth(manifest: Manifest, depth: int) -> None:
    QUEUE_DEPTH.labels(manifest.name, manifest.version).set(depth)


def record_cache(hits: int, misses: int) -> None:
    if hits:
        CACHE_REQUESTS.labels("hit").inc(hits)
    if misses:
        CACHE_REQUESTS.labels("miss").inc(misses)


def record_model(manifest: Manifest, device: str, slot: int | None) -> None:
    MODEL_INFO.labels(manifest.name, manifest.version, device, "-" if slot is None else str(slot)).set(1)


def forget_model(manifest: Manifest, device: str, slot: int | None) -> None:
    """A reload dropped this version: it is no longer listed as loaded."""
    labels = (manifest.name, manifest.version, device, "-" if slot is None else str(slot))
    # In Gunicorn's multiprocess mode removing a series does nothing: 0 is what the sum then shows.
    MODEL_INFO.labels(*labels).set(0)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MODEL_INFO.remove(*labels)


def record_auth_failure(reason: str) -> None:
    AUTH_FAILURES.labels(reason).inc()


def record_rate_limit_rejection(tier: str) -> None:
    RATE_LIMIT_REJECTIONS.labels(tier).inc()


def record_usage(tier: str, model: str, items: int) -> None:
    USAGE_ITEMS.labels(tier, model).inc(items)


def record_monthly_quota_rejection(tier: str) -> None:
    MONTHLY_QUOTA_REJECTIONS.labels(tier).inc()


def record_accounts_near_monthly_quota(counts: dict[str, int]) -> None:
    for threshold, accounts in counts.items():
        ACCOUNTS_NEAR_MONTHLY_QUOTA.labels(threshold).set(accounts)


def _token_required(token: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        def protected(*args: Any, **kwargs: Any) -> Any:
            presented = bearer_token()
            if presented is None or not hmac.compare_digest(presented.encode(), token.encode()):
                raise APIError(
                    401,
                    "Send the metrics token as 'Authorization: Bearer <token>'.",
                    error="missing_credentials",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
            return view(*args, **kwargs)

        return protected

    return decorator


def init_app(app: Flask) -> None:
    settings = app.config["MLAPI_SETTINGS"]
    decorator = _token_required(settings.metrics_token) if settings.metrics_token else None
    options = {"export_defaults": False, "group_by": "url_rule", "metrics_decorator": decorator}
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics(app, **options)
    else:  # one process (development, tests): the default registry is the whole truth
        PrometheusMetrics(app, **options)
    app.before_request(_begin)
    app.after_request(_finish)
