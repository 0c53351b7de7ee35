"""Which device a worker runs on: ``devices[slot % len(devices)]``.

Only called in workers, after fork: CUDA must never be initialised in the Gunicorn master.
"""

from __future__ import annotations

import os


def visible_devices(setting: tuple[str, ...]) -> list[str]:
    """``auto``: every visible CUDA device, else the CPU; otherwise the configured list."""
    if setting != ("auto",):
        return list(setting)
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{index}" for index in range(count)] or ["cpu"]


def device_for_slot(devices: list[str], slot: int | None) -> str:
    return devices[(slot or 0) % len(devices)]


def worker_slot() -> int | None:
    """The slot Gunicorn's ``pre_fork`` hook gave this worker (None outside Gunicorn)."""
    value = os.environ.get("MLAPI_WORKER_SLOT")
    return int(value) if value is not None and value.isdigit() else None


def configure_torch_threads(threads: int | None, workers: int) -> int:
    """Intra-op threads per worker: the cores shared out among workers unless configured."""
    import torch

    count = threads or max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(count)
    return count
