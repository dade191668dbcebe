"""ONNX importers: resize ops."""
