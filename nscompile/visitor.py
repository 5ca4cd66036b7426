"""One dispatch for every walker of a tree: a node -> the handler of its class, or of a base.

As SymPy's `Printer._print`: a visitor handles class `C` with its method `_visit_C`, and a node
goes to the first class along `type(node).__mro__` that has one, so a subclass is handled like
its base unless the visitor says otherwise. A node that no handler covers raises
`InternalError` naming its class and the visitor: a new node type fails here, in one place,
and `handles` lets a test ask each visitor about every node type before any input does.

The AST walkers of `lang/` and the IR walkers of `compiler/` (SymPy expressions) share it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from nscompile.errors import InternalError

#: Handler methods are named PREFIX + the class's `__name__`, e.g. `_visit_MatMul`.
PREFIX = "_visit_"


class Visitor:
    """Base of every tree walker; subclasses define `_visit_<ClassName>(self, node, ...)`."""

    def visit(self, node: Any, *args: Any) -> Any:
        """node (and any extra arguments for its handler) -> what the handler returns.

        Raises:
            InternalError: no class in `type(node).__mro__` has a handler here.
        """
        handler = _handler(type(self), type(node))
        if handler is None:
            raise InternalError(
                f"{type(self).__name__} has no handler for {type(node).__name__}: {node}"
            )
        return handler(self, node, *args)

    @classmethod
    def handles(cls, node_class: type) -> bool:
        """Whether some class along `node_class.__mro__` has a handler in this visitor."""
        return _handler(cls, node_class) is not None


@cache
def _handler(visitor: type, node_class: type) -> Callable[..., Any] | None:
    """The handler of the first class along the node's MRO; cached, as classes do not change."""
    for klass in node_class.__mro__:
        handler = getattr(visitor, PREFIX + klass.__name__, None)
        if handler is not None:
            return handler
    return None
