"""``python -m finsent``: the same as the ``finsent`` command."""

from finsent.app.cli import main

main()
