"""Write operations of the SQLite tests: module-level functions, so that they can be sent to
the writer process (``kurir.server.storage.sqlite_writer``), which imports this module by name.
"""

from __future__ import annotations

import sqlite3

from kurir.server.storage.errors import MailboxFull
from kurir.server.types import DeviceRef


def insert(conn: sqlite3.Connection, account_id: str) -> str:
    """Insert an account row keyed ``account_id``."""
    conn.execute(
        "INSERT INTO accounts (account_id, app, identifier, created_at) VALUES (?, 'x', ?, 1)",
        (account_id, account_id),
    )
    return account_id


def insert_then_fail(conn: sqlite3.Connection, account_id: str) -> str:
    """Insert, then raise: the row must not survive."""
    insert(conn, account_id)
    raise ValueError("refused")


def insert_again(conn: sqlite3.Connection, account_id: str) -> str:
    """Insert; fails if a refused operation's row of the same key were still there."""
    return insert(conn, account_id) + "-again"


def rename_a(conn: sqlite3.Connection, _: str) -> str:
    """Update account ``a``: says whether it saw the row."""
    changed = conn.execute("UPDATE accounts SET identifier = 'A' WHERE account_id = 'a'")
    return f"updated {changed.rowcount}"


def accounts(conn: sqlite3.Connection) -> list[str]:
    """Every account key, sorted (a read)."""
    return [r[0] for r in conn.execute("SELECT account_id FROM accounts ORDER BY account_id")]


def hold(conn: sqlite3.Connection, fifo: str) -> str:
    """Hold the writer until the test opens the FIFO ``fifo`` for writing and closes it."""
    with open(fifo, "rb") as gate:
        gate.read()
    return "held"


def refuse_full(conn: sqlite3.Connection, devices: list[DeviceRef]) -> None:
    """Raise :class:`MailboxFull` for ``devices``, as an enqueue does."""
    raise MailboxFull(devices)


class TwoArgumentError(Exception):
    """An exception whose ``__init__`` does not take its ``args`` back: not picklable."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")


def raise_two_argument(conn: sqlite3.Connection) -> None:
    """Raise an exception that cannot cross back as itself."""
    raise TwoArgumentError(7, "odd")


def unpicklable_result(conn: sqlite3.Connection) -> object:
    """Return a value pickle refuses."""
    return lambda: None


def echo(conn: sqlite3.Connection, /, *values: object, **named: object) -> tuple[object, ...]:
    """Send back what crossed to the writer (and its types, as the writer saw them)."""
    del conn
    return (values, named, [type(v).__name__ for v in values])
