"""pylvs: a userspace LVS director."""

__version__ = "0.1.0"
