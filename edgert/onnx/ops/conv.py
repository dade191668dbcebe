"""ONNX importers: conv ops."""
