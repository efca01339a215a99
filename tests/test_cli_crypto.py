"""`gateway sign` and `gateway verify`, compared case by case with `openssl cms -verify`."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.crypto import fs_path_for
from gateway.cli.main import main
from tests.pki import SignatureCase, StandardPki, signature_cases, standard_pki
from tests.tools import require_tool

# Case names, fixed here so each gets its own test id (tests/pki.py builds the files).
CASE_NAMES = [
    *(
        f"{kind}/{style}"
        for kind in ("rsa2048-sha256-attrs", "rsa2048-sha256-noattr", "rsa-pss", "ecdsa-p256")
        for style in ("one-line", "76-cr", "64-crlf")
    ),
    "flipped-byte-in-FI",
    "flipped-byte-in-FI-noattr",
    "signature-of-another-file",
    "another-senders-certificate",
    "unregistered-certificate",
    "expired",
    "not-yet-valid",
    "revoked",
    "untrusted-ca",
    "md5",
    "sha1-not-allowed",
    "sha1-allowed",
    "rsa1024",
    "attached-other-content",
    "attached-same-content",
    "two-signers-one-unregistered",
    "two-signers-both-registered",
    "wrong-econtent-type",
    "empty-fs",
    "whitespace-only-fs",
    "garbage-base64",
    "truncated-der",
]


@pytest.fixture(scope="session")
def cast(tmp_path_factory: pytest.TempPathFactory) -> StandardPki:
    """The standard test PKI, built once per session with the real openssl."""
    require_tool("openssl")
    return standard_pki(tmp_path_factory.getbasetemp() / "signature-pki")


@pytest.fixture(scope="session")
def cases(cast: StandardPki) -> dict[str, SignatureCase]:
    """The openssl-made cases by name."""
    return {case.name: case for case in signature_cases(cast)}


def _gateway_verify(
    case: SignatureCase, cast: StandardPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, object]]:
    fs = tmp_path / "FS"
    fs.write_bytes(case.fs)
    argv = ["verify", str(case.fi), str(fs), "--trust", str(cast.trust_dir), "--json"]
    argv += ["--crl", str(cast.crl_dir), "--require-crl"]
    for identity in case.registered:
        argv += ["--cert", str(identity.cert)]
    if case.allow_sha1:
        argv.append("--allow-sha1")
    capsys.readouterr()
    status = main(argv)
    return status, json.loads(capsys.readouterr().out)


def test_case_list_is_complete(cases: dict[str, SignatureCase]) -> None:
    """Every case tests/pki.py builds is compared below, and no other."""
    assert sorted(CASE_NAMES) == sorted(cases)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_gateway_verify_agrees_with_openssl(
    name: str,
    cases: dict[str, SignatureCase],
    cast: StandardPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`gateway verify` and `openssl cms -verify` with equivalent flags give the same verdict.

    Equivalents: registered certs = ``-certfile … -nointern``; trust folder = ``-CAfile``;
    CRL folder + ``--require-crl`` = CRLs + ``-crl_check``; RSA >= 2048 = ``-auth_level 2``.
    Where no openssl flag expresses a rule of the protocol, the case names the divergence and
    the test pins it (openssl accepts, the gateway refuses).
    """
    case = cases[name]
    status, verdict = _gateway_verify(case, cast, tmp_path, capsys)
    accepted, err = cast.pki.openssl_verify(
        case.fi,
        case.der,
        trusted=[cast.root],
        registered=case.registered,
        crls=[cast.crl],
        extra=["-auth_level", "2"],
    )
    assert (status, verdict["code"]) == ((0, 0) if case.code is None else (1, case.code))
    gateway_accepts = status == 0
    if case.divergence:
        assert (gateway_accepts, accepted) == (False, True), case.divergence
    else:
        assert gateway_accepts == accepted, err


