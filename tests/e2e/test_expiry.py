"""A set whose GO never comes expires with 130 (on a gateway started with ``set_timeout=PT2S``)."""

from __future__ import annotations

from tests.e2e.conftest import Launch
from tests.e2e.harness import wait_acks
from tests.e2e.test_sets import body, pending


def test_goless_set_expires_with_130_and_its_files_are_removed(launch: Launch) -> None:
    """FI+FS without GO: after the timeout a negative ACRF 130 names the set; IN is emptied."""
    world = launch(set_timeout="PT2S")
    party = world.a
    seq = world.seq()
    names = world.write_set(party, seq=seq, contents=[body(1, seq)])
    party.sftp.ok(party.put([names.fis[0], names.fss[0]]), cwd=party.work)
    assert set(pending(party)) == {names.fis[0], names.fss[0]}
    stem = names.go.removeprefix("GO.").rsplit(".", 1)[0]

    acks = wait_acks(party.out_dir, lambda acks: any(stem in a.file_name for a in acks))
    (ack,) = [a for a in acks if stem in a.file_name]
    assert (ack.result, ack.code) == (0, 130), ack
    assert pending(party) == []
    assert not (world.routed).exists() or not any(world.routed.iterdir())
    expired = world.gateway.wait_event("set.expired", timeout=10)
    assert expired.get("sender") == party.number
