"""Imports every model module so that ``Base.metadata`` holds the whole schema (Alembic env).

Each package that defines tables on :class:`gateway.registry.db.Base` appends one import line.
"""

from __future__ import annotations

import gateway.pipeline.tables
import gateway.registry.consoles
import gateway.registry.lockout
import gateway.registry.models
import gateway.spool.tables  # noqa: F401
