"""Text to AST: the only module that imports lark.

`parse(text, file) -> Spec` runs the LALR parser over `grammar/ns.lark`, turns the tree into
`syntax` dataclasses with spans, and attaches the comments the lexer collected to the nearest
statement or declaration. Every lark error becomes one `SpecError`:

    E001  unexpected token or character    E002  unexpected end of file
    E003  unreadable source file           E004  a count that is not a whole number
    E005  an expression nested too deeply (every later stage recurses over the tree)
"""

from __future__ import annotations

import functools
import threading
from typing import TypeVar

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken, VisitError
from lark.lexer import PatternStr

from nscompile.errors import Span, SpecError
from nscompile.lang import syntax as s
from nscompile.lang.comments import attach_comments
from nscompile.resources import data_path

_D = TypeVar("_D", s.Neuron, s.Network)

#: Deepest nesting of the parse tree (a 100-term sum is 100 deep); keeps recursion in bounds.
MAX_DEPTH = 100
#: Longest integer literal we convert; Python refuses int() of more than 4300 digits.
MAX_DIGITS = 4000
#: Hints for characters the language does not use.
CHARACTER_HINTS = {
    '"': "the .ns language has no strings",
    "'": "the .ns language has no strings",
    ".": "names cannot contain '.'; decimals are written 0.5",
    "/": "there is no division: scale by a constant, e.g. 0.5 * <w, x>",
    "^": "powers are written x**2",
    ";": "statements need no ';': put each on its own line",
    "[": "group with parentheses ( )",
    "]": "group with parentheses ( )",
}
#: How regex terminals read in "expected one of: ..." hints.
TERMINAL_WORDS = {"NAME": "a name", "NUMBER": "a number", "$END": "end of file"}


_COMMENTS: list[Token] = []  # filled by the lexer callback during one parse
_LOCK = threading.Lock()  # the cached parser shares that list, so parses take turns


@functools.cache
def _parser() -> Lark:
    grammar = data_path("grammar", "ns.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
        lexer_callbacks={"COMMENT": _COMMENTS.append},
    )


def parse(text: str, file: str = "<string>") -> s.Spec:
    """Parse .ns source text.

    Args:
        text: the whole file.
        file: the name that spans report.

    Returns:
        The Spec with spans and comments; not yet checked (see `check.check`).

    Raises:
        SpecError: E001, E002 or E004, at the offending token.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # lark counts lines by "\n" only
    with _LOCK:
        _COMMENTS.clear()
        try:
            tree = _parser().parse(text)
        except lark.exceptions.LarkError as err:
            raise _syntax_error(err, text, file) from None
        comment_tokens = list(_COMMENTS)
    _check_depth(tree, file)
    to_ast = _ToAst(file)
    try:
        spec = to_ast.transform(tree)
    except VisitError as err:  # lark wraps what a transformer method raises
        if isinstance(err.orig_exc, SpecError):
            raise err.orig_exc from None
        raise
    return attach_comments(spec, to_ast.braces, comment_tokens)


def _check_depth(tree: lark.Tree, file: str) -> None:
    """Refuse trees deeper than MAX_DEPTH, walking them without recursion."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            hint = "split the sum into fewer terms or drop redundant parentheses"
            raise SpecError(
                "E005", f"nested more than {MAX_DEPTH} levels deep", _span(file, node.meta), hint
            )
        stack += [(child, depth + 1) for child in node.children if isinstance(child, lark.Tree)]


# --- lark errors to SpecError --------------------------------------------------------------


def _syntax_error(err: Exception, text: str, file: str) -> SpecError:
    if isinstance(err, UnexpectedToken) and err.token.type == "$END":
        return _end_of_file(err.token, set(err.accepts or err.expected), text, file)
    if isinstance(err, UnexpectedEOF):
        return _end_of_file(None, set(err.expected), text, file)
    if isinstance(err, UnexpectedToken):
        token = err.token
        span = Span(file, token.line, token.column, token.end_line, token.end_column)
        hint = _expected_hint(set(err.accepts or err.expected))
        return SpecError("E001", f"unexpected {_show(str(token))}", span, hint)
    if isinstance(err, UnexpectedCharacters):
        # No "expected" list: the lexer's set is a merged LALR lookahead, often misleading.
        char = err.char
        span = Span.point(file, err.line, err.column)
        hint = CHARACTER_HINTS.get(char, f"{char!r} is not part of the .ns language")
        return SpecError("E001", f"unexpected character {char!r}", span, hint)
    return SpecError("E001", f"syntax error: {err}", Span.point(file, 1, 1), None)


