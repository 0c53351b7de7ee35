"""The store: SQLAlchemy models and the services over them. Knows nothing of HTTP."""
