"""Publishing a staged return set is idempotent: a repeated rename (after a crash between the
rename and its commit) is skipped, and a set neither staged nor placed is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.pipeline.acks import ReturnNames, publish_return_go, publish_return_parts
from gateway.spool.layout import SpoolLayout

SENDER = SenderNumber("006400")
NAMES = ReturnNames(
    main="FO.ACRF.999999.20261206.00001.R",
    fs="FS.ACRF.999999.20261206.00001.R",
    go="GO.ACRF.999999.20261206.00001.R",
)


def _staged(layout: SpoolLayout) -> Path:
    out = layout.out_folder(SENDER, Folder.OUT)
    out.mkdir(parents=True)
    for name, data in ((NAMES.main, b"acrf"), (NAMES.fs, b"sig"), (NAMES.go, b"")):
        (out / f".{name}.tmp").write_bytes(data)
    return out


def test_parts_and_go_are_renamed_into_place_once_and_a_repeat_is_skipped(tmp_path: Path) -> None:
    layout = SpoolLayout(tmp_path)
    out = _staged(layout)
    for _ in range(2):
        publish_return_parts(layout, sender=SENDER, folder=Folder.OUT, names=NAMES)
        publish_return_go(layout, sender=SENDER, folder=Folder.OUT, names=NAMES)
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES.all())
    assert (out / NAMES.main).read_bytes() == b"acrf"
    assert (out / NAMES.fs).read_bytes() == b"sig"


def test_a_return_set_neither_staged_nor_placed_is_an_error(tmp_path: Path) -> None:
    layout = SpoolLayout(tmp_path)
    layout.out_folder(SENDER, Folder.OUT).mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        publish_return_go(layout, sender=SENDER, folder=Folder.OUT, names=NAMES)


def test_a_newer_staged_file_replaces_the_placed_one(tmp_path: Path) -> None:
    """A staged file is renamed even over a placed one (a step repeated with new content)."""
    layout = SpoolLayout(tmp_path)
    out = _staged(layout)
    (out / NAMES.main).write_bytes(b"older")
    publish_return_parts(layout, sender=SENDER, folder=Folder.OUT, names=NAMES)
    assert (out / NAMES.main).read_bytes() == b"acrf"
    assert not (out / f".{NAMES.main}.tmp").exists()


def test_out_folder_paths_are_kept_and_forgotten_past_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.spool.layout._MAX_OUT_FOLDERS", 2)
    layout = SpoolLayout(tmp_path)
    first = layout.out_folder(SENDER, Folder.OUT)
    assert layout.out_folder(SENDER, Folder.OUT) is first
    assert first == tmp_path / "out" / SENDER / "OUT"
    layout.out_folder(SENDER, Folder.OUTTEST)
    # Past the cap: the others are forgotten.
    third = layout.out_folder(SenderNumber("006401"), Folder.OUT)
    assert third == tmp_path / "out" / "006401" / "OUT"
    again = layout.out_folder(SENDER, Folder.OUT)
    assert again == first
    assert again is not first
