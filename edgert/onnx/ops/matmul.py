"""ONNX importers: matmul ops."""
