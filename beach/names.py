"""One table of names: every public method of the public classes has its seed name (camelCase, as
the original's ``addActor``) and its PEP 8 name (``add_actor``), the same method.

The table is `twins`: a camelCase name's PEP 8 twin is its words in lower case joined by ``_``, a
PEP 8 name's is the reverse, and `EXCEPTIONS` lists where a twin says more than the rule would.
`twinned` gives a class the twins its own methods lack; mypy sees them through `beach.mypy_plugin`
(``plugins = ["beach.mypy_plugin"]`` in a project's mypy config, as in beach's own).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

C = TypeVar("C", bound=type)

EXCEPTIONS: dict[str, tuple[str, ...]] = {
    # the original's logCritical logs at ERROR: its PEP 8 name says so (log_critical: earlier releases')
    "logCritical": ("log_error", "log_critical"),
}


_GROUPS = {name: (seed, *others) for seed, others in EXCEPTIONS.items() for name in (seed, *others)}


def twins(name: str) -> tuple[str, ...]:
    """The other names of method ``name`` (none for a one-word name: it is both already)."""
    if name in _GROUPS:
        return tuple(n for n in _GROUPS[name] if n != name)
    if name.startswith("_"):
        return ()
    if "_" in name:
        head, *rest = name.split("_")
        return (head + "".join(word.capitalize() for word in rest),)
    pep8 = re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), name)
    return (pep8,) if pep8 != name else ()


def named(value: Any) -> bool:
    """True for what gets twins: a method, a property, a slot (not a plain class attribute)."""
    return callable(value) or isinstance(value, (property, classmethod, staticmethod)) or \
        type(value).__name__ == "member_descriptor"


def twinned(cls: C) -> C:
    """Give ``cls`` the twins of its own public methods (see `twins`) it does not define itself."""
    for name, value in list(vars(cls).items()):
        if named(value) and not isinstance(value, type):
            for twin in twins(name):
                if twin not in vars(cls):
                    setattr(cls, twin, value)
    return cls
