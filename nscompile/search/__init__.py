"""NeuronSeek-TD structure search (DESIGN §6): data -> pure and interaction orders -> spec AST.

    >>> from nscompile.search import NeuronSeek, search
    >>> NeuronSeek(max_order=5, rank=8).fit(X, y).structure_
    {'pure': [2], 'interact': [3], 'rank': 8, 'gates': {...}}
    >>> search(X, y, seeds=(0, 1, 2)).agreement
    1.0

Modules: `gates` (hard-concrete L0 gates), `model` (the dual-stream model), `train` (stage 1
gated training and stage 2 pruning refits), `inputs` (validation), `estimator`
(`NeuronSeek`), `multi` (multi-seed `search`), `spec` (the result as an AST). Nothing here
imports the compiler's back half.
"""

from nscompile.search.estimator import NeuronSeek

__all__ = ["NeuronSeek"]
