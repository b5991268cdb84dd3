"""`batchpilot export`: a PyTorch module as a Triton model directory (TorchScript or ONNX) with its config.pbtxt and
the spec.model fields that go with it. Needs the `export` extra (torch, onnx, onnxruntime)."""
