"""Subcommands of the ``ngl`` CLI, one module each (see :data:`ngl.cli.COMMANDS`)."""
