"""A real OpenSSH server on loopback for the SSH executor's tests.

One `sshd -D` per test session on a free port of 127.0.0.1, with a generated host key,
a generated client key authorized for the user `fbtest` (made by `ci/engines/ssh.sh`)
and a `known_hosts` naming `[127.0.0.1]:PORT`. `stop()` simulates a host that goes down:
it kills the listener and every per-connection sshd under it, which drops the TCP
connections of running jobs (killing only the listener would leave open sessions alive).
The users' own processes are left alone, as they would be on a host whose network died.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from engine_helpers import engine_unavailable

SSHD = "/usr/sbin/sshd"
USER = "fbtest"
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    """Make an ed25519 key pair at `path`; returns the public key as `type base64`."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _children(pid: int) -> list[int]:
    """Every descendant of `pid`, read from /proc (no psutil on the test machines)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields after the last `)`.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class SshServer:
    """The test sshd: where it listens and the files a client needs to reach it."""

    root: Path
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    wrong_known_hosts: Path  # the right address with another host's key
    config: Path
    log: Path
    keys_dir: Path | None = None  # this session's authorized_keys, removed at the end
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start sshd and wait (bounded) until it accepts TCP connections."""
        if self.running:
            return
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)  # polling a real condition, bounded by the deadline
        raise RuntimeError(f"sshd did not listen on port {self.port}: {self.log_tail()}")

    def stop(self) -> None:
        """Kill the listener and its per-connection sshd processes, as a host going down."""
        if self._proc is None:
            return
        # Collect the session processes first: once the listener dies they are reparented.
        sessions = [p for p in _children(self._proc.pid) if _comm(p) == "sshd"]
        for pid in [self._proc.pid, *sessions]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._proc.wait(timeout=10)
        self._proc = None

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def make_server(root: Path) -> SshServer:
    """Generate keys and config under `root` (owned by root, as sshd insists) for `fbtest`."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        engine_unavailable("sshd", f"{SSHD} or ssh-keygen is missing")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        engine_unavailable("sshd", f"the test user `{USER}` does not exist")
    if os.geteuid() != 0:
        engine_unavailable("sshd", "the sshd fixture must run as root to switch to fbtest")
    os.makedirs("/run/sshd", exist_ok=True)

    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    host_key = _keygen(root / "ssh_host_ed25519_key")
    other_key = _keygen(root / "other_host_key")
    client_pub = _keygen(root / "client_key")

    # Each session authorizes its own key in its own file, so that two test sessions
    # at once (two developers, or CI and a developer) do not replace each other's key
    # in ~fbtest/.ssh. Under /run, not /tmp: StrictModes refuses a path below a
    # world-writable directory.
    keys_dir = Path(tempfile.mkdtemp(prefix="flowbatch-sshd-", dir="/run"))
    os.chmod(keys_dir, 0o755)
    authorized = keys_dir / "authorized_keys"
    authorized.write_text(client_pub + "\n")
    os.chmod(authorized, 0o644)

    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    (root / "known_hosts_wrong").write_text(f"[127.0.0.1]:{port} {other_key}\n")
    config = root / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root}/ssh_host_ed25519_key
PidFile {root}/sshd.pid
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {USER}
UsePAM no
AuthorizedKeysFile {authorized}
MaxStartups 50:30:100
MaxSessions 100
# What a host accepting a client's variables would take (see test_ssh's ssh_config test).
AcceptEnv FBTEST_*
LogLevel INFO
"""
    )
    return SshServer(
        root=root,
        port=port,
        user=USER,
        client_key=root / "client_key",
        known_hosts=root / "known_hosts",
        wrong_known_hosts=root / "known_hosts_wrong",
        config=config,
        log=root / "sshd.log",
        keys_dir=keys_dir,
    )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A running sshd for the whole session; a test that stops it must start it again."""
    server = make_server(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
    except RuntimeError as e:
        engine_unavailable("sshd", str(e))
    try:
        yield server
    finally:
        server.stop()
        if server.keys_dir is not None:
            shutil.rmtree(server.keys_dir, ignore_errors=True)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A working directory the job user (fbtest) can write to.

    Made directly under the system temp dir: pytest's tmp_path sits below a mode-700
    directory that fbtest cannot traverse.
    """
    work = Path(tempfile.mkdtemp(prefix="flowbatch-ssh-"))
    os.chmod(work, 0o777)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
