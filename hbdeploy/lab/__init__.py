"""A lab of real Debian 12 and 13 servers on one machine: systemd-nspawn nodes on a bridge."""

from .lab import Lab, LabError

__all__ = ["Lab", "LabError"]
