"""Serves the Swagger UI and ReDoc assets from an installed package, never from a CDN."""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory
from openapi_ui_bundles import redoc, swagger_ui

blp = Blueprint("docs_assets", __name__, url_prefix="/v1/docs/assets")

_ONE_DAY = 24 * 3600


@blp.get("/swagger-ui/<path:filename>")
def swagger_ui_asset(filename: str) -> Response:
    return send_from_directory(swagger_ui.static_path, filename, max_age=_ONE_DAY)


@blp.get("/redoc/<path:filename>")
def redoc_asset(filename: str) -> Response:
    return send_from_directory(redoc.static_path, filename, max_age=_ONE_DAY)
