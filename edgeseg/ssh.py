"""Running things on the user's own device through the system ``ssh`` (bench and demo ``--remote``).

The user's ssh config, keys and agent do the connecting; host keys are checked as ssh checks
them (``BatchMode=yes`` only stops it from asking questions: a prompt would hang a run). A
payload travels as one tar stream into a new temporary folder on the device
(:func:`device_folder`), which is removed whatever happens. Every failure is one line:
unknown host, refused key, unknown host key, a device that dies mid-run, a timeout.
"""

from __future__ import annotations

import contextlib
import io
import re
import secrets
import shlex
import subprocess
import tarfile
import time

from edgeseg.errors import EdgesegError

#: the temporary folders made on the device (checked before one is removed)
REMOTE_DIR = re.compile(r"^/[\w./-]*/edgeseg-(bench|demo)\.[A-Za-z0-9]+$")
_MKDIR_FAILED = 90  # the device's exit code where the folder could not be made


class RemoteError(EdgesegError):
    """The device could not be reached, refused us, lacks the runtime, or failed mid-run."""


class RemoteTimeout(RemoteError):
    """The device did not finish in time (it may have done part of the work)."""


def why(host: str, stderr: str, what: str = "the command") -> str:
    """One line for an ssh failure (exit 255), from what ssh wrote."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip() and not ln.startswith("Warning:")]
    if not lines:
        return (f"the connection to '{host}' was lost during {what} (ssh said nothing): did the device reboot, "
                f"lose its network, or kill the process (out of memory)?")
    line = lines[-1]
    text = " ".join(lines)
    if "Could not resolve hostname" in text:
        return f"cannot reach '{host}': the host name is unknown ({line}): check the name or its Host entry in ~/.ssh/config"
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return (f"'{host}': ssh could not verify the device's host key ({line}): connect once with `ssh {host}` "
                f"and check the key it shows")
    if "Permission denied" in text:
        return (f"'{host}' refused the login ({line}): put your public key in the device's "
                f"~/.ssh/authorized_keys (ssh-copy-id {host}) or load it into your agent")
    if any(s in text for s in ("Connection refused", "timed out", "No route to host", "Network is unreachable")):
        return f"cannot reach '{host}' ({line}): is the device on, on the network, and running sshd?"
    return f"ssh to '{host}' failed ({line})"


class Remote:
    """Commands on one device through the system ssh."""

    def __init__(self, host: str, *, ssh_config=None, timeout: float = 600, connect_timeout: int = 15):
        if not host or host.startswith("-"):
            raise RemoteError(f"--remote {host!r} is not a host: give a Host of ~/.ssh/config or user@host[:port]")
        self.host, self.timeout = host, float(timeout)
        target, port = host, None
        m = re.fullmatch(r"(.+?):(\d+)", host)
        if m:
            target, port = m.group(1), m.group(2)
        self.args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(connect_timeout)}"]
        if ssh_config:
            self.args += ["-F", str(ssh_config)]
        if port:
            self.args += ["-p", port]
        self.args += ["--", target]

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            what: str = "the command") -> subprocess.CompletedProcess:
        try:
            p = subprocess.run([*self.args, command], input=stdin if stdin is not None else b"",
                               capture_output=True, timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise RemoteTimeout(f"'{self.host}' did not finish {what} within {timeout or self.timeout:.0f} s: "
                              f"pass a longer --remote-timeout or check the device") from None
        except FileNotFoundError:
            raise RemoteError("the ssh program is not installed here (apt-get install openssh-client)") from None
        if p.returncode == 255:
            raise RemoteError(why(self.host, p.stderr.decode("utf-8", "replace"), what))
        return p

    def popen(self, command: str) -> subprocess.Popen:
        """``command`` on the device with its stdout as a pipe (a stream read as it comes)."""
        try:
            return subprocess.Popen([*self.args, command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise RemoteError("the ssh program is not installed here (apt-get install openssh-client)") from None


def pack(files: dict[str, bytes]) -> bytes:
    """A tar stream of ``{name: bytes}`` (flat names, mode 0644)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def artifact_payload(artifact, manifest: dict, extra: dict[str, bytes]) -> bytes:
    """The tar stream of an artifact's files (those its manifest names, which read_manifest
    checked lie inside the folder) plus ``extra`` (manifest, runner, inputs)."""
    files = {name: (artifact / name).read_bytes() for name in sorted(set(manifest["files"].values()))}
    return pack({**files, **extra})


@contextlib.contextmanager
def device_folder(remote: Remote, payload: bytes, kind: str = "bench", say=lambda s: None):
    """A new temporary folder on the device holding the unpacked ``payload``; yields
    ``{"folder": path, "removed": False}`` and removes the folder on exit, whatever happened
    (``removed`` then says whether that worked)."""
    # the name is chosen here, so a copy that times out half-way can still be removed
    where = f'"${{TMPDIR:-/tmp}}/edgeseg-{kind}.{secrets.token_hex(6)}"'
    try:
        p = remote.run(f'd={where}; mkdir -m 700 "$d" || exit {_MKDIR_FAILED}; tar -x -m -C "$d" && echo "$d"',
                       stdin=payload, what="the copy")
    except RemoteTimeout:  # the device may have made the folder: remove it (an unreachable one did not)
        _remove(remote, where, say)
        raise
    folder = p.stdout.decode().strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode != 0 or not REMOTE_DIR.match(folder):
        if p.returncode != _MKDIR_FAILED:  # never remove a folder this run did not make
            _remove(remote, where, say)
        raise RemoteError(f"'{remote.host}' could not unpack the artifact into a temporary folder "
                          f"({(p.stderr.decode(errors='replace').strip().splitlines() or ['no message'])[-1]})")
    state = {"folder": folder, "removed": False}
    try:
        yield state
    finally:
        state["removed"] = _remove(remote, shlex.quote(folder), say)


def _remove(remote: Remote, folder: str, say) -> bool:
    """``rm -rf`` of a folder on the device (``folder`` already quoted for its shell)."""
    try:
        return remote.run(f"rm -rf -- {folder}", timeout=60, what="the clean-up").returncode == 0
    except RemoteError as exc:
        say(f"warning: could not remove {folder} on {remote.host}: {exc}")
        return False


__all__ = ["REMOTE_DIR", "RemoteError", "RemoteTimeout", "Remote", "why", "pack", "artifact_payload", "device_folder"]
