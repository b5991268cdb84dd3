"""The local control plane, Prometheus, KEDA, the opt-in real node and the whole stack."""
