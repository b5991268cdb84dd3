"""`python -m batchpilot_sandbox.kubelet`: see batchpilot_sandbox.kubelet.node."""

from batchpilot_sandbox.kubelet.node import main

raise SystemExit(main())
