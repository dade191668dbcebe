"""ONNX importers: reduce ops."""
