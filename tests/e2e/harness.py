"""Drive ``gateway serve`` the way an operator starts it and a sender uses it.

- :func:`start_gateway` runs ``python -m gateway --config FILE serve [--demo]`` as a subprocess in
  its own working directory, reads its JSON log lines from stdout (``sftp.listening`` and
  ``metrics.listening`` carry the real ports when port 0 was asked for), waits for
  ``daemon.ready``, and checks that ``/readyz`` on the metrics port answers 200.
  :meth:`GatewayProcess.stop` sends SIGTERM and returns the exit status.
- :class:`Sftp` runs one batch of the real OpenSSH ``sftp`` client as one sender (key auth,
  ``-b -``: the batch aborts at the first refused command, as an unattended client's does).
- :func:`read_ack` parses an FO.ACRF the way a sender's system would (plain XML, not the
  gateway's own parser); :func:`wait_acks` polls an OUT folder on disk until a condition holds,
  with a deadline. A set's acknowledgement counts only once its GO.ACRF is there: the gateway
  writes it last.

Nothing here sleeps to wait for readiness: waiting is on a log line (a condition variable fed by
the reader thread) or on files, always bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "config" / "services.toml"
POLL = 0.05


def gateway_config(
    *,
    state_dir: Path,
    trust_dir: Path,
    set_timeout: str = "PT24H",
    sweep_seconds: float = 0.5,
    extra: str = "",
) -> str:
    """A ``gateway.toml`` for a test: port 0 everywhere, cheap password hashing, and a sweep
    (refusals answered, timeouts checked) every ``sweep_seconds`` so that tests wait less."""
    return (
        f'state_dir = "{state_dir}"\n'
        'log_level = "info"\n'
        "[sftp]\nport = 0\n"
        "[metrics]\nport = 0\n"
        f'[signature]\ntrust_dir = "{trust_dir}"\n'
        f'[pipeline]\nset_timeout = "{set_timeout}"\nservices_file = "{SERVICES}"\n'
        f"sweep_interval_seconds = {sweep_seconds}\n"
        "[security]\nargon2_time_cost = 1\nargon2_memory_kib = 8\nargon2_parallelism = 1\n"
        f"{extra}"
    )


def clean_environ(**overrides: str) -> dict[str, str]:
    """This process's environment without any ``GATEWAY_*`` setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(overrides)
    return env


class GatewayProcess:
    """A running ``gateway serve`` and everything it logged so far."""

    def __init__(self, process: subprocess.Popen[str], *, state_dir: Path) -> None:
        self.process = process
        self.state_dir = state_dir
        self.log: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.sftp_port = 0
        self.metrics_port = 0
        self.web_port = 0
        self.ftp_ports: dict[str, int] = {}
        """FTP listener ports by name (``public`` and the plain listeners), when FTP is on."""

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "<not json>", "text": line.rstrip("\n")}
            if not isinstance(event, dict):
                event = {"event": "<not an object>", "text": line.rstrip("\n")}
            with self._changed:
                self.log.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.stderr.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every logged event called ``name`` so far."""
        with self._changed:
            return [e for e in self.log if e.get("event") == name]

    def wait_count(
        self,
        name: str,
        count: int,
        *,
        where: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """The events ``name`` (with the ``where`` fields) once there are at least ``count``: the
        daemon logs before it answers, but this harness reads its log on a thread, so a count
        made right after an answer may not have seen the line yet."""
        where = where or {}

        def matching() -> list[dict[str, Any]]:
            return [
                e
                for e in self.log
                if e.get("event") == name and all(e.get(k) == v for k, v in where.items())
            ]

        with self._changed:
            self._changed.wait_for(
                lambda: len(matching()) >= count or self.process.poll() is not None,
                timeout=timeout,
            )
            found = matching()
        if len(found) < count:
            raise AssertionError(f"{len(found)} of {count} {name} {where}:\n{self.tail()}")
        return found

    def wait_event(
        self, name: str, *, where: Mapping[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        """The first event ``name`` (with the ``where`` fields); fails if the daemon exits first."""
        where = where or {}

        def found() -> dict[str, Any] | None:
            for event in self.log:
                if event.get("event") == name and all(event.get(k) == v for k, v in where.items()):
                    return event
            return None

        with self._changed:
            ok = self._changed.wait_for(
                lambda: found() is not None or self.process.poll() is not None, timeout=timeout
            )
            event = found()
        if event is None:
            state = "exited" if self.process.poll() is not None else f"silent for {timeout} s"
            raise AssertionError(f"no {name} {where} ({state}, ok={ok}):\n{self.tail()}")
        return event

    def wait_stderr(self, text: str, *, timeout: float = 60.0) -> str:
        """Everything written to stderr once a line containing ``text`` has been."""
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    any(text in line for line in self.stderr) or self.process.poll() is not None
                ),
                timeout=timeout,
            )
            joined = "".join(self.stderr)
        if text not in joined:
            raise AssertionError(f"{text!r} never appeared on stderr:\n{joined}\n{self.tail()}")
        return joined

    def tail(self, lines: int = 40) -> str:
        """The last log lines and stderr, for failure messages."""
        with self._changed:
            logged = [json.dumps(e) for e in self.log[-lines:]]
            err = self.stderr[-lines:]
        return "\n".join(logged) + "\n--- stderr ---\n" + "".join(err)

    def problems(self) -> list[dict[str, Any]]:
        """Logged events at level error or worse (exceptions included)."""
        with self._changed:
            return [e for e in self.log if e.get("level") in {"error", "critical", "exception"}]

    def stop(self, *, timeout: float = 60.0) -> int:
        """SIGTERM, wait for the exit, return its status (the readers drain what is left)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            message = f"gateway did not stop within {timeout} s:\n{self.tail()}"
            raise AssertionError(message) from None
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return status


