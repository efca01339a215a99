"""Where the spool keeps files under the state directory (the contract with the pipeline).

- ``spool/<sender>/<IN folder>/<name>``: committed uploads (one ``uploads`` row each);
- ``spool/.tmp/<random>``: uploads in progress, on the same filesystem so linking is atomic;
- ``out/<sender>/<OUT folder>/<name>``: return files, listed, read and deleted through OUT*.

Every path component comes from a checked value (6-digit sender, :class:`Folder`, a name that
passed ``vfs.check_name``), so no peer string reaches the filesystem unchecked.
"""

from __future__ import annotations

from pathlib import Path

from gateway.core.folders import Folder
from gateway.core.types import SenderNumber

_MAX_OUT_FOLDERS = 30_000
"""OUT folder paths :class:`SpoolLayout` keeps (three OUT folders of 10,000 senders)."""


class SpoolLayout:
    """The spool's paths under one state directory."""

    __slots__ = ("_out_folders", "out_dir", "spool_dir", "state_dir", "tmp_dir")

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.spool_dir = state_dir / "spool"
        self.tmp_dir = self.spool_dir / ".tmp"
        self.out_dir = state_dir / "out"
        # A set asks for its OUT folder about ten times (staging, each rename, each sync):
        # each a pathlib join of 2-3 us. Bounded: forgotten all at once past the cap.
        self._out_folders: dict[tuple[str, Folder], Path] = {}

    def committed(self, sender: SenderNumber, folder: Folder, name: str) -> Path:
        """The path of a committed upload."""
        return self.spool_dir / sender / folder.value / name

    def out_folder(self, sender: SenderNumber, folder: Folder) -> Path:
        """The directory of a sender's return files in one OUT folder."""
        found = self._out_folders.get((sender, folder))
        if found is None:
            if len(self._out_folders) >= _MAX_OUT_FOLDERS:
                self._out_folders.clear()
            found = self._out_folders[(sender, folder)] = self.out_dir / sender / folder.value
        return found

    def out_file(self, sender: SenderNumber, folder: Folder, name: str) -> Path:
        """The path of one return file."""
        return self.out_folder(sender, folder) / name
