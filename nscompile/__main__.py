"""`python -m nscompile` is the `nscompile` command."""

from nscompile.cli import main

raise SystemExit(main())
