"""Python side of the Kubo harness: start `node.py` (one Kubo per process) and drive it.

Owns the client of node.py's JSON-lines protocol, shared by the benchmark and ad-hoc checks.
The Rust tests speak the same protocol (tests/it/kubo_harness.rs).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

NODE_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node.py")
# Kubo's RunNode takes ~5 s here; a loaded CI machine may need several times that.
READY_TIMEOUT_S = 60
# One command (connect, listen, forward) never takes this long on loopback.
COMMAND_TIMEOUT_S = 30


class KuboError(RuntimeError):
    pass


class KuboNode:
    """A Kubo node in a child process; `stop()` (or garbage collection of the pipe) ends it."""

    def __init__(self, repo=None, swarm_key_hex=None, port=0, log=None, python=None):
        self._tmp = None
        if repo is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kubo-")
            repo = os.path.join(self._tmp.name, "repo")
        self.repo = repo
        cmd = [python or sys.executable, NODE_PY, "--repo", repo, "--port", str(port)]
        if swarm_key_hex:
            cmd += ["--swarm-key-hex", swarm_key_hex]
        self.log_path = log or os.path.join(os.path.dirname(repo), "kubo.log")
        self._log = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        ready = self._read_line(READY_TIMEOUT_S)
        if ready.get("event") != "ready":
            raise KuboError(f"kubo did not start: {ready}; log {self.log_path}")
        self.ready_s = time.monotonic() - self.started
        self.peer_id = ready["peer_id"]
        self.addrs = [a for a in ready["addrs"] if "/127.0.0.1/" in a]
        self.pid = ready["pid"]

    def _read_line(self, timeout):
        import select

        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise KuboError(f"kubo harness silent for {timeout}s; log {self.log_path}")
        line = self.proc.stdout.readline()
        if not line:
            raise KuboError(f"kubo harness exited; log {self.log_path}")
        return json.loads(line)

    def call(self, cmd, **kw):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        reply = self._read_line(COMMAND_TIMEOUT_S)
        if not reply.get("ok"):
            raise KuboError(f"{cmd} {kw}: {reply.get('error')}")
        return reply

    @property
    def addr(self):
        """Full dialable address of this node."""
        return f"{self.addrs[0]}/p2p/{self.peer_id}"

    def connect(self, addr):
        return self.call("connect", addr=addr)

    def listen(self, proto, port):
        return self.call("listen", proto=proto, target=f"/ip4/127.0.0.1/tcp/{port}")

    def forward(self, proto, port, peer):
        return self.call("forward", proto=proto, listen=f"/ip4/127.0.0.1/tcp/{port}", peer=peer)

    def rss_kib(self):
        return self.call("rss")["rss_kib"]

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
