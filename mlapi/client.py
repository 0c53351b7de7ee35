"""A Python client for a remote mlapi server.

    from mlapi.client import Client
    client = Client("http://127.0.0.1:8000", api_key="mlapi_...")
    client.predict("I love it")["result"]

Retries (urllib3) back off exponentially and honour ``Retry-After`` on 429 and 503, up to
``max_wait`` seconds: a longer wait raises at once rather than blocking the caller. With a
username and password the client logs in, and refreshes (or logs in again) when its access
token expires or is revoked. Errors raise typed exceptions built from the error envelope.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


class MlapiError(Exception):
    """An error answer: the envelope's fields as attributes."""

    def __init__(self, status_code: int, body: dict[str, Any], retry_after: float | None = None) -> None:
        self.status_code = status_code
        self.body = body
        self.error = body.get("error", "error")
        self.detail = body.get("detail", "")
        self.request_id = body.get("request_id")
        self.retry_after = retry_after
        super().__init__(f"{status_code} {self.error}: {self.detail} (request {self.request_id})")


class AuthenticationError(MlapiError):
    """401 or 403."""


class NotFoundError(MlapiError):
    """404: the detail names what exists."""


class ValidationError(MlapiError):
    """400, 413, 415 or 422; ``body["errors"]`` holds the messages per field."""


class RateLimitedError(MlapiError):
    """429 that waiting ``max_wait`` would not cure."""


class UnavailableError(MlapiError):
    """503 or 504: overloaded, shutting down, a dependency down, or a deadline passed."""


class ServerError(MlapiError):
    """Any other 5xx."""


def _error_class(status: int) -> type[MlapiError]:
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitedError
    if status in (503, 504):
        return UnavailableError
    if status >= 500:
        return ServerError
    return ValidationError


class _Retry(Retry):
    """urllib3's Retry, which gives up (rather than sleeps) when Retry-After exceeds ``max_wait``."""

    max_wait: float = 30.0

    def sleep_for_retry(self, response) -> bool:  # noqa: ANN001 (urllib3's signature)
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self.max_wait:
            raise _WaitTooLong(retry_after)
        return super().sleep_for_retry(response)

    def new(self, **kwargs: Any) -> _Retry:
        retry = super().new(**kwargs)
        retry.max_wait = self.max_wait
        return retry


class _WaitTooLong(Exception):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after


class Client:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_wait: float = 30.0,
    ) -> None:
        if api_key is None and (username is None or password is None):
            raise ValueError("give an api_key, or a username and a password")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.api_key = api_key
        self.username, self.password = username, password
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        retry = _Retry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=(429, 503),
            allowed_methods=None,  # inference is safe to repeat
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        retry.max_wait = max_wait
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    # -- the API ---------------------------------------------------------------------------
    def predict(self, text: str, **options: Any) -> dict[str, Any]:
        return self._call("POST", "/v1/predict", json={"text": text, **options})

    def predict_batch(self, inputs: list[str], **options: Any) -> dict[str, Any]:
        return self._call("POST", "/v1/predict/batch", json={"inputs": inputs, **options})

    def embed(self, texts: str | list[str], model: str | None = None) -> list[list[float]]:
        body: dict[str, Any] = {"input": texts, **({"model": model} if model else {})}
        return [item["embedding"] for item in self._call("POST", "/v1/embeddings", json=body)["data"]]

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")["data"]

    def me(self) -> dict[str, Any]:
        return self._call("GET", "/v1/users/me")

    def reload_models(self) -> str:
        """Admins: every worker of the instance reads the model store again; the reload's id."""
        return self._call("POST", "/v1/admin/models/reload")["reload_id"]

    def reload_status(self, reload_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/admin/models/reload/{reload_id}")

    def health(self) -> dict[str, Any]:
        return self._send("GET", "/health", authenticate=False)

    # -- plumbing --------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self._send(method, path, **kwargs)
        except AuthenticationError as exc:
            if self.api_key is not None or exc.status_code != 401:
                raise
            self._renew_token()
            return self._send(method, path, **kwargs)

    def _send(self, method: str, path: str, authenticate: bool = True, **kwargs: Any) -> dict[str, Any]:
        headers = self._auth_headers() if authenticate else {}
        try:
            response = self.session.request(
                method, self.base_url + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.exceptions.RetryError as exc:  # retries spent on 429/503
            raise UnavailableError(503, {"error": "retries_exhausted", "detail": str(exc)}) from None
        except _WaitTooLong as exc:
            raise RateLimitedError(
                429,
                {"error": "rate_limit_exceeded", "detail": "Retry-After exceeds max_wait"},
                retry_after=exc.retry_after,
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": "error", "detail": response.text[:500]}
            retry_after = response.headers.get("Retry-After")
            raise _error_class(response.status_code)(
                response.status_code, body, float(retry_after) if retry_after and retry_after.isdigit() else None
            )
        return response.json() if response.content else {}

    def _auth_headers(self) -> dict[str, str]:
        if self.api_key is not None:
            return {"X-API-Key": self.api_key}
        if self.access_token is None:
            self._login()
        return {"Authorization": f"Bearer {self.access_token}"}

    def _login(self) -> None:
        tokens = self._send(
            "POST", "/v1/token", authenticate=False, data={"username": self.username, "password": self.password}
        )
        self.access_token, self.refresh_token = tokens["access_token"], tokens.get("refresh_token")

    def _renew_token(self) -> None:
        """A new access token from the refresh token; a new login when that fails too."""
        if self.refresh_token is not None:
            try:
                response = self.session.post(
                    f"{self.base_url}/v1/token/refresh",
                    headers={"Authorization": f"Bearer {self.refresh_token}"},
                    timeout=self.timeout,
                )
                if response.ok:
                    # Refresh tokens rotate: the one just sent is spent, and sending it again
                    # would end the login session.
                    tokens = response.json()
                    self.access_token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]
                    return
            except requests.RequestException:
                pass
        self._login()