def _end_of_file(token: Token | None, expected: set[str], text: str, file: str) -> SpecError:
    """E002 just after the last token (or at the end of the text when there is none)."""
    if token is not None and token.end_line and token.end_column:
        span = Span.point(file, token.end_line, token.end_column)
    else:
        lines = text.split("\n")
        span = Span.point(file, len(lines), len(lines[-1]) + 1)
    hint = _expected_hint(expected)
    if "RBRACE" in expected:
        hint = f"is a closing '}}' missing? ({hint})"
    return SpecError("E002", "unexpected end of file", span, hint)


def _expected_hint(names: set[str]) -> str | None:
    """`{'RBRACE', 'PLUS'}` -> "expected one of: '+', '}'" (words for regex terminals last)."""
    patterns = {t.name: t.pattern for t in _parser().terminals}
    shown = []
    for name in names:
        pattern = patterns.get(name)
        if isinstance(pattern, PatternStr):
            shown.append((0, f"'{pattern.value}'"))
        else:
            shown.append((1, TERMINAL_WORDS.get(name, name.lower())))
    words = [word for _, word in sorted(set(shown))]
    if not words:
        return None
    return f"expected {words[0]}" if len(words) == 1 else f"expected one of: {', '.join(words)}"


def _show(token_text: str) -> str:
    short = token_text if len(token_text) <= 24 else token_text[:20] + "..."
    return repr(short)


# --- tree to AST ---------------------------------------------------------------------------


def _span(file: str, where) -> Span:
    """The span of a lark `Meta` or `Token` (both have 1-based, end-exclusive positions)."""
    return Span(file, where.line, where.column, where.end_line, where.end_column)


