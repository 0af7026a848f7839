"""mypy sees the twins `beach.names.twinned` gives a class (``plugins = ["beach.mypy_plugin"]``):
the same method, with its signature, under its other name. Only mypy imports this module."""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import MDEF, Decorator, FuncDef, OverloadedFuncDef, SymbolTableNode, Var
from mypy.plugin import ClassDefContext, Plugin

from beach.names import twins

TWINNED = "beach.names.twinned"


def _add_twins(ctx: ClassDefContext) -> None:
    info = ctx.cls.info
    for name, symbol in list(info.names.items()):
        node = symbol.node
        method = isinstance(node, (FuncDef, Decorator, OverloadedFuncDef))
        assigned = isinstance(node, Var) and (node.is_inferred or name in (info.slots or ()))
        if method or assigned:
            for twin in twins(name):
                if twin not in info.names:
                    info.names[twin] = SymbolTableNode(MDEF, node, plugin_generated=True)


class Twins(Plugin):
    """Adds the twins of a `twinned` class."""

    def get_class_decorator_hook(self, fullname: str) -> Callable[[ClassDefContext], None] | None:
        """The hook of ``@twinned``."""
        return _add_twins if fullname == TWINNED else None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return Twins
