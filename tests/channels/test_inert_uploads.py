"""Nothing uploaded is ever executed or interpreted (SECURITY.md 3).

An upload is stored as data: the spool never puts an executable bit on a file it commits and is
never on the interpreter's import path, so a Python payload under a valid declaration name is
inert; a ``.pth``/``.py`` name is refused by the name grammar before a byte is stored.
"""

from __future__ import annotations

import stat
import sys
from datetime import date
from pathlib import Path

from tests.channels.conftest import Env, run_sftp


def _on_import_path(folder: Path) -> list[str]:
    root = folder.resolve()
    return [e for e in sys.path if e and Path(e).resolve().is_relative_to(root)]


async def test_an_upload_is_stored_inert(env: Env, tmp_path: Path) -> None:
    """A Python payload uploaded under a valid FI name over OpenSSH sftp: stored 0600 (no
    executable bit), outside every import path; an upload named like a .pth/.py is refused."""
    name = f"FI.DMFA.{env.a.number}.{date.today():%Y%m%d}.00001.R.1.1"
    (tmp_path / name).write_text("import os; os.system('touch /tmp/pwned')\n")
    (tmp_path / "evil.pth").write_text("import os\n")
    done = await run_sftp(env, f"put {name} IN/{name}\n-put evil.pth IN/evil.pth\n", cwd=tmp_path)
    stored = [p for p in (env.state_dir / "spool").rglob("*") if p.is_file()]
    assert [p.name for p in stored] == [name], done
    mode = stat.S_IMODE(stored[0].stat().st_mode)
    assert mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) == 0, oct(mode)
    assert _on_import_path(env.state_dir / "spool") == []
