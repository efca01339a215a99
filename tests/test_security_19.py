"""SECURITY.md 19: every weakness issue 15 fixed has its exploit as a regression test, and 3-5
mutated variants of it. This module is the index: for each of the issue's ten weaknesses, the
test that reproduces the exploit (``exploit``) and the tests of its variants (``variants``), as
``path::function`` (``[n]``: one test holding n variants as subtests), in :data:`INDEX`; what
each weakness's variants vary is listed here. The tests below keep the index true: every named
test exists, and every weakness has at least three variants.

Timings (issue 15's Done-when figures: under 50 ms for a 20-CA flood, a key login under 100 ms
with ten guessing connections, 100 ms for a billion-laughs ACRF) are measured by bench/chains.py,
bench/login_flood.py and bench/e2e.py, never asserted in a test; the tests count work instead
(signature checks, password checks, lines, bytes).

1. Chain flood: one small FS holds a worker (``core/trust.py``). Variants: copies of one CA k = 8,
    12, 16 and 20 with distinct serials; a key ladder (every issuer found last) of 12 and 16,
    shuffled (3 seeds), of mixed key types (Ed25519, P-384, RSA-2048); more than MAX_CARRIED
    certificates; the real CA hidden first, middle or last among impostors and a flood.
2. Quota checked against a snapshot at open. Variants: many sessions / many files in one session /
    sessions x files; one file bigger than the quota; writes out of order (gap, overlap, rewind,
    1 TiB out); a parked temporary upload; two nodes on one PostgreSQL database.
3. A full disk fails quietly. Variants: ENOSPC, EDQUOT (929) and EIO, EROFS, EFBIG (999 + ticket),
    written at close or streamed; the floor over SFTP, FTPS and HTTPS; the database failing at
    commit over SFTP, FTPS and HTTPS; SQLite's own "full"; a set meeting ENOSPC, and a set whose
    claim cannot be handed back (set.held); a read at offset 2^63, writes at 2^63 and 2^64-1,
    eleven odd SFTP requests (NUL, long and deep paths, '..', links, statvfs...), sixteen odd
    FTP commands.
4. Password guessing unlimited within one connection. Variants: FTP: USER switching, six guesses
    pipelined in one write (one login, or login, sender number and upper case); the lock across
    SFTP, FTP and the console; the login's case, padding and sender number; Unicode lookalikes;
    a full password pool.
5. The audit chain can be cut or rewritten. Variants: a middle record deleted and renumbered,
    deleted leaving a gap, two records swapped, an anchor's hash edited, the anchors re-signed
    by another key, a forged line (subtests of test_anchor_attack_variants).
6. One bad client behind a balancer locks every sender out. Variants: v1 text (TCP4, TCP6), v2
    truncated in its prefix or addresses, a family length too short (IPv4, IPv6), a length past
    the bound, an unknown family, UDP and UNSPEC (no client), on SFTP and FTP; a good header
    (alone, followed by SSH, or nothing) from a non-balancer; the parser under hypothesis.
7. Certificates that will be refused are registered anyway. Variants: RSA-1024, P-192, untrusted
    and expired signing certificates as DER, PEM with CRLF, PEM behind openssl's Bag Attributes,
    PEM with the CA first; weak or expired client certificates.
8. Refused connections flood the log. Variants: one IPv4 address, rotating through its /24,
    IPv4-mapped and plain alternating, rotating through an IPv6 /64 (over two channels and
    reasons); a flood over five windows; a bounded table of sources.
9. Channels per connection are unbounded. Variants: ten sessions at once; thirty opened and closed
    in a loop; channels for a command, a shell, another subsystem, a TCP and a UNIX-socket
    forward.
10. Declarations are never looked at. Variants: a quadratic blow-up, an external entity to file://,
    external and internal parameter entities, a DTD in UTF-16; UTF-16 (with and without BOM) or
    Latin-1 declared UTF-8, overlong UTF-8, a surrogate; encodings Python reads but that are no
    text encoding (zlib, base64, rot13, UTF-16 without BOM...); an XInclude; deep nesting
    (past MAX_DEPTH = 256 levels refused with 135, with or without an XSD, in flat memory).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

INDEX: dict[str, dict[str, tuple[str, ...]]] = {
    "1 chain flood": {
        "exploit": (
            "tests/core/test_chain_bounds.py::test_twelve_self_issued_cas_in_an_fs_answer_905_within_the_cap",
        ),
        "variants": (
            "tests/core/test_chain_bounds.py::test_self_issued_copies_are_one_candidate",
            "tests/core/test_chain_bounds.py::test_twenty_self_issued_cas_with_different_serials_are_one_candidate",
            "tests/core/test_chain_bounds.py::test_a_key_ladder_stops_at_the_check_limit",
            "tests/core/test_chain_bounds.py::test_a_shuffled_key_ladder_stays_within_the_check_limit",
            "tests/core/test_chain_bounds.py::test_a_flood_of_mixed_key_types_stays_within_the_check_limit",
            "tests/core/test_chain_bounds.py::test_certificates_beyond_the_carried_cap_are_not_read",
            "tests/core/test_chain_bounds.py::test_a_real_chain_is_found_behind_impostors",
            "tests/core/test_chain_bounds.py::test_a_real_chain_is_found_hidden_in_a_flood",
        ),
    },
    "2 quota": {
        "exploit": (
            "tests/channels/test_space_quota.py::test_concurrent_uploads_never_commit_past_the_quota",
        ),
        "variants": (
            "tests/spool/test_quota_variants.py::test_concurrent_uploads_never_commit_past_the_quota",
            "tests/spool/test_quota_variants.py::test_one_file_bigger_than_the_quota_stops_at_the_write_that_passes_it",
            "tests/spool/test_quota_variants.py::test_a_write_out_of_order_is_refused_and_reserves_nothing",
            "tests/channels/test_space_quota.py::test_a_parked_upload_holds_its_quota_until_it_is_dropped",
            "tests/channels/test_space_quota.py::test_open_uploads_per_session_are_capped",
            "tests/channels/test_quota_two_nodes.py::test_two_nodes_never_commit_past_one_senders_quota",
        ),
    },
    "3 full disk": {
        "exploit": (
            "tests/e2e/test_full_disk.py::test_a_full_spool_refuses_with_929_stays_up_and_acknowledges_the_set_once_freed",
        ),
        "variants": (
            "tests/channels/test_space_quota.py::test_a_write_fault_is_answered_by_its_kind_never_by_its_text",
            "tests/channels/test_space_quota.py::test_a_full_disk_while_writing_gets_929_not_its_error_text",
            "tests/channels/test_space_quota.py::test_below_the_free_space_floor_new_uploads_get_929",
            "tests/channels/test_space_quota.py::test_a_database_failure_at_commit_is_999_with_a_logged_ticket",
            "tests/channels/test_space_quota.py::test_web_answers_929_and_999_with_a_ticket",
            "tests/channels/test_space_quota.py::test_ftps_answers_452_929_below_the_floor",
            "tests/channels/test_space_quota.py::test_ftps_answers_451_999_with_a_logged_ticket_when_the_commit_fails",
            "tests/channels/test_space_quota.py::test_a_read_at_offset_2_63_is_a_clean_end_of_file",
            "tests/channels/test_space_quota.py::test_writes_at_offsets_past_any_file_are_refused_with_a_code",
            "tests/channels/test_space_quota.py::test_odd_requests_are_answered_with_a_code_never_python_text[11]",
            "tests/channels/test_ftp.py::test_odd_commands_get_their_reply_never_python_text",
            "tests/ops/test_faults.py::test_sqlites_own_full_error_is_short_of_space",
            "tests/pipeline/test_local_faults.py::test_a_set_that_meets_a_full_disk_is_retried_and_acknowledged",
            "tests/pipeline/test_local_faults.py::test_a_set_whose_claim_cannot_be_handed_back_is_held_then_acknowledged_once",
        ),
    },
    "4 password guessing": {
        "exploit": (
            "tests/channels/test_password_guessing.py::test_openssh_gets_three_passwords_per_connection_each_charged_at_once",
        ),
        "variants": (
            "tests/channels/test_password_guessing.py::test_failed_passwords_are_charged_while_the_connection_is_open",
            "tests/channels/test_password_guessing.py::test_sftp_and_ftp_guesses_lock_one_account_until_the_operator_unblocks_it",
            "tests/channels/test_ftp.py::test_login_failures_are_530_and_capped",
            "tests/channels/test_ftp.py::test_pipelined_guesses_stop_at_the_third",
            "tests/registry/test_lockout.py::test_guesses_under_other_spellings_count_against_one_account",
            "tests/registry/test_lockout.py::test_lookalike_logins_are_never_the_account",
            "tests/registry/test_lockout.py::test_console_guesses_under_other_spellings_lock_the_one_person",
            "tests/registry/test_lockout.py::test_the_console_lock_is_the_registrys_and_holds_across_a_restart",
            "tests/registry/test_lockout.py::test_a_full_password_pool_refuses_at_once_and_key_logins_go_on",
            "tests/admin/test_lockout_console.py::test_a_locked_console_account_is_unlocked_by_the_operators_unblock",
        ),
    },
    "5 audit anchors": {
        "exploit": (
            "tests/registry/test_anchors.py::test_anchors_catch_a_truncated_chain",
            "tests/registry/test_anchors.py::test_anchors_catch_a_rewritten_chain",
        ),
        "variants": (
            "tests/registry/test_anchors.py::test_anchor_attack_variants[5]",
            "tests/registry/test_anchors.py::test_a_forged_anchor_is_reported",
        ),
    },
    "6 PROXY protocol": {
        "exploit": (
            "tests/channels/test_proxy_protocol.py::test_sftp_penalty_is_charged_to_the_proxied_network",
        ),
        "variants": (
            "tests/channels/test_proxy_protocol.py::test_sftp_malformed_headers_are_refused_with_their_reason",
            "tests/channels/test_proxy_protocol.py::test_ftp_malformed_headers_are_refused_with_their_reason",
            "tests/channels/test_proxy_protocol.py::test_a_good_header_from_a_non_balancer_is_refused_unread",
            "tests/channels/test_proxy_protocol.py::test_sftp_header_from_elsewhere_is_refused",
            "tests/channels/test_proxy_protocol.py::test_ftp_without_header_is_refused",
            "tests/core/test_proxy.py::test_parser_never_raises",
        ),
    },
    "7 registration refusals": {
        "exploit": (
            "tests/registry/test_certificate_judgement.py::test_signing_certificates_verification_would_refuse_are_refused",
        ),
        "variants": (
            "tests/registry/test_certificate_judgement.py::test_a_refused_certificate_is_refused_in_every_form",
            "tests/registry/test_certificate_judgement.py::test_weak_or_expired_client_certificates_are_refused",
            "tests/registry/test_certificate_judgement.py::test_a_good_signing_certificate_is_registered_without_warning",
        ),
    },
    "8 refused-connection log": {
        "exploit": (
            "tests/channels/test_password_guessing.py::test_a_refused_flood_writes_a_few_lines_and_a_summary_while_metrics_count_all",
        ),
        "variants": (
            "tests/channels/test_refusals.py::test_a_flood_from_one_network_writes_a_few_lines_whatever_its_addresses",
            "tests/channels/test_refusals.py::test_a_flood_across_windows_writes_a_few_lines_per_window",
            "tests/channels/test_refusals.py::test_the_table_of_sources_is_bounded",
        ),
    },
    "9 channels per connection": {
        "exploit": (
            "tests/channels/test_password_guessing.py::test_session_channels_per_connection_are_capped",
        ),
        "variants": (
            "tests/channels/test_session_channels.py::test_sessions_opened_at_once_stop_at_the_cap",
            "tests/channels/test_session_channels.py::test_sessions_opened_and_closed_in_a_loop_never_run_out",
            "tests/channels/test_session_channels.py::test_channels_for_anything_but_sftp_hold_no_slot",
        ),
    },
    "10 declarations": {
        "exploit": (
            "tests/pipeline/test_formal_checks.py::test_billion_laughs_gets_a_negative_acrf_with_135",
            "tests/core/test_declaration.py::test_billion_laughs_is_refused_at_its_dtd_before_any_entity",
        ),
        "variants": (
            "tests/core/test_declaration.py::test_every_entity_trick_is_refused_at_its_dtd",
            "tests/core/test_declaration.py::test_bytes_not_in_their_declared_encoding_are_136",
            "tests/core/test_declaration.py::test_a_declared_encoding_python_cannot_read_as_text_is_136",
            "tests/core/test_declaration.py::test_xinclude_is_not_followed",
            "tests/core/test_declaration.py::test_deep_nesting_is_refused_by_a_schema_early",
            "tests/core/test_declaration.py::test_deep_nesting_keeps_memory_flat",
            "tests/pipeline/test_formal_checks.py::test_each_fault_gets_its_code_in_the_acrf",
        ),
    },
}
"""Weakness (issue 15's number) -> the exploit's test(s) and the variants' tests."""


@cache
def _tests_in(path: str) -> frozenset[str]:
    """The test functions a file defines (read with ``ast``: nothing is imported)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    )


@pytest.mark.parametrize("weakness", list(INDEX))
def test_the_index_names_tests_that_exist(weakness: str) -> None:
    """Every test the index names for ``weakness`` is defined where it says, and the weakness
    has its exploit and at least three variants."""
    entry = INDEX[weakness]
    assert entry["exploit"]
    variants = 0
    for named in (*entry["exploit"], *entry["variants"]):
        path, _, function = named.partition("::")
        function, _, count = function.partition("[")
        assert function in _tests_in(path), named
        variants += int(count.rstrip("]") or 1) if named in entry["variants"] else 0
    assert variants >= 3


def test_the_index_covers_the_ten_weaknesses() -> None:
    """Issue 15 lists ten weaknesses; the index has one entry for each, in order."""
    assert [int(key.split(" ", 1)[0]) for key in INDEX] == list(range(1, 11))
