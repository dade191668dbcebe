"""ONNX importers: normalization ops."""
