"""Semantic checks: names, arities, orders, ranks, widths and what `x` may appear in.

`check(spec)` returns the spec unchanged or raises the first problem in source order as one
`SpecError` at the offending node, with a hint. Expressions are checked by their *kind*:

- scalar: constants only (`0.5`, `2 * 3`);
- input-wide: an elementwise function of the input (`x`, `x**2`, `sin(x)`), one value per
  input feature, so it may only appear inside `<w, ...>` or as the first argument of `cp`;
- unit-wide: one value per output unit (`<w, x>`, `cp(x, 2)`, `b`); `y` must be unit-wide.

Error codes (E1xx: declarations, neurons and expressions; E14x: networks):

    E100 empty spec                       E120 unknown name
    E101 duplicate declaration            E121 bias used twice
    E102 name not allowed                 E122 inner product of a unit-wide argument
    E103 neuron named like an activation  E123 inner product of a constant
    E110 neuron without `y = ...`         E124 weight name not allowed
    E111 second assignment                E125 weight name used twice
    E112 assignment to other than `y`     E126 cp with wrong arguments
    E113 second `rank`                    E127 cp order not a whole number in range
    E114 rank out of range                E128 the same cp term twice
    E115 cp term without `rank`           E129 unknown function
    E133 `y` not unit-wide                E130 wrong number of arguments
    E134 number too large                 E131 x outside an inner product
                                          E132 bad exponent
"""

from __future__ import annotations

from nscompile import syntax as s
from nscompile.check_network import check_network
from nscompile.errors import Span, SpecError, did_you_mean
from nscompile.naming import why_not_allowed
from nscompile.unparse import unparse_expr

#: Words of the .ns language itself; a declaration so named could not be referred to.
KEYWORDS = ("dense", "input", "network", "neuron", "rank", "task")
