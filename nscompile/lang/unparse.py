"""AST to canonical .ns text: what `nscompile fmt` prints and what the search writes.

The layout is fixed (4-space indent, one statement per line, one blank line between
declarations) and parentheses are the fewest that keep the tree, so `parse(unparse(spec)) ==
spec` and unparsing is a fixed point of `fmt`. Every comment is printed: whole-line comments
above their node, trailing ones two spaces after the code, a block's closing comments above
its `}`, the file's trailing comments at the end.
"""

from __future__ import annotations

from collections.abc import Callable

from nscompile.lang import syntax as s

INDENT = "    "

# Binding strength, loosest first: the grammar's ladder sum < product < unary < power < atom.
SUM, PRODUCT, UNARY, POWER, ATOM = range(1, 6)
BINARY_PRECEDENCE = {"+": SUM, "-": SUM, "*": PRODUCT}


def unparse(spec: s.Spec) -> str:
    """Spec -> canonical source text ending in exactly one newline ("" for an empty spec)."""
    blocks = ["\n".join(_decl_lines(decl)) for decl in spec.decls]
    if spec.trailing:
        blocks.append("\n".join(spec.trailing))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def unparse_expr(expr: s.Expr) -> str:
    """Expression -> canonical text, e.g. `<w1, x> + <w2, x**2> + b`."""
    text, _ = _expr(expr)
    return text


# --- declarations and statements -----------------------------------------------------------


def _decl_lines(decl: s.Decl) -> list[str]:
    keyword = "neuron" if isinstance(decl, s.Neuron) else "network"
    lines = _with_comments(f"{keyword} {decl.name} {{", decl.comments, "")
    for stmt in decl.body:
        lines += _with_comments(STATEMENTS[type(stmt)](stmt), stmt.comments, INDENT)
    lines += [INDENT + comment for comment in decl.closing]
    lines.append("}")
    return lines


def _with_comments(code: str, comments: s.Comments, indent: str) -> list[str]:
    lines = [indent + comment for comment in comments.leading]
    trailing = f"  {comments.trailing}" if comments.trailing else ""
    return lines + [indent + code + trailing]


def _dense(stmt: s.Dense) -> str:
    words = ["dense", str(stmt.width), stmt.neuron, stmt.activation]
    return " ".join(word for word in words if word is not None)


def _task(stmt: s.Task) -> str:
    return f"task {stmt.kind}" if stmt.classes is None else f"task {stmt.kind} {stmt.classes}"


STATEMENTS: dict[type, Callable] = {
    s.Rank: lambda stmt: f"rank {stmt.rank}",
    s.Assign: lambda stmt: f"{stmt.target} = {unparse_expr(stmt.expr)}",
    s.Input: lambda stmt: f"input {stmt.width}",
    s.Dense: _dense,
    s.Task: _task,
}

# --- expressions ---------------------------------------------------------------------------


def format_number(value: float) -> str:
    """`2.0` -> `2`, `0.5` -> `0.5`, `1e-05` -> `1e-05` (Python's shortest round-trip form)."""
    value = float(value)  # an int from a hand-built AST prints the same
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _expr(expr: s.Expr) -> tuple[str, int]:
    """Expression -> (text, precedence of its outermost construct)."""
    return EXPRESSIONS[type(expr)](expr)


def _operand(expr: s.Expr, needed: int) -> str:
    """Text of a subexpression, parenthesised when it binds looser than its position needs."""
    text, precedence = _expr(expr)
    return f"({text})" if precedence < needed else text


def _binop(expr: s.BinOp) -> tuple[str, int]:
    # Left-associative: the left operand may have the same precedence, the right one not.
    precedence = BINARY_PRECEDENCE[expr.op]
    left = _operand(expr.left, precedence)
    right = _operand(expr.right, precedence + 1)
    return f"{left} {expr.op} {right}", precedence


def _number(expr: s.Number) -> tuple[str, int]:
    # The parser only makes non-negative literals; a negative one prints like a unary minus.
    return format_number(expr.value), ATOM if expr.value >= 0 else UNARY


def _call(expr: s.Call) -> tuple[str, int]:
    return f"{expr.func}({', '.join(unparse_expr(arg) for arg in expr.args)})", ATOM


EXPRESSIONS: dict[type, Callable[..., tuple[str, int]]] = {
    s.Number: _number,
    s.Name: lambda expr: (expr.name, ATOM),
    s.Inner: lambda expr: (f"<{expr.weight}, {unparse_expr(expr.arg)}>", ATOM),
    s.Call: _call,
    s.BinOp: _binop,
    s.Neg: lambda expr: (f"-{_operand(expr.operand, UNARY)}", UNARY),
    s.Pow: lambda expr: (f"{_operand(expr.base, ATOM)}**{format_number(expr.exponent)}", POWER),
}
