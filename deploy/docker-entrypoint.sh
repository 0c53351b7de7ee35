#!/bin/sh
# Migrate the database, then hand PID 1 to Gunicorn so that it receives SIGTERM directly.
set -eu
mlapi db upgrade
exec gunicorn -c /app/gunicorn.conf.py wsgi:app "$@"
