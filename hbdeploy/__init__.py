"""hbdeploy: agentless provisioner for Linux-HA heartbeat clusters."""

__version__ = "0.1.0"
