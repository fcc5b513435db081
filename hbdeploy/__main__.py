"""`python -m hbdeploy`: the same program as the `hbdeploy` command."""

from .main import program

program.run()
