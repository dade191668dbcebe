"""ONNX importers: pooling ops."""
