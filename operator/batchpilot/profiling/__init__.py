"""`batchpilot profile`: spec.model.profile from a served model (files.py reads what users bring, measure.py
measures on a running Triton)."""