def start_gateway(
    config: Path | None,
    *,
    state_dir: Path,
    cwd: Path,
    demo: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 90.0,
) -> GatewayProcess:
    """Start ``gateway serve`` and return once it is ready (and ``/readyz`` says so).

    Without ``config`` the command line carries no ``--config`` (the daemon then reads
    ``config/gateway.toml`` under ``cwd`` if there is one).
    """
    argv = [sys.executable, "-m", "gateway"]
    if config is not None:
        argv += ["--config", str(config)]
    argv.append("serve")
    if demo:
        argv.append("--demo")
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else clean_environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    gateway = GatewayProcess(process, state_dir=state_dir)
    try:
        gateway.wait_event("daemon.ready", timeout=timeout)
        gateway.sftp_port = int(gateway.wait_event("sftp.listening", timeout=1)["port"])
        gateway.metrics_port = int(gateway.wait_event("metrics.listening", timeout=1)["port"])
        gateway.ftp_ports = {e["listener"]: int(e["port"]) for e in gateway.events("ftp.listening")}
        for event in gateway.events("web.listening"):
            gateway.web_port = int(event["port"])
        url = f"http://127.0.0.1:{gateway.metrics_port}/readyz"
        with urllib.request.urlopen(url, timeout=10) as answer:
            if answer.status != 200:
                raise AssertionError(f"/readyz answered {answer.status}")
    except BaseException:
        gateway.stop()
        raise
    return gateway


@dataclass(frozen=True, slots=True)
class Sftp:
    """One sender's OpenSSH ``sftp`` client (batch mode, key auth, no user config)."""

    port: int
    login: str
    key: Path
    host: str = "127.0.0.1"

    def argv(self) -> list[str]:
        """The command line; the batch comes on stdin."""
        return [
            "sftp", "-b", "-", "-F", "/dev/null", "-i", str(self.key), "-P", str(self.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            f"{self.login}@{self.host}",
        ]  # fmt: skip

    def run(
        self, commands: Iterable[str], *, cwd: Path, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run one batch (one session); the result says what the sender's terminal showed."""
        batch = "".join(f"{command}\n" for command in commands)
        return subprocess.run(
            self.argv(),
            input=batch,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, commands: Iterable[str], *, cwd: Path) -> str:
        """Run one batch that must succeed; return its stdout."""
        result = self.run(commands, cwd=cwd)
        if result.returncode != 0:
            raise AssertionError(f"sftp failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def listing(self, folder: str, *, cwd: Path) -> list[str]:
        """The names ``ls -1 FOLDER`` shows."""
        out = self.ok([f"ls -1 {folder}"], cwd=cwd)
        return sorted(
            line.strip().rsplit("/", 1)[-1]
            for line in out.splitlines()
            if line.strip() and not line.startswith("sftp>")
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """What a sender's system reads from one FO.ACRF."""

    fo: str
    file_name: str
    ticket: str
    result: int
    error_id: str | None
    description: str | None

    @property
    def code(self) -> int | None:
        """The number of ``ACRF-<code>`` (None for a positive ACRF)."""
        if self.error_id is None:
            return None
        return int(self.error_id.removeprefix("ACRF-"))


def read_ack(path: Path) -> Ack:
    """Parse one FO.ACRF with the standard library's XML parser."""
    # The document is the gateway's own acknowledgement, fetched from a test server.
    root = ET.fromstring(path.read_bytes())  # noqa: S314
    form = root.find("Form")
    if root.tag != "ACRF" or form is None:
        raise AssertionError(f"{path.name} is not an ACRF document")

    def text(xpath: str) -> str | None:
        node = form.find(xpath)
        return node.text if node is not None else None

    return Ack(
        fo=path.name,
        file_name=text("FileReference/FileName") or "",
        ticket=text("FileReference/ReferenceNbr") or "",
        result=int(text("ReceptionResult/ResultCode") or "-1"),
        error_id=text("ReceptionResult/ErrorID"),
        description=text("ReceptionResult/Description"),
    )


def complete_acks(folder: Path) -> list[Ack]:
    """Every ACRF of ``folder`` whose GO.ACRF is present, in name order."""
    if not folder.is_dir():
        return []
    names = {p.name for p in folder.iterdir()}
    return [
        read_ack(folder / name)
        for name in sorted(names)
        if name.startswith("FO.ACRF.") and "GO" + name[2:] in names
    ]


def wait_acks(
    folder: Path, until: Callable[[list[Ack]], bool], *, timeout: float = 60.0
) -> list[Ack]:
    """Poll ``folder`` until ``until(acks)`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        acks = complete_acks(folder)
        if until(acks):
            return acks
        if time.monotonic() > deadline:
            seen = [(a.file_name, a.result, a.error_id) for a in acks]
            raise AssertionError(f"timed out waiting in {folder}; acknowledgements: {seen}")
        time.sleep(POLL)


def acks_for(*names: str, count: int = 1) -> Callable[[list[Ack]], bool]:
    """A :func:`wait_acks` condition: each of ``names`` has at least ``count`` ACRFs."""

    def done(acks: list[Ack]) -> bool:
        return all(sum(1 for a in acks if a.file_name == n) >= count for n in names)

    return done
