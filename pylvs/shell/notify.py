"""sd_notify(3) without libsystemd: the director tells systemd (a Type=notify unit) when it is
up, when it reloads and when it stops.

The protocol is one datagram of ``NAME=VALUE`` lines to the unix socket $NOTIFY_SOCKET names
(a path, or ``@name`` in the abstract namespace). The address is taken out of the environment
when read, as sd_notify's unset_environment does: the MISC_CHECK and notify commands the
director starts must not speak for it. Without $NOTIFY_SOCKET (not under systemd) every call
does nothing; a failed send is logged and changes nothing else, as libsystemd's.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("pylvs")


class Notifier:
    def __init__(self, address: str = "") -> None:
        self.address = address

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Notifier:
        """The socket systemd gave this process, removed from the environment."""
        return cls((os.environ if environ is None else environ).pop("NOTIFY_SOCKET", ""))

    def send(self, **fields: str) -> bool:
        """One message; True when it was sent."""
        if not self.address:
            return False
        if not self.address.startswith(("/", "@")):
            log.debug("sd_notify: %r is not a unix socket address; not sent", self.address)
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        message = "".join(f"{name}={value}\n" for name, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), target)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def reloading(self) -> bool:
        """RELOADING=1 with the CLOCK_MONOTONIC time systemd (253 on) wants beside it."""
        return self.send(RELOADING="1", MONOTONIC_USEC=str(time.monotonic_ns() // 1000),
                         STATUS="reloading")

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING="1", STATUS=status)
