"""``python -m lrexp``: see lrexp.app."""

from lrexp.app import main

main()
