"""``python -m ember.cli``, the same as ``ember``."""

from ember.cli import main

main()
