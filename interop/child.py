"""What every helper process of the tests shares: it dies with the test that started it, and it
picks a free loopback port."""

import ctypes
import signal
import socket


def die_with_parent():
    """PR_SET_PDEATHSIG: a killed test leaves nothing behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
