"""``python -m stochgrad.cli``: the ``stochgrad`` command."""

from stochgrad.cli import main

raise SystemExit(main())
