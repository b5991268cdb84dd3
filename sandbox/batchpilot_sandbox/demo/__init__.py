"""`make demo`, the sample InferenceService it serves (shared with the closed-loop tests) and its watcher."""
