"""The compiler: the matrix-level SymPy IR, lowering, the named passes, the reference evaluator
and the two backends (PyTorch source, ONNX protos); `pipeline` is the one place that knows the
stage order.

The passes are `passes.PASSES`, `(name, function)` pairs run in this order:

- `inline`: assignments back into one expression, so running the list twice changes nothing
- `canonicalise`: `x * x` -> `x**2`, `(x**2)**2` -> `x**4`, `1 * a` -> `a`, flat sums/products
- `power_chains`: each power reuses the next lower one present (`x**3` -> `x**2 * x`)
- `fuse_projections`: the maps of one argument inside products or functions -> one GEMM, sliced
- `fuse_sums`: a sum of maps with learned left sides (CP output maps) -> one GEMM
- `eliminate_common`: shared subexpressions -> temporaries `_t0, _t1, ...` (SymPy's tree CSE)
- `remove_dead`: unused assignments dropped, renaming or transposing ones inlined

`nscompile ir SPEC --after NAME` prints the IR after one of them (`lower`: before any).
`verify=True` in `pipeline.compile_text`, or `NSCOMPILE_VERIFY=1` in the environment (the tests
set it), checks the IR after lowering and after every pass and names a pass that breaks it.

Imports `nscompile.lang`, sympy, numpy, jinja2 and onnx; never torch or onnxruntime, so that
`nscompile check`, `fmt` and code generation start fast. The two backends never import each other.
"""
