"""What every request passes through, between Gunicorn and a view: request context and access log,
versioning, authentication, rate limits, the error envelope, OpenAPI, metrics, readiness, and the
runtime that holds the loaded models."""
