"""ONNX importers: tensor ops."""
