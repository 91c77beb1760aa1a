"""On-board inference: model cards and ONNX Runtime. Never imports torch."""
