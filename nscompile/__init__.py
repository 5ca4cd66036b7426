"""nscompile: a compiler from task-driven neuron specifications to PyTorch and ONNX."""

__version__ = "0.1.0"
