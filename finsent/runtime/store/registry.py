"""The model registry: every version `finsent retrain` made, and the promotions between them.

The version the scorers run is the latest promotion's; with none, the configured artifact
(the package's shipped model unless ``FINSENT_MODEL_ARTIFACT`` names one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from finsent.runtime.store.engine import as_utc, insert, upsert
from finsent.runtime.store.schema import model_promotions, model_versions

SHIPPED_PATH = "shipped"  # the path of a version that is the package's own artifact


def save_version(conn: Connection, row: Mapping[str, Any]) -> None:
    """Upsert one version (keys: the columns of ``model_versions``)."""
    upsert(conn, model_versions, [row], ["version"])


def set_status(conn: Connection, version: str, status: str, report: Mapping[str, Any]) -> None:
    conn.execute(
        update(model_versions)
        .where(model_versions.c.version == version)
        .values(status=status, report=dict(report))
    )


def versions(conn: Connection) -> list[dict[str, Any]]:
    """Every registered version, oldest first."""
    stmt = select(model_versions).order_by(model_versions.c.created_at)
    return [_utc(dict(row), "created_at") for row in conn.execute(stmt).mappings()]


def version(conn: Connection, name: str) -> dict[str, Any] | None:
    stmt = select(model_versions).where(model_versions.c.version == name)
    row = conn.execute(stmt).mappings().first()
    return _utc(dict(row), "created_at") if row else None


def promotions(conn: Connection) -> list[dict[str, Any]]:
    """Every promotion and rollback, oldest first."""
    stmt = select(model_promotions).order_by(model_promotions.c.at, model_promotions.c.id)
    return [_utc(dict(row), "at") for row in conn.execute(stmt).mappings()]


def active(conn: Connection) -> dict[str, Any] | None:
    """The latest promotion, or None when nothing was ever promoted."""
    stmt = (
        select(model_promotions)
        .order_by(model_promotions.c.at.desc(), model_promotions.c.id.desc())
        .limit(1)
    )
    row = conn.execute(stmt).mappings().first()
    return _utc(dict(row), "at") if row else None


def record_promotion(conn: Connection, row: Mapping[str, Any]) -> None:
    """Append a promotion or rollback (keys: the columns of ``model_promotions`` but ``id``)."""
    conn.execute(insert(conn, model_promotions).values(**row))


def _utc(row: dict[str, Any], column: str) -> dict[str, Any]:
    row[column] = as_utc(row[column])
    return row
