"""An independent Kubo RPC client (PyPI aioipfs) for the integration tests.

Usage: client.py API_MULTIADDR [--auth basic:USER:PASS|bearer:TOKEN] OP [ARGS...]
Prints the client's result as one JSON line; an API error prints {"error": ..., "status": ...}.
"""

import asyncio
import json
import sys

import aioipfs
from aioipfs.exceptions import APIError
from aiohttp import payload

# aioipfs 0.7.1 wraps a top-level file (`add file`, `add folder/*`) in aiohttp's BytesIOPayload,
# which needs an in-memory BytesIO and fails on the open file it is given; the payload made for
# open files is BufferedReaderPayload. Without this, aioipfs cannot add a plain file at all.
payload.BytesIOPayload = payload.BufferedReaderPayload


def client(maddr, auth):
    credentials = None
    if auth and auth.startswith("basic:"):
        user, password = auth[len("basic:"):].split(":", 1)
        credentials = aioipfs.BasicAuth(user, password)
    elif auth and auth.startswith("bearer:"):
        credentials = aioipfs.BearerAuth(auth[len("bearer:"):])
    return aioipfs.AsyncIPFS(maddr=maddr, auth=credentials)


async def run(ipfs, op, args):
    if op == "id":
        return await ipfs.core.id()
    if op == "version":
        return await ipfs.core.version()
    if op == "swarm_peers":
        return await ipfs.swarm.peers(verbose=False)
    if op == "swarm_connect":
        return await ipfs.swarm.connect(args[0])
    if op == "swarm_addrs":
        return await ipfs.swarm.addrs()
    if op == "p2p_listen":
        return await ipfs.p2p.listener_open(args[0], args[1])
    if op == "p2p_forward":
        return await ipfs.p2p.stream_dial(args[0], args[1], args[2])
    if op == "p2p_ls":
        return await ipfs.p2p.listener_ls()
    if op == "p2p_close":
        return await ipfs.p2p.listener_close(args[0])
    if op == "stream_ls":
        return await ipfs.p2p.stream_ls()
    if op == "findpeer":
        return await ipfs.routing.findpeer(args[0])
    if op == "ping":
        return [line async for line in ipfs.core.ping(args[0], count=int(args[1]))]
    return await run_ipfs(ipfs, op, args)


def opts(args):
    """The `key=value` arguments of an op, as keyword arguments."""
    out = {}
    for arg in args:
        key, _, value = arg.partition("=")
        if value.isdigit():
            out[key] = int(value)
        else:
            out[key] = {"true": True, "false": False}.get(value, value)
    return out


async def run_ipfs(ipfs, op, args):
    """The content, name, key and pin commands (`ipfs add -rwq`, `cat`, `get`, ...)."""
    if op == "add":  # add PATH... -- key=value...
        split = args.index("--") if "--" in args else len(args)
        paths, kw = args[:split], opts(args[split + 1:])
        return [entry async for entry in ipfs.core.add(*paths, **kw)]
    if op == "add_bytes":  # add_bytes TEXT: an upload with no file name, as stdin
        return await ipfs.core.add_bytes(args[0].encode())
    if op == "cat":  # cat PATH [offset length]; hex of the bytes
        offset = int(args[1]) if len(args) > 1 else None
        length = int(args[2]) if len(args) > 2 else None
        data = await ipfs.core.cat(args[0], offset=offset, length=length)
        return data.hex()
    if op == "get":
        return await ipfs.core.get(args[0], dstdir=args[1])
    if op == "ls":
        return await ipfs.core.ls(args[0])
    if op == "name_publish":  # name_publish PATH key=value...
        return await ipfs.name.publish(args[0], **opts(args[1:]))
    if op == "name_resolve":
        return await ipfs.name.resolve(args[0])
    if op == "key_list":
        return await ipfs.key.list(long=True)
    if op == "key_gen":  # key_gen NAME [TYPE [SIZE]]
        kind = args[1] if len(args) > 1 else "ed25519"
        return await ipfs.key.gen(args[0], type=kind, size=int(args[2]) if len(args) > 2 else 2048)
    if op == "key_import":  # key_import NAME FILE [FORMAT]
        fmt = args[2] if len(args) > 2 else "libp2p-protobuf-cleartext"
        return await ipfs.key.key_import(args[1], args[0], format=fmt)
    if op == "key_rm":
        return await ipfs.key.rm(args[0])
    if op == "key_rename":
        return await ipfs.key.rename(args[0], args[1])
    if op == "pin_add":
        return [p async for p in ipfs.pin.add(args[0], progress=False)]
    if op == "pin_ls":
        return await ipfs.pin.ls()
    if op == "pin_rm":
        return await ipfs.pin.rm(args[0])
    if op == "repo_gc":
        return [entry async for entry in ipfs.repo.gc()]
    if op == "findprovs":  # findprovs CID [COUNT]
        count = int(args[1]) if len(args) > 1 else 20
        return [entry async for entry in ipfs.routing.findprovs(args[0], numproviders=count)]
    if op == "repo_stat":
        return await ipfs.repo.stat()
    raise SystemExit(f"unknown op {op}")


async def main():
    argv = sys.argv[1:]
    maddr, argv = argv[0], argv[1:]
    auth = None
    if argv[0] == "--auth":
        auth, argv = argv[1], argv[2:]
    ipfs = client(maddr, auth)
    try:
        result = await run(ipfs, argv[0], argv[1:])
        print(json.dumps({"result": result}))
    except APIError as e:
        print(json.dumps({"error": e.message, "code": e.code, "status": e.http_status}))
    except Exception as e:  # aioipfs raises other types for a 404 or an unreadable answer
        print(json.dumps({"error": str(e), "kind": type(e).__name__}))
    finally:
        await ipfs.close()


asyncio.run(main())
