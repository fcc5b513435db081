"""`fab` entry point: the same task collection as the `hbdeploy` program."""
from hbdeploy.fabfile import ns  # noqa: F401
