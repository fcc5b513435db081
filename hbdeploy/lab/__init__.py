"""A lab of real Debian 12 servers on one machine: systemd-nspawn nodes on a private bridge."""

from .lab import Lab, LabError

__all__ = ["Lab", "LabError"]
