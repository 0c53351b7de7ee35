"""Tell the outside world when a commit changed what authentication reads of users or API keys.

Whoever caches credentials (the web layer, mlapi.web.credential_cache) must drop them when a key is
revoked or a user's tier, admin role or disabled flag changes, in any process. The store only
notices such commits; what to do about them is the listener's business.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from mlapi.accounts.tables import ApiKey, User

_CHANGED = "mlapi_credentials_changed"


def watch_credentials(factory: sessionmaker, on_change: Callable[[], None]) -> None:
    """Call ``on_change`` after each commit of a session from ``factory`` that changed a user or key.

    New users and keys do not count (nothing can have cached them); ``last_used_at``, written with
    a Core UPDATE, never reaches the ORM's change tracking.
    """

    def note_changes(session: Session, _context: object, _instances: object) -> None:
        touched = [obj for obj in (*session.dirty, *session.deleted) if isinstance(obj, (User, ApiKey))]
        if any(obj in session.deleted or session.is_modified(obj, include_collections=False) for obj in touched):
            session.info[_CHANGED] = True

    def announce(session: Session) -> None:
        if session.info.pop(_CHANGED, False):
            on_change()

    def forget(session: Session, _previous: object) -> None:
        session.info.pop(_CHANGED, None)

    event.listen(factory, "before_flush", note_changes)
    event.listen(factory, "after_commit", announce)
    event.listen(factory, "after_soft_rollback", forget)
