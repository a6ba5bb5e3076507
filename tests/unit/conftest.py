"""Unit tests use no database and start no process: such a test belongs in engine/ or
integration/. A unit test that asks for the database fails at collection."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_setup", "live_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in Path(item.path).resolve().parents:
            continue
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker(
            "django_db"
        ):
            raise pytest.UsageError(
                f"{item.nodeid} uses the database: move it to tests/engine or tests/integration"
            )
