"""Comments the lexer collected, attached to the nearest statement or declaration of the AST.

The positions are lark tokens' (`line`, `column`, `end_line`, `end_column`) or `Span`s'; this
module reads those attributes only, so that lark stays the parser's alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nscompile.errors import Span
from nscompile.lang import syntax as s

# Anchors are the places a comment can belong to, in source order: each declaration's header
# (from `neuron` to `{`), each statement, each closing `}`. A comment at the end of an anchor's
# last line trails it; a comment inside an anchor, or before one, leads it; a comment before
# or just after a `}` closes that block; the rest trail the file.

Position = tuple[int, int]
Anchor = tuple[Position, Position, tuple[int, ...]]  # start, end, (decl,) or (decl, stmt)


def _start(where: Any) -> Position:
    """Where a `Span` or a lark `Any` starts."""
    return (where.line, where.col if isinstance(where, Span) else where.column)


def _end(where: Any) -> Position:
    """Where a `Span` or a lark `Any` ends (exclusive)."""
    return (where.end_line, where.end_col if isinstance(where, Span) else where.end_column)


def _anchors(spec: s.Spec, braces: list[tuple[Any, Any]]) -> list[Anchor]:
    anchors: list[Anchor] = []
    for i, (decl, (lbrace, rbrace)) in enumerate(zip(spec.decls, braces, strict=True)):
        anchors.append((_start(decl.span), _end(lbrace), (i,)))
        anchors += [(_start(st.span), _end(st.span), (i, j)) for j, st in enumerate(decl.body)]
        anchors.append((_start(rbrace), _end(rbrace), (i, -1)))
    return anchors


def _place(anchors: list[Anchor], at: Position) -> tuple[str, tuple[int, ...]]:
    """Where a comment at `at` goes: ("trailing" | "leading", anchor key), or ("file", ())."""
    ending_here = [a for a in anchors if a[1][0] == at[0] and a[1] <= at]
    if ending_here:
        return "trailing", ending_here[-1][2]
    for start, end, key in anchors:
        if start < at < end or at < start:
            return "leading", key
    return "file", ()


def attach_comments(spec: s.Spec, braces: list[tuple[Any, Any]], tokens: list[Any]) -> s.Spec:
    anchors = _anchors(spec, braces)
    leading: dict[tuple[int, ...], list[str]] = {}
    trailing: dict[tuple[int, ...], str] = {}
    file_trailing: list[str] = []
    for token in tokens:
        text = str(token).rstrip()
        where, key = _place(anchors, _start(token))
        if where == "file":
            file_trailing.append(text)
        elif where == "trailing" and key[-1] != -1:  # a `}` keeps its comments above it
            trailing[key] = text
        else:
            leading.setdefault(key, []).append(text)

    def comments(key: tuple[int, ...]) -> s.Comments:
        return s.Comments(tuple(leading.get(key, ())), trailing.get(key))

    decls = []
    for i, decl in enumerate(spec.decls):
        body = tuple(replace(st, comments=comments((i, j))) for j, st in enumerate(decl.body))
        closing = tuple(leading.get((i, -1), ()))
        decls.append(replace(decl, body=body, comments=comments((i,)), closing=closing))  # type: ignore[arg-type]
    return s.Spec(tuple(decls), tuple(file_trailing))
