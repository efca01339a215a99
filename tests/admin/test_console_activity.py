"""The registry's ``activity``, read by the console's Activity screen: one enterprise's records
only, filtered and paged."""

from __future__ import annotations

from tests.admin.admin_env import AdminEnv
from tests.pipeline.provision import ok


async def test_activity_is_the_enterprises_own_trail(admin: AdminEnv) -> None:
    """htb0 sees enterprise 0's records (its own and those about its accounts), none of
    enterprise 1's; the filters and the pages narrow it; a technical user may not read it."""
    first, second = admin.senders
    entries, more = ok(await admin.registry.activity(actor=first.htb, limit=100))
    assert not more
    targets = {e.target for e in entries}
    assert first.quality.enterprise in targets
    assert str(first.quality) in targets
    assert all(str(second.quality.enterprise) not in t for t in targets)
    assert all(e.actor != second.htb and e.target != second.htb for e in entries)
    assert {e.target for e in entries if e.action == "user.change_password"} == {first.htb}
    registry = admin.registry
    mine, _ = ok(await registry.activity(actor=first.htb, who=first.htb, action="structured."))
    assert mine
    assert all(e.actor == first.htb and e.action.startswith("structured.") for e in mine)
    page, more = ok(await admin.registry.activity(actor=first.htb, limit=2))
    assert len(page) == 2
    assert more
    after, _ = ok(await admin.registry.activity(actor=first.htb, limit=2, offset=2))
    assert [e.seq for e in after] < [e.seq for e in page]
    refused = await admin.registry.activity(actor=first.login)
    assert not isinstance(refused, tuple)