def test_verify_default_fs_name_and_text_output(
    cases: dict[str, SignatureCase],
    cast: StandardPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without FS, `verify` reads FS.<rest> next to FI.<rest> and prints `valid: 0: ...`."""
    case = cases["rsa2048-sha256-attrs/76-cr"]
    fi = tmp_path / case.fi.name
    fi.write_bytes(case.fi.read_bytes())
    fs_path_for(fi).write_bytes(case.fs)
    status = main(["verify", str(fi), "--cert", str(cast.rsa.cert), "--trust", str(cast.trust_dir)])
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("valid: 0: signed by O=Batch Gateway Tests,CN=sender 006400 rsa")


def test_verify_missing_fs_is_912(
    cases: dict[str, SignatureCase],
    cast: StandardPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An FI without its FS is refused with 912 (exit 1)."""
    fi = tmp_path / "FI.DMFA.006400.20260115.00001.R.1.1"
    fi.write_bytes(b"x")
    status = main(["verify", str(fi), "--cert", str(cast.rsa.cert), "--trust", str(cast.trust_dir)])
    assert status == 1
    assert capsys.readouterr().out.startswith("refused: 912: ")


def test_verify_at_a_time(
    cases: dict[str, SignatureCase],
    cast: StandardPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--at` moves verification time: the expired certificate was valid two years ago."""
    case = cases["expired"]
    fs = tmp_path / "FS"
    fs.write_bytes(case.fs)
    base = ["verify", str(case.fi), str(fs), "--cert", str(cast.expired.cert)]
    base += ["--trust", str(cast.trust_dir)]
    assert main([*base, "--at", "2000-01-01T00:00:00"]) == 1
    assert "903" in capsys.readouterr().out
    assert main(base) == 1
    assert "902" in capsys.readouterr().out


@pytest.mark.parametrize(
    "problem",
    ["missing-fi", "bad-time", "empty-trust", "no-cert-in-file", "missing-cert", "trust-not-dir"],
)
def test_verify_usage_errors_exit_2(
    problem: str,
    cases: dict[str, SignatureCase],
    cast: StandardPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Missing files, an empty trust folder or a bad --at are usage errors (exit 2)."""
    case = cases["rsa2048-sha256-attrs/76-cr"]
    fs = tmp_path / "FS"
    fs.write_bytes(case.fs)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notcert.pem").write_bytes(b"hello")
    fi, cert, trust, extra = str(case.fi), str(cast.rsa.cert), str(cast.trust_dir), []
    if problem == "missing-fi":
        fi = str(tmp_path / "nope")
    elif problem == "bad-time":
        extra = ["--at", "yesterday"]
    elif problem == "empty-trust":
        trust = str(tmp_path / "empty")
    elif problem == "no-cert-in-file":
        cert = str(tmp_path / "notcert.pem")
    elif problem == "missing-cert":
        cert = str(tmp_path / "nope.pem")
    else:
        trust = str(fs)
    status = main(["verify", fi, str(fs), "--cert", cert, "--trust", trust, *extra])
    assert status == 2
    assert capsys.readouterr().err.startswith("gateway verify: ")


def test_verify_sha1_prints_a_deprecation_warning(
    cases: dict[str, SignatureCase],
    cast: StandardPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An accepted SHA-1 signature says SHA-1 is deprecated."""
    case = cases["sha1-allowed"]
    fs = tmp_path / "FS"
    fs.write_bytes(case.fs)
    argv = ["verify", str(case.fi), str(fs), "--cert", str(cast.rsa.cert)]
    assert main([*argv, "--trust", str(cast.trust_dir), "--allow-sha1"]) == 0
    assert "warning: SHA-1 is deprecated" in capsys.readouterr().out


@pytest.mark.parametrize("style", ["76-cr", "one-line", "64-crlf"])
def test_sign_then_openssl_and_gateway_verify(
    style: str, cast: StandardPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gateway sign` writes FS.<rest> in the chosen layout; openssl and `verify` accept it."""
    fi = tmp_path / "FI.DMFA.006400.20260115.00001.R.1.1"
    fi.write_bytes(b"<declaration/>" * 300)
    chain = cast.pki.bundle([cast.ec, cast.sub], tmp_path / "chain.pem")
    assert (
        main(["sign", str(fi), "--key", str(cast.ec.key), "--cert", str(chain), "--style", style])
        == 0
    )
    fs = tmp_path / "FS.DMFA.006400.20260115.00001.R.1.1"
    text = fs.read_bytes()
    if style == "76-cr":
        assert len(text.split(b"\r")[0]) == 76
        assert b"\n" not in text
    elif style == "64-crlf":
        assert len(text.split(b"\r\n")[0]) == 64
    else:
        assert b"\r" not in text
        assert b"\n" not in text
    accepted, err = cast.pki.openssl_verify(
        fi, base64.b64decode(b"".join(text.split())), trusted=[cast.root]
    )
    assert accepted, err
    argv = ["verify", str(fi), "--cert", str(cast.ec.cert), "--trust", str(cast.trust_dir)]
    assert main(argv) == 0
    capsys.readouterr()


def test_sign_refuses_to_overwrite(
    cast: StandardPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `sign` refuses to overwrite the FS unless --force; other names get `.fs`."""
    fi = tmp_path / "declaration.xml"
    fi.write_bytes(b"<x/>")
    argv = ["sign", str(fi), "--key", str(cast.rsa.key), "--cert", str(cast.rsa.cert)]
    assert main(argv) == 0
    assert (tmp_path / "declaration.xml.fs").is_file()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--force", "--no-attributes", "--digest", "sha512"]) == 0


def test_sign_with_an_unusable_key(
    cast: StandardPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key that is not a PEM private key, or a missing file, is a usage error."""
    fi = tmp_path / "FI.X"
    fi.write_bytes(b"x")
    argv = ["sign", str(fi), "--cert", str(cast.rsa.cert), "--key"]
    assert main([*argv, str(cast.rsa.cert)]) == 2
    assert "cannot sign" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "nope")]) == 2
    assert "cannot read key" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_sign_refuses_a_key_that_is_not_the_certificates(
    key: str, cast: StandardPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another signer's key (same or other algorithm) is a usage error, and no FS is written."""
    fi = tmp_path / "FI.X"
    fi.write_bytes(b"x")
    argv = ["sign", str(fi), "--cert", str(cast.other_sender.cert), "--key"]
    assert main([*argv, str(getattr(cast, key).key)]) == 2
    assert "does not belong to the certificate" in capsys.readouterr().err
    assert not fs_path_for(fi).exists()


def test_gateway_command_exit_codes(
    cases: dict[str, SignatureCase], cast: StandardPki, tmp_path: Path
) -> None:
    """The installed `gateway verify` command exits 0 valid, 1 refused, 2 usage error."""
    good, bad = cases["rsa-pss/64-crlf"], cases["revoked"]
    codes = []
    for case in (good, bad):
        fs = tmp_path / f"FS-{case.name.replace('/', '-')}"
        fs.write_bytes(case.fs)
        argv = ["verify", str(case.fi), str(fs), "--trust", str(cast.trust_dir)]
        argv += ["--crl", str(cast.crl_dir)]
        for identity in case.registered:
            argv += ["--cert", str(identity.cert)]
        result = subprocess.run(
            [sys.executable, "-m", "gateway", *argv], capture_output=True, timeout=60, check=False
        )
        codes.append(result.returncode)
    usage = subprocess.run(
        [sys.executable, "-m", "gateway", "verify"], capture_output=True, timeout=60, check=False
    )
    assert [*codes, usage.returncode] == [0, 1, 2]
