"""NeuronSeek's structure dict (`pure_indices`, `interact_indices`, `rank`) -> a spec AST.

Pure order k becomes `<wk, x**k>`; interaction order k >= 2 becomes `cp(x, k)` with the
dict's rank; interaction order 1 is a linear term and folds into `<w1, x>`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from nscompile.errors import Span, SpecError
from nscompile.lang import syntax

_KEYS = ("pure_indices", "interact_indices", "rank")


def neuron_from_structure(
    structure: Mapping[str, Any], name: str = "td", comment: str | None = None
) -> syntax.Neuron:
    """A NeuronSeek structure dict -> one neuron declaration; raises SpecError when invalid."""
    unknown = sorted(set(structure) - set(_KEYS))
    if unknown:
        raise SpecError(
            "E501", f"unknown key(s) {unknown} in the structure", hint=f"known: {_KEYS}"
        )
    pure = _orders(structure, "pure_indices")
    interact = _orders(structure, "interact_indices")
    if 1 in interact:
        interact.discard(1)
        pure.add(1)
    if not pure and not interact:
        raise SpecError("E502", "the structure selects no term", hint="give at least one order")
    x = syntax.Name(syntax.INPUT_NAME)
    terms: list[syntax.Expr] = []
    for k in sorted(pure):
        terms.append(syntax.Inner(f"w{k}", x if k == 1 else syntax.Pow(x, float(k))))
    for k in sorted(interact):
        terms.append(syntax.Call(syntax.CP_NAME, (x, syntax.Number(float(k)))))
    terms.append(syntax.Name("b"))
    expr = terms[0]
    for term in terms[1:]:
        expr = syntax.BinOp("+", expr, term)
    body: list[syntax.NeuronStmt] = []
    if interact:
        body.append(syntax.Rank(_rank(structure)))
    body.append(syntax.Assign("y", expr))
    comments = syntax.Comments(leading=(f"# {comment}",)) if comment else syntax.NO_COMMENTS
    return syntax.Neuron(name, tuple(body), comments)


def network_for(
    neuron: str,
    input_width: int,
    hidden: Sequence[int],
    outputs: int,
    task: str,
    name: str = "net",
    activation: str = "relu",
) -> syntax.Network:
    """A network of `hidden` layers of `neuron`, then a plain linear head of `outputs` units."""
    body: list[syntax.NetworkStmt] = [syntax.Input(input_width)]
    body += [syntax.Dense(width, neuron, activation) for width in hidden]
    body.append(syntax.Dense(outputs))
    body.append(syntax.Task(task))
    return syntax.Network(name, tuple(body))


def load_structure(path: str, text: str) -> dict[str, Any]:
    """Parse a structure JSON file's text; raises SpecError with the position of a JSON error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        span = Span.point(path, error.lineno, error.colno)
        hint = "a tnlearn formula (0.5@x**2 + x)? pass --tnlearn" if "@" in text else None
        raise SpecError("E503", f"not valid JSON: {error.msg}", span, hint) from None
    if not isinstance(data, dict):
        raise SpecError("E503", "the structure must be a JSON object", Span.point(path, 1, 1))
    return data


def _orders(structure: Mapping[str, Any], key: str) -> set[int]:
    values = structure.get(key, [])
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise SpecError("E504", f"'{key}' must be a list of integers, got {values!r}")
    bad = [v for v in values if not 1 <= v <= syntax.MAX_ORDER]
    if bad:
        raise SpecError(
            "E505",
            f"'{key}' has order(s) {bad} outside 1..{syntax.MAX_ORDER}",
            hint="orders count from 1",
        )
    return set(values)


def _rank(structure: Mapping[str, Any]) -> int:
    rank = structure.get("rank", 8)
    if type(rank) is not int or not 1 <= rank <= syntax.MAX_RANK:
        raise SpecError("E506", f"'rank' must be an integer in 1..{syntax.MAX_RANK}, got {rank!r}")
    return rank
