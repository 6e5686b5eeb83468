"""Serving: ONNX sessions, variant assignment, micro-batching and the predict path."""
