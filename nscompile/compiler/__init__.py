"""The compiler: the matrix-level SymPy IR, lowering, the named passes, the reference evaluator
and the two backends (PyTorch source, ONNX protos); `pipeline` is the one place that knows the
stage order.

Imports `nscompile.lang`, sympy, numpy, jinja2 and onnx; never torch or onnxruntime, so that
`nscompile check`, `fmt` and code generation start fast. The two backends never import each other.
"""
