"""mlapi: a production REST API for serving PyTorch models."""

__version__ = "0.1.0"


def create_app(config=None, **kwargs):  # noqa: ANN001, ANN003, ANN201 (re-exported; typed in mlapi.app)
    from mlapi.app import create_app as _create_app

    return _create_app(config, **kwargs)
