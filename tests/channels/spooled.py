"""What the spool holds after a test, read the same way by every channel's tests: the
``uploads`` and ``upload_refusals`` rows, and the committed files on disk."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from gateway.spool import Spool
from gateway.spool.tables import UploadRefusalRow, UploadRow


async def upload_rows(spool: Spool) -> list[tuple[str, str, str, int, str]]:
    """Rows of ``uploads``: (sender, folder, name, size, sha256), in insertion order."""
    async with spool._engine.connect() as conn:
        rows = (await conn.execute(select(UploadRow).order_by(UploadRow.id))).all()
    return [(r.sender, r.folder, r.name, r.size, r.sha256) for r in rows]


async def refusal_rows(spool: Spool) -> list[tuple[str, str, int]]:
    """Rows of ``upload_refusals``: (folder, name, code), in insertion order."""
    async with spool._engine.connect() as conn:
        rows = (await conn.execute(select(UploadRefusalRow).order_by(UploadRefusalRow.id))).all()
    return [(r.folder, r.name, r.code) for r in rows]


def committed_files(state_dir: Path) -> list[str]:
    """Every committed file under the spool (``sender/FOLDER/name``), temp area excluded."""
    root = state_dir / "spool"
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts
    )
