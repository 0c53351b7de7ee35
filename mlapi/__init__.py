"""mlapi: a production REST API for serving PyTorch models.

The layers, each importable without the ones above it: ``serving`` (the model core, no Flask),
``accounts`` (the SQL store of users, keys, sessions and audit, no HTTP), ``web`` (what every
request passes through), ``api`` (the /v1 and /v2 endpoints), ``server`` (Gunicorn) and ``cli``
(the ``mlapi`` command). ``mlapi.app.create_app`` wires them; docs/architecture.md walks a request.
"""

__version__ = "0.1.0"
