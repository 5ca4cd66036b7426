"""nscompile: a compiler from task-driven neuron specifications to PyTorch and ONNX.

>>> import nscompile
>>> model = nscompile.load("examples/td.ns").build()   # the spec's network, a torch module
>>> clf = nscompile.TaskNetClassifier(spec="examples/td.ns").fit(X, y)
"""

__version__ = "0.1.0"

_LAZY = {
    "TaskNetClassifier": "nscompile.learn.estimators",
    "TaskNetRegressor": "nscompile.learn.estimators",
    "load": "nscompile.learn.loader",
    "LoadedSpec": "nscompile.learn.loader",
}


def __getattr__(name: str) -> object:
    # The estimators and `load` need the compiler, torch and scikit-learn: import them on first
    # use only, so that `import nscompile.compiler.pipeline` stays light (tests/test_imports.py).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nscompile' has no attribute {name!r}")
