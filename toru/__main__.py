"""``python -m toru`` is the same as the ``toru`` command."""

from toru.cli import main

raise SystemExit(main())
