"""A real SMTP server (PyPI aiosmtpd) on loopback for tests: saves each message to DIR/N.eml.

    smtp_sink.py DIR      prints the port, serves until stdin closes (dies with its parent)
"""

import os
import sys

from aiosmtpd.controller import Controller
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from child import die_with_parent, free_port  # noqa: E402


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.folder, f"{self.count}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)  # the test sees whole messages only
        return "250 Message accepted for delivery"


def main():
    die_with_parent()
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    port = free_port()
    controller = Controller(Sink(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
