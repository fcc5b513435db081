"""`fab` entry point: the same task collection as the `hbdeploy` program."""

from hbdeploy.tasks import namespace as ns

__all__ = ["ns"]
