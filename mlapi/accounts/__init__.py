"""The accounts store: SQLAlchemy tables of users, API keys, login sessions, revoked tokens and the
audit log, and the services over them. Knows nothing of HTTP; the web layer maps its errors."""
