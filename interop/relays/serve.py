"""Run one third-party Nostr relay on loopback for a test, print its URL, stop when stdin closes.

    serve.py localrelay [--max-limit N]     nostr-sdk's LocalRelay (speaks NIP-77)
    serve.py nostr-relay [--max-limit N]    PyPI nostr-relay on SQLite (REQ only, no NIP-77)

The process dies with its parent (PR_SET_PDEATHSIG), so a killed test leaves nothing behind.
"""

import argparse
import asyncio
import glob
import os
import shutil
import socket
import sys
import tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from child import die_with_parent, free_port  # noqa: E402


async def wait_stdin_closed():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def local_relay(max_limit):
    import nostr_sdk

    builder = (
        nostr_sdk.LocalRelayBuilder()
        .addr("127.0.0.1")
        .port(free_port())
        .rate_limit(nostr_sdk.RateLimit(max_reqs=100_000, notes_per_minute=10_000_000))
    )
    if max_limit:
        builder = builder.max_filter_limit(max_limit).default_filter_limit(max_limit)
    relay = builder.build()
    await relay.run()
    print(await relay.url(), flush=True)
    await wait_stdin_closed()
    relay.shutdown()


FOLDER_PREFIX = "nostr-relay-"


def sweep_dead_folders():
    """Remove the folders of earlier relays that died by SIGKILL (their pid file names a dead pid)."""
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), FOLDER_PREFIX + "*")):
        try:
            with open(os.path.join(folder, "pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            pass  # no pid file yet (starting) or not ours: leave it


def nostr_relay(max_limit):
    from nostr_relay.web import run_with_uvicorn
    import time

    sweep_dead_folders()
    folder = tempfile.mkdtemp(prefix=FOLDER_PREFIX)
    with open(os.path.join(folder, "pid"), "w") as f:
        f.write(str(os.getpid()))
    port = free_port()
    config = os.path.join(folder, "config.yaml")
    with open(config, "w") as f:
        f.write(
            f"""DEBUG: false
relay_name: test relay
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{folder}/nostr.sqlite3
  num_concurrent_reqs: 10
  num_concurrent_adds: 2
  validators:
    - nostr_relay.validators.is_not_too_large
    - nostr_relay.validators.is_signed
gunicorn:
  bind: 127.0.0.1:{port}
  workers: 1
  loglevel: warning
  reload: false
authentication:
  enabled: false
message_timeout: 1800
subscription_limit: 64
max_limit: {max_limit or 6000}
oldest_event: 3153600000
"""
        )
    # `nostr-relay serve` runs its alembic migrations first; run_with_uvicorn does not, so the
    # tables are created here (without them every EVENT gets `OK "" false "no such table"`).
    import sqlalchemy
    from nostr_relay.storage import get_metadata

    engine = sqlalchemy.create_engine(f"sqlite:///{folder}/nostr.sqlite3")
    get_metadata().create_all(engine)
    engine.dispose()

    import threading

    def announce_then_wait():
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        print(f"ws://127.0.0.1:{port}", flush=True)
        sys.stdin.read()
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(0)

    threading.Thread(target=announce_then_wait, daemon=True).start()
    run_with_uvicorn(config)  # signal handlers need the main thread


def main():
    die_with_parent()
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["localrelay", "nostr-relay"])
    parser.add_argument("--max-limit", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "localrelay":
        asyncio.run(local_relay(args.max_limit))
    else:
        nostr_relay(args.max_limit)


if __name__ == "__main__":
    main()
