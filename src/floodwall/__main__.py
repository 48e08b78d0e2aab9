"""`python -m floodwall`, the same as the `floodwall` console script."""

from floodwall.cli import run

run()
