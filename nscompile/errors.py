"""User-facing errors with source positions, and the internal-error type.

A `SpecError` is a problem with the user's input; the CLI renders it as

    file:line:col: error[E###]: message
       |
     3 |     y = <w1, x> + foo(x)
       |                   ^^^
       = help: did you mean 'exp'?

and exits 1. An `InternalError` is a bug in nscompile itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns count from 1, `end_col` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def point(file: str, line: int, col: int) -> Span:
        return Span(file, line, col, line, col + 1)


class SpecError(Exception):
    """A problem with the user's spec or data, reported at a span."""

    def __init__(
        self,
        code: str,
        message: str,
        span: Span | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.span = span
        self.hint = hint

    def render(self, source: str | None = None) -> str:
        """Return the error as compiler-style text, with the source line when given."""
        span = self.span
        where = f"{span.file}:{span.line}:{span.col}: " if span else ""
        lines = [f"{where}error[{self.code}]: {self.message}"]
        if span is not None and source is not None:
            source_lines = source.splitlines()
            if 1 <= span.line <= len(source_lines):
                text = source_lines[span.line - 1].expandtabs(1)
                gutter = " " * len(str(span.line))
                end = span.end_col if span.end_line == span.line else len(text) + 1
                width = max(1, end - span.col)
                lines.append(f"{gutter} |")
                lines.append(f"{span.line} | {text}")
                lines.append(f"{gutter} | {' ' * (span.col - 1)}{'^' * width}")
        if self.hint:
            pad = " " * len(str(span.line)) if span is not None and source is not None else ""
            lines.append(f"{pad} = help: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class InternalError(Exception):
    """A bug in nscompile: an invariant of a stage does not hold."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """Return a "did you mean 'x'?" hint for the closest candidate, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class InputError(Exception):
    """A problem with the user's input that is not spec text: weights, data, model files.

    The CLI prints `error: message` (and the hint) and exits 1.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"error: {self.message}" + (f"\n = help: {self.hint}" if self.hint else "")
