"""``python -m edgecut``."""

from edgecut._cli import main

raise SystemExit(main())
