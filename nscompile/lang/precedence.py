"""Operator precedence, loosest first: the one ladder of every printer of expressions.

The .ns grammar's ladder (grammar/ns.lark: sum < product < unary < power < atom) is Python's
restricted to the operators both have, so `unparse` (.ns text) and the PyTorch printer (Python
text) print the fewest parentheses from the same numbers. In Python `@` binds as `*` does
(PRODUCT), and the postfix `.T` and `[...]` bind as an atom's trailers: tighter than POWER.
"""

from __future__ import annotations

SUM, PRODUCT, UNARY, POWER, ATOM = range(1, 6)

#: The binary operators of .ns (`*` is elementwise) and their level.
BINARY = {"+": SUM, "-": SUM, "*": PRODUCT}