@v_args(meta=True, inline=True)
class _ToAst(Transformer):
    """Builds `syntax` nodes bottom-up; every node gets the span of its source text."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file
        #: The `{` and `}` tokens of each declaration, in source order, for comment placement.
        self.braces: list[tuple[Token, Token]] = []

    def _at(self, meta) -> Span:
        return _span(self.file, meta)

    def _count(self, token: Token) -> int:
        """A width, rank or class count: digits only, so `8.5` and `1e3` are refused here."""
        text, span = str(token), _span(self.file, token)
        if not text.isdigit():
            hint = "counts (ranks, widths, classes) are whole numbers like 8"
            raise SpecError("E004", f"expected a whole number, got {_show(text)}", span, hint)
        if len(text) > MAX_DIGITS:
            hint = "counts are at most a few million"
            raise SpecError("E004", f"the number has {len(text)} digits", span, hint)
        return int(text)

    # declarations
    def start(self, meta, *decls) -> s.Spec:
        return s.Spec(tuple(decls))

    def _decl(self, cls: type[_D], meta, name: Token, lbrace: Token, rest: tuple) -> _D:
        *body, rbrace = rest
        self.braces.append((lbrace, rbrace))
        return cls(str(name), tuple(body), span=self._at(meta), name_span=_span(self.file, name))

    def neuron(self, meta, name, lbrace, *rest) -> s.Neuron:
        return self._decl(s.Neuron, meta, name, lbrace, rest)

    def network(self, meta, name, lbrace, *rest) -> s.Network:
        return self._decl(s.Network, meta, name, lbrace, rest)

    # statements
    def rank(self, meta, count) -> s.Rank:
        return s.Rank(self._count(count), span=self._at(meta))

    def scalars(self, meta, *items) -> s.Scalars:
        return s.Scalars(tuple(items), span=self._at(meta))

    def scalar_item(self, meta, name, value=None) -> s.ScalarItem:
        init = float(value) if value is not None else None
        return s.ScalarItem(str(name), init, span=self._at(meta))

    def scalar_negative(self, meta, name, value) -> s.ScalarItem:
        return s.ScalarItem(str(name), -float(value), span=self._at(meta))

    def assign(self, meta, target, expr) -> s.Assign:
        return s.Assign(str(target), expr, span=self._at(meta))

    def input(self, meta, width) -> s.Input:
        return s.Input(self._count(width), span=self._at(meta))

    def input_image(self, meta, channels, height, width) -> s.ImageInput:
        sizes = (self._count(channels), self._count(height), self._count(width))
        return s.ImageInput(*sizes, span=self._at(meta))

    def conv(self, meta, width, *options) -> s.Conv:
        return s.Conv(self._count(width), options, span=self._at(meta))

    def maxpool(self, meta, kernel, *options) -> s.Pool:
        return s.Pool("max", self._count(kernel), options, span=self._at(meta))

    def avgpool(self, meta, kernel, *options) -> s.Pool:
        return s.Pool("avg", self._count(kernel), options, span=self._at(meta))

    def globalpool(self, meta) -> s.GlobalPool:
        return s.GlobalPool(span=self._at(meta))

    def flatten(self, meta) -> s.Flatten:
        return s.Flatten(span=self._at(meta))

    def block(self, meta, width, *options) -> s.Block:
        return s.Block(self._count(width), options, span=self._at(meta))

    def word(self, meta, name) -> s.Option:
        return s.Option(str(name), span=self._at(meta))

    def setting(self, meta, key, value) -> s.Option:
        parsed = str(value) if value.type == "NAME" else self._count(value)
        return s.Option(str(key), parsed, span=self._at(meta))

    def dense(self, meta, width) -> s.Dense:
        return s.Dense(self._count(width), span=self._at(meta))

    def dense_one(self, meta, width, name) -> s.Dense:
        # One name is the activation when it is one, else the neuron.
        if str(name) in s.ACTIVATIONS:
            return s.Dense(self._count(width), activation=str(name), span=self._at(meta))
        return s.Dense(self._count(width), neuron=str(name), span=self._at(meta))

    def dense_two(self, meta, width, neuron, activation) -> s.Dense:
        return s.Dense(self._count(width), str(neuron), str(activation), span=self._at(meta))

    def task(self, meta, kind) -> s.Task:
        return s.Task(str(kind), span=self._at(meta))

    def task_count(self, meta, kind, classes) -> s.Task:
        return s.Task(str(kind), self._count(classes), span=self._at(meta))

    # expressions
    def add(self, meta, left, right) -> s.BinOp:
        return s.BinOp("+", left, right, span=self._at(meta))

    def sub(self, meta, left, right) -> s.BinOp:
        return s.BinOp("-", left, right, span=self._at(meta))

    def mul(self, meta, left, right) -> s.BinOp:
        return s.BinOp("*", left, right, span=self._at(meta))

    def neg(self, meta, operand) -> s.Neg:
        return s.Neg(operand, span=self._at(meta))

    def pow(self, meta, base, exponent) -> s.Pow:
        return s.Pow(base, exponent, span=self._at(meta))

    def exponent(self, meta, number) -> float:
        return float(number)

    def neg_exponent(self, meta, number) -> float:
        return -float(number)

    def number(self, meta, number) -> s.Number:
        return s.Number(float(number), span=self._at(meta))

    def name(self, meta, name) -> s.Name:
        return s.Name(str(name), span=self._at(meta))

    def call(self, meta, func, *args) -> s.Call | s.Inner:
        # `quad(e, W)` and `sqdist(e, c)` with a weight's name second are learnable forms; any
        # other shape stays a call, for the checker to refuse with a hint.
        if str(func) in s.FORMS and len(args) == 2 and isinstance(args[1], s.Name):
            return s.Inner(args[1].name, args[0], span=self._at(meta), form=str(func))
        return s.Call(str(func), tuple(args), span=self._at(meta))

    def inner(self, meta, weight, arg) -> s.Inner:
        return s.Inner(str(weight), arg, span=self._at(meta))

    def group(self, meta, expr):
        return expr
