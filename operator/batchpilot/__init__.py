"""Batchpilot: SLO-driven autoscaling of replicas and Triton dynamic batching."""
