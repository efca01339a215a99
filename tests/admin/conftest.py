"""The admin plane's fixtures (tests/admin/admin_env.py)."""

from tests.admin.admin_env import admin, admin_identity, admin_template

__all__ = ["admin", "admin_identity", "admin_template"]
