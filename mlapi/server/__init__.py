"""Gunicorn: the worker class that spreads connections evenly (gunicorn.conf.py holds the hooks)."""
