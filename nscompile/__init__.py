"""nscompile: a compiler from task-driven neuron specifications to PyTorch and ONNX."""

__version__ = "0.1.0"

_LAZY = {
    "TaskNetClassifier": "nscompile.learn.estimators",
    "TaskNetRegressor": "nscompile.learn.estimators",
}


def __getattr__(name: str) -> object:
    # The estimators load torch and scikit-learn: import them on first use only, so that
    # `import nscompile.compiler.pipeline` stays light (tests/test_imports.py).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nscompile' has no attribute {name!r}")
