"""``kurir migrate`` on SQLite, run in-process through the command's entry point (the
PostgreSQL side runs as a real process in tests/e2e/postgres/test_node_on_postgres.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kurir.cli.main import main
from kurir.server.storage.sqlite_db import load_migrations


@pytest.fixture(autouse=True)
def _no_database_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KURIR_DATABASE", raising=False)


def test_status_apply_and_nothing_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known = len(load_migrations())
    db = tmp_path / "kurir.db"
    assert main(["migrate", "--data-dir", str(tmp_path), "--status"]) == 0
    assert capsys.readouterr().out == f"sqlite {db}: schema 0 of {known} ({known} pending)\n"
    assert not db.exists()  # --status changes nothing
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    applied = ", ".join(str(v) for v in range(1, known + 1))
    assert capsys.readouterr().out == f"sqlite {db}: applied {applied}; schema {known} of {known}\n"
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"sqlite {db}: schema {known} of {known}, nothing to apply\n"
    conn = sqlite3.connect(db)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    conn.close()
    assert versions == list(range(1, known + 1))


def test_refuses_a_newer_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    known = len(load_migrations())
    conn = sqlite3.connect(tmp_path / "kurir.db")
    with conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (known + 1,))
    conn.close()
    capsys.readouterr()
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"kurir migrate: database schema {known + 1} is newer than this kurir ({known})\n"


def test_refuses_a_database_url_that_is_not_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--database", "mysql://x/y"]) == 2
    assert "--database must be a postgresql:// URL" in capsys.readouterr().err
