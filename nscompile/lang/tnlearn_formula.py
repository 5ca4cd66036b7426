"""tnlearn's legacy formula strings (`0.5@x**2 + 1.2@sin(x) + x`) -> a neuron declaration.

tnlearn's symbolic regression (`VecSymRegressor`, `RLRegressor`) writes a discovered neuron as
a sum of terms `c@phi(x)`: a coefficient, `@`, and a basis function of the input. What such a
string means *as a neuron* is defined by the layers that build a network from it, tnlearn's
`CustomNeuronLayer` (tnlearn/neurons.py, the same rule from its first release, commit 0b54d2f,
`xdata`, to the current `_extract_var_exprs`: "extract every variable expression after '@'
(the coefficient is discarded)"), `TNLinear._parse_expression` (tnlearn/modules/TNlinear.py)
and `TNConv` (tnlearn/modules/TNconv.py): the string is split into its top-level `+`/`-`
terms and the sign stripped; of a term with `@` only the part after the first `@` is kept, a
term without `@` that contains `x` is kept whole (coefficient 1), a term without `x` (a
constant) is dropped; each kept term `phi` gets its own learnable out x in weight matrix, and
the layer adds one learnable bias. The coefficients are what the regression fitted with one
scalar per term shared by every feature (`c@x` is c * sum_j x_j in `VecSymRegressor.evaluate`);
the neuron learns a weight per unit and feature in their place.

So `c@phi` imports as `<wk, phi>`, the learnable weight of its term, not as a fixed scalar
`c * <wk, phi>`: the coefficient, its sign and constant terms are dropped, as tnlearn drops
them, and the neuron ends with the bias `b`. `0.5@x**2 + 1.2@sin(x) + x - 3` is
`y = <w1, x**2> + <w2, sin(x)> + <w3, x> + b`.

The basis functions are read with nscompile's meaning: `x`, numbers, `+ - * /` (division by a
number), `**` with a whole exponent, parentheses, and the elementwise functions, bare or with
the prefixes tnlearn's strings use (`torch.sin`, `np.exp`, `math.cos`, `F.softplus`);
`torch.log(torch.abs(x) + 1e-8)`, RLRegressor's log basis, is `log(abs(x) + 1e-8)`, which
`log`'s floor (ops.FLOOR) leaves exact. (TNLinear evaluates a bare `sin(x)` in a namespace
without `sin` and silently falls back to the identity; here it is the sine the string says.)
Anything else is a SpecError at its place in the string, with a hint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from nscompile.errors import Span, SpecError, did_you_mean
from nscompile.lang import syntax
from nscompile.lang.unparse import unparse_expr

#: Deepest nesting of parentheses, calls and signs in one term.
MAX_DEPTH = 30
#: Module prefixes tnlearn's strings put before a function (they are `eval`ed there).
PREFIXES = ("torch.nn.functional.", "nn.functional.", "torch.", "numpy.", "np.", "math.", "F.")

_TOKEN = re.compile(
    r"(?P<ws>[ \t\r\n]+)"
    r"|(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op>\*\*|[-+*/@(),])"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # number, name, op, end
    text: str
    span: Span


def neuron_from_tnlearn(
    text: str,
    path: str = "<formula>",
    name: str = "tn",
    comment: str | None = None,
    check: Callable[[str, str], object] | None = None,
) -> syntax.Neuron:
    """A tnlearn formula string -> one neuron declaration (see the module docstring).

    `path` names the source in error spans (lines and columns count in `text`). `check`, given
    a spec's text and file name, raises SpecError for a spec that does not compile (the CLI
    passes `pipeline.front_end`, which this layer may not import): each term is checked alone
    as `<w, phi> + b`, and its error reported at the term in the string. Raises SpecError for
    anything tnlearn's notation does not say or, with `check`, nscompile cannot compile.
    """
    terms = _Parser(_tokens(text, path)).formula()
    if not terms:
        raise SpecError(
            "E514",
            "the formula has no term in x",
            Span.point(path, 1, 1),
            "tnlearn's neuron keeps the terms that contain x, e.g. '0.5@x**2 + x'",
        )
    if check is not None:
        for arg, span in terms:
            term_text = f"neuron t {{\n    y = <w, {unparse_expr(arg)}> + b\n}}\n"
            try:
                check(term_text, "<term>")
            except SpecError as error:
                raise SpecError(error.code, error.message, span, error.hint) from None
    expr: syntax.Expr = syntax.Inner("w1", terms[0][0])
    for k, (arg, _) in enumerate(terms[1:], start=2):
        expr = syntax.BinOp("+", expr, syntax.Inner(f"w{k}", arg))
    expr = syntax.BinOp("+", expr, syntax.Name(syntax.BIAS_NAMES[0]))
    comments = syntax.Comments(leading=(f"# {comment}",)) if comment else syntax.NO_COMMENTS
    return syntax.Neuron(name, (syntax.Assign("y", expr),), comments)


def _tokens(text: str, path: str) -> list[_Token]:
    tokens: list[_Token] = []
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        col = pos - line_start + 1
        if match is None:
            span = Span.point(path, line, col)
            hint = "tnlearn's formulas are terms like 0.5@x**2 joined by + and -"
            if text[pos] in "'\"":
                hint = "write the formula itself, without quotes: 0.5@x**2 + x"
            raise SpecError(
                "E510", f"unexpected character {text[pos]!r} in the formula", span, hint
            )
        kind = match.lastgroup or ""
        if kind == "ws":
            newlines = match.group().count("\n")
            if newlines:
                line += newlines
                line_start = match.start() + match.group().rindex("\n") + 1
        else:
            span = Span(path, line, col, line, col + len(match.group()))
            tokens.append(_Token(kind, match.group(), span))
        pos = match.end()
    tokens.append(_Token("end", "", Span.point(path, line, pos - line_start + 1)))
    return tokens


def _join(first: Span, last: Span) -> Span:
    return Span(first.file, first.line, first.col, last.end_line, last.end_col)


class _Parser:
    """Recursive descent over the tokens; each method returns AST nodes with spans."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def nest(self, opening: _Token) -> None:
        """Enter a parenthesis, a call or a unary sign: refuse what would exhaust the stack."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SpecError(
                "E517",
                f"the formula is nested more than {MAX_DEPTH} levels deep",
                opening.span,
                "write the basis function without so many parentheses or signs",
            )

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at(self, *ops: str) -> bool:
        return self.token.kind == "op" and self.token.text in ops

    def expect(self, op: str, what: str) -> _Token:
        if not self.at(op):
            raise self.unexpected(what)
        return self.take()

    def unexpected(self, what: str) -> SpecError:
        token = self.token
        found = "the end of the formula" if token.kind == "end" else f"'{token.text}'"
        return SpecError(
            "E510",
            f"expected {what}, found {found}",
            token.span,
            "tnlearn's formulas are terms like 0.5@x**2 joined by + and -",
        )

    # --- the formula: signed top-level terms ---------------------------------------------

    def formula(self) -> list[tuple[syntax.Expr, Span]]:
        """The kept terms, as (basis function, its span in the string)."""
        kept: list[tuple[syntax.Expr, Span]] = []
        if self.token.kind == "end":
            return kept
        while True:
            term = self.term()
            if term is not None:
                kept.append(term)
            if self.token.kind == "end":
                return kept
            if not self.at("+", "-"):
                raise self.unexpected("'+', '-' or the end of the formula")
            self.take()

    def term(self) -> tuple[syntax.Expr, Span] | None:
        """`c@phi` or `phi`: the basis function phi, or None for a constant term."""
        while self.at("+", "-"):  # `+ -0.5@x`: the sign is dropped with the coefficient
            self.take()
        coefficient = self.token.kind == "number" and self.tokens[self.pos + 1].text == "@"
        if coefficient:
            self.take()
            self.take()
        elif self.token.kind != "end" and self.tokens[self.pos + 1].text == "@":
            bad = self.token
            raise SpecError(
                "E512",
                f"the coefficient before '@' must be a number, found '{bad.text}'",
                bad.span,
                "tnlearn writes a term as COEFFICIENT@BASIS, e.g. 0.5@x**2",
            )
        first = self.token
        expr = self.product()
        last = self.tokens[self.pos - 1]
        if self.at("@"):
            raise SpecError(
                "E515",
                "a second '@' in one term",
                self.token.span,
                "a term is one coefficient, '@' and a basis function: write products with *",
            )
        if not _has_input(expr):
            if not coefficient:
                return None  # a constant: tnlearn drops it, the neuron's bias stands for it
            raise SpecError(
                "E514",
                "the term after '@' does not contain x",
                _join(first.span, last.span),
                "a basis function is a function of x, e.g. 0.5@x**2 or 1.2@sin(x)",
            )
        return expr, _join(first.span, last.span)

    # --- a basis function ----------------------------------------------------------------

    def sum(self) -> syntax.Expr:
        expr = self.product()
        while self.at("+", "-"):
            op = self.take().text
            expr = syntax.BinOp(op, expr, self.product())
        return expr

    def product(self) -> syntax.Expr:
        expr = self.unary()
        while self.at("*", "/"):
            op = self.take()
            right = self.unary()
            if op.text == "/":
                right = self._reciprocal(right, op)
            expr = syntax.BinOp("*", expr, right)
        return expr

    def _reciprocal(self, divisor: syntax.Expr, op: _Token) -> syntax.Number:
        if not isinstance(divisor, syntax.Number) or divisor.value == 0:
            raise SpecError(
                "E516",
                "a division by something other than a non-zero number",
                op.span,
                "divide by a constant only (x**2/2); a neuron has no division by x",
            )
        return syntax.Number(1.0 / divisor.value)

    def unary(self) -> syntax.Expr:
        if self.at("-", "+"):
            sign = self.take()
            self.nest(sign)
            operand = self.unary()
            self.depth -= 1
            return syntax.Neg(operand) if sign.text == "-" else operand
        return self.power()

    def power(self) -> syntax.Expr:
        base = self.atom()
        if not self.at("**"):
            return base
        self.take()
        token = self.token
        if token.kind != "number":
            raise self.unexpected("a whole exponent after '**'")
        self.take()
        value = float(token.text)
        if value != int(value) or not 1 <= value <= syntax.MAX_ORDER:
            raise SpecError(
                "E513",
                f"the exponent must be a whole number from 1 to {syntax.MAX_ORDER}, "
                f"got {token.text}",
                token.span,
                "powers of the input are x**2 ... x**9; for a root write sqrt(x)",
            )
        return base if value == 1 else syntax.Pow(base, float(int(value)))

    def atom(self) -> syntax.Expr:
        token = self.token
        if token.kind == "number":
            self.take()
            return syntax.Number(float(token.text), token.span)
        if self.at("("):
            self.nest(self.take())
            expr = self.sum()
            self.depth -= 1
            self.expect(")", "')'")
            return expr
        if token.kind == "name":
            self.take()
            if token.text == syntax.INPUT_NAME:
                return syntax.Name(syntax.INPUT_NAME, token.span)
            if self.at("("):
                return self.call(token)
            hint = "the input is x; functions are called, e.g. sin(x)"
            raise SpecError("E511", f"unknown name '{token.text}'", token.span, hint)
        raise self.unexpected("x, a number, a function or '('")

    def call(self, name: _Token) -> syntax.Expr:
        func = name.text
        for prefix in PREFIXES:
            if func.startswith(prefix):
                func = func[len(prefix) :]
                break
        if func not in syntax.ELEMENTWISE:
            hint = did_you_mean(func, syntax.ELEMENTWISE) or (
                f"functions are {', '.join(syntax.ELEMENTWISE)}"
            )
            raise SpecError("E511", f"unknown function '{name.text}'", name.span, hint)
        self.expect("(", "'('")
        self.nest(name)
        arg = self.sum()
        self.depth -= 1
        if self.at(","):
            raise SpecError("E511", f"{func} takes 1 argument", self.token.span, f"write {func}(x)")
        close = self.expect(")", "')'")
        return syntax.Call(func, (arg,), _join(name.span, close.span))


def _has_input(expr: syntax.Expr) -> bool:
    if isinstance(expr, syntax.Name):
        return expr.name == syntax.INPUT_NAME
    return any(_has_input(child) for child in syntax.children(expr))
