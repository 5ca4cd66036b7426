"""AST to canonical .ns text: what `nscompile fmt` prints and what the search writes.

The layout is fixed (4-space indent, one statement per line, one blank line between
declarations) and parentheses are the fewest that keep the tree, so `parse(unparse(spec)) ==
spec` and unparsing is a fixed point of `fmt`. Every comment is printed: whole-line comments
above their node, trailing ones two spaces after the code, a block's closing comments above
its `}`, the file's trailing comments at the end.
"""

from __future__ import annotations

from nscompile.lang import syntax as s
from nscompile.lang.precedence import ATOM, BINARY, POWER, UNARY
from nscompile.visitor import Visitor

INDENT = "    "


def unparse(spec: s.Spec) -> str:
    """Spec -> canonical source text ending in exactly one newline ("" for an empty spec)."""
    blocks = ["\n".join(_decl_lines(decl)) for decl in spec.decls]
    if spec.trailing:
        blocks.append("\n".join(spec.trailing))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def unparse_expr(expr: s.Expr) -> str:
    """Expression -> canonical text, e.g. `<w1, x> + <w2, x**2> + b`."""
    text, _ = _EXPRESSIONS.visit(expr)
    return text


# --- declarations and statements -----------------------------------------------------------


def _decl_lines(decl: s.Decl) -> list[str]:
    keyword = "neuron" if isinstance(decl, s.Neuron) else "network"
    lines = _with_comments(f"{keyword} {decl.name} {{", decl.comments, "")
    for stmt in decl.body:
        lines += _with_comments(_STATEMENTS.visit(stmt), stmt.comments, INDENT)
    lines += [INDENT + comment for comment in decl.closing]
    lines.append("}")
    return lines


def _with_comments(code: str, comments: s.Comments, indent: str) -> list[str]:
    lines = [indent + comment for comment in comments.leading]
    trailing = f"  {comments.trailing}" if comments.trailing else ""
    return lines + [indent + code + trailing]


class _Statements(Visitor):
    """Statement -> its line of code, without comments or indent."""

    def _visit_Rank(self, stmt: s.Rank) -> str:
        return f"rank {stmt.rank}"

    def _visit_Scalars(self, stmt: s.Scalars) -> str:
        items = [
            item.name if item.init is None else f"{item.name} = {format_number(item.init)}"
            for item in stmt.items
        ]
        return "scalar " + ", ".join(items)

    def _visit_Assign(self, stmt: s.Assign) -> str:
        return f"{stmt.target} = {unparse_expr(stmt.expr)}"

    def _visit_Input(self, stmt: s.Input) -> str:
        return f"input {stmt.width}"

    def _visit_ImageInput(self, stmt: s.ImageInput) -> str:
        return f"input {stmt.channels} x {stmt.height} x {stmt.width}"

    def _visit_Conv(self, stmt: s.Conv) -> str:
        return _with_options(f"conv {stmt.width}", stmt.options)

    def _visit_Pool(self, stmt: s.Pool) -> str:
        return _with_options(f"{stmt.kind}pool {stmt.kernel}", stmt.options)

    def _visit_GlobalPool(self, stmt: s.GlobalPool) -> str:
        return "globalpool"

    def _visit_Flatten(self, stmt: s.Flatten) -> str:
        return "flatten"

    def _visit_Block(self, stmt: s.Block) -> str:
        return _with_options(f"block {stmt.width}", stmt.options)

    def _visit_Dense(self, stmt: s.Dense) -> str:
        words = ["dense", str(stmt.width), stmt.neuron, stmt.activation]
        return " ".join(word for word in words if word is not None)

    def _visit_Task(self, stmt: s.Task) -> str:
        return f"task {stmt.kind}" if stmt.classes is None else f"task {stmt.kind} {stmt.classes}"


_STATEMENTS = _Statements()


def _with_options(head: str, options: tuple[s.Option, ...]) -> str:
    words = [o.key if o.value is None else f"{o.key}={o.value}" for o in options]
    return " ".join([head, *words])


# --- expressions ---------------------------------------------------------------------------


def format_number(value: float) -> str:
    """`2.0` -> `2`, `0.5` -> `0.5`, `1e-05` -> `1e-05` (Python's shortest round-trip form)."""
    value = float(value)  # an int from a hand-built AST prints the same
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


class _Expressions(Visitor):
    """Expression -> (text, precedence of its outermost construct), with the fewest parentheses."""

    def operand(self, expr: s.Expr, needed: int) -> str:
        """Text of a subexpression, parenthesised when it binds looser than its position needs."""
        text, precedence = self.visit(expr)
        return f"({text})" if precedence < needed else text

    def _visit_Number(self, expr: s.Number) -> tuple[str, int]:
        # The parser only makes non-negative literals; a negative one prints like a unary minus.
        return format_number(expr.value), ATOM if expr.value >= 0 else UNARY

    def _visit_Name(self, expr: s.Name) -> tuple[str, int]:
        return expr.name, ATOM

    def _visit_Inner(self, expr: s.Inner) -> tuple[str, int]:
        if expr.form != s.INNER:
            return f"{expr.form}({unparse_expr(expr.arg)}, {expr.weight})", ATOM
        return f"<{expr.weight}, {unparse_expr(expr.arg)}>", ATOM

    def _visit_Call(self, expr: s.Call) -> tuple[str, int]:
        return f"{expr.func}({', '.join(unparse_expr(arg) for arg in expr.args)})", ATOM

    def _visit_BinOp(self, expr: s.BinOp) -> tuple[str, int]:
        # Left-associative: the left operand may have the same precedence, the right one not.
        precedence = BINARY[expr.op]
        left = self.operand(expr.left, precedence)
        right = self.operand(expr.right, precedence + 1)
        return f"{left} {expr.op} {right}", precedence

    def _visit_Neg(self, expr: s.Neg) -> tuple[str, int]:
        return f"-{self.operand(expr.operand, UNARY)}", UNARY

    def _visit_Pow(self, expr: s.Pow) -> tuple[str, int]:
        return f"{self.operand(expr.base, ATOM)}**{format_number(expr.exponent)}", POWER


_EXPRESSIONS = _Expressions()
