"""`python -m hbdeploy`: the same program as the `hbdeploy` command."""

from .cli import main

main()
