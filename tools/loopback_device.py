"""A throwaway "device" on this machine for the remote bench: sshd on 127.0.0.1 with fresh
keys, and a Python virtual env holding only numpy and the runtimes asked for (no edgeseg, no
torch), linked from this environment. tests/test_remote.py uses it; run it by hand to try
``edgeseg bench --remote`` without a board:

    python tools/loopback_device.py /tmp/dev -- edgeseg bench ART --remote loopback \\
        --ssh-config /tmp/dev/ssh_config --remote-python /tmp/dev/device-env/bin/python

It starts sshd, runs the command after ``--`` (or waits for Ctrl-C), then stops sshd.
Needs openssh-server (``apt-get install openssh-server``) and to run as a user sshd accepts.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def device_python(env: Path, modules) -> Path:
    """A venv without pip whose site-packages hold links to ``modules`` only."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next((env / "lib").glob("python3*/site-packages"))
    here = Path(__import__("numpy").__file__).parents[1]
    for m in modules:
        if (here / m).exists():
            (site / m).symlink_to(here / m)
    return env / "bin" / "python"


def start(root, runtimes=("onnxruntime",)) -> dict:
    """Start sshd under ``root``; ``{"proc", "config", "python", "port"}``. Host aliases in the
    config: ``loopback`` (works), ``stranger`` (host key unknown), ``nokey`` (key refused),
    ``nobody-home`` (nothing listens)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "user_key", "other_key"):
        if not (root / key).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root}/host_key\nAuthorizedKeysFile {root}/authorized_keys\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n"
        f"StrictModes no\nPermitRootLogin yes\nPidFile {root}/sshd.pid\nLogLevel ERROR\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.PIPE)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError(f"sshd did not start: {proc.stderr.read().decode()[-300:]}")
    host_pub = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (root / "empty_known_hosts").write_text("")
    user = getpass.getuser()
    common = f"  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentitiesOnly yes\n"
    (root / "ssh_config").write_text(
        f"Host loopback\n{common}  IdentityFile {root}/user_key\n  UserKnownHostsFile {root}/known_hosts\n"
        f"Host stranger\n{common}  IdentityFile {root}/user_key\n  UserKnownHostsFile {root}/empty_known_hosts\n"
        f"  StrictHostKeyChecking yes\n"
        f"Host nokey\n{common}  IdentityFile {root}/other_key\n  UserKnownHostsFile {root}/known_hosts\n"
        f"Host nobody-home\n  HostName 127.0.0.1\n  Port {free_port()}\n  User {user}\n")
    env = root / "device-env"
    python = env / "bin" / "python" if env.exists() else device_python(env, ["numpy", "numpy.libs", *runtimes])
    return {"proc": proc, "config": root / "ssh_config", "python": str(python), "port": port, "root": root}


def stop(device: dict) -> None:
    device["proc"].terminate()
    device["proc"].wait(timeout=10)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    root, cmd = argv[0], argv[argv.index("--") + 1:] if "--" in argv else []
    dev = start(root, ("onnxruntime", "openvino", "openvino.libs", "ncnn"))
    print(f"sshd on 127.0.0.1:{dev['port']}; ssh config {dev['config']}; device python {dev['python']}",
          file=sys.stderr)
    try:
        if cmd:
            return subprocess.call(cmd)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 130
    finally:
        stop(dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
