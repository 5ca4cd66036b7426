"""`python -m nscompile` is the `nscompile` command."""

from nscompile.cli.main import main

raise SystemExit(main())
