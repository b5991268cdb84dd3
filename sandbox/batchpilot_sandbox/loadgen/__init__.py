"""Open-loop Poisson load for Triton's HTTP infer endpoint: schedules, the engine, targets and the CLI."""
