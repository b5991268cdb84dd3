"""`python -m batchpilot_sandbox.loadgen`: see batchpilot_sandbox.loadgen.cli."""

from batchpilot_sandbox.loadgen.cli import main

raise SystemExit(main())
