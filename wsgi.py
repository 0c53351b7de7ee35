"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The models load in a thread of each worker (gunicorn.conf.py's ``post_worker_init`` waits for them):
meanwhile the worker answers ``/health``, and ``/ready`` and inference with 503.
"""

from mlapi.app import create_app

app = create_app(background_loading=True)
