"""Wires the serving core into the app: this worker's slot and device, and its loaded models."""

from __future__ import annotations

import logging

from flask import Flask, current_app

from mlapi import readiness
from mlapi.config import Settings
from mlapi.serving.devices import configure_torch_threads, device_for_slot, visible_devices, worker_slot
from mlapi.serving.registry import ModelRegistry
from mlapi.serving.store import ModelStore

logger = logging.getLogger("mlapi.runtime")


def registry() -> ModelRegistry:
    found = current_app.extensions.get("mlapi_registry")
    if found is None:
        raise RuntimeError("models are not loaded in this process")
    return found


def init_app(app: Flask, settings: Settings) -> None:
    """Load every model of the store on this worker's device (after fork, in Gunicorn workers)."""
    import torch

    slot = worker_slot()
    device = device_for_slot(visible_devices(settings.devices), slot)
    threads = configure_torch_threads(settings.torch_threads, settings.workers)
    loaded = ModelRegistry(ModelStore.open(settings.model_dir), device).load()
    app.extensions["mlapi_registry"] = loaded
    gpu_available = torch.cuda.is_available()
    logger.info("serving %s on %s (slot %s, %d torch threads)", loaded.loaded(), device, slot, threads)

    app.extensions["mlapi_runtime_status"] = lambda: {
        "gpu_available": gpu_available,
        "models_loaded": loaded.loaded(),
        "device": device,
        "worker_slot": slot,
    }
    readiness.register_check(app, "models", lambda: _check_models(loaded))


def _check_models(loaded: ModelRegistry) -> None:
    if not loaded.handlers:
        raise RuntimeError("no models loaded")
