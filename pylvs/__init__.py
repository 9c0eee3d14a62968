"""pylvs: a userspace LVS director."""

import forwarders  # noqa: F401 - the forwarding methods register themselves

__version__ = "0.1.0"
