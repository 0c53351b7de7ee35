"""Does a login for an unknown user cost the same as a wrong password? (production argon2 parameters)

    .venv/bin/python benchmarks/login_timing.py [ROUNDS]

Prints the median time of each case and its ratio to the wrong-password baseline, measured in one run.
"""

from __future__ import annotations

import statistics
import sys
import time

from sqlalchemy.orm import Session

from mlapi.accounts import user_accounts
from mlapi.accounts.database import make_engine
from mlapi.accounts.tables import Base


def median_ms(action, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main(rounds: int = 30) -> None:
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        user_accounts.create_user(session, "alice", "the right password")
        cases = {
            "wrong password": lambda: user_accounts.authenticate(session, "alice", "a wrong password"),
            "unknown user": lambda: user_accounts.authenticate(session, "mallory", "a wrong password"),
            "right password": lambda: user_accounts.authenticate(session, "alice", "the right password"),
        }
        results = {name: median_ms(action, rounds) for name, action in cases.items()}
    baseline = results["wrong password"]
    print(f"{'case':<16}{'median ms':>10}{'ratio':>8}")
    for name, value in results.items():
        print(f"{name:<16}{value:>10.1f}{value / baseline:>8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
