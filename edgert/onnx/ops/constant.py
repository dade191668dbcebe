"""ONNX importers: constant ops."""
