"""``python -m shatterkit``: the ``shatterkit`` command line (:func:`shatterkit.cli.main`)."""

from shatterkit.cli import main

raise SystemExit(main())
