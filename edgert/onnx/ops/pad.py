"""ONNX importers: Pad."""
