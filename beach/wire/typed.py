"""Typed values: a msgspec type is the one definition of a record, a message, a config section; a
value is decoded and checked against it in one step, and a failure reads as one line naming the
field (``'spawn.restart' must be one of never, on-failure, always, not 'sometimes'``).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import msgspec

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)
R = TypeVar("R")
P = ParamSpec("P")

_WORDS = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false",
          "object": "a map", "array": "a list", "null": "null", "bytes": "bytes", "bin": "bytes",
          "ext": "a msgpack extension"}
_FAILURES = [
    (re.compile(r"Object missing required field `(?P<key>[^`]+)`"), "{key} is missing"),
    (re.compile(r"Object contains unknown field `(?P<key>[^`]+)`"), "unknown key {key}"),
    (re.compile(r"Expected `str` of length >= 1"), "{at} must be a non-empty string"),
    (re.compile(r"Expected `(?P<want>[^`]+)`(?P<bound>[^,]*), got `(?P<got>[^`]+)`"),
     "{at} must be {want}{bound}, not {got}"),
    (re.compile(r"Expected `(?P<want>[^`]+)`(?P<bound>.*)"), "{at} must be {want}{bound}"),
    (re.compile(r"Invalid enum value (?P<value>.+)"), "{at} must be one of {choices}, not {value}"),
    (re.compile(r"Invalid value (?P<value>.+)"), "{at} must not be {value}"),
]
_AT = re.compile(r"^(?P<text>.*?)(?: - at (?P<key>`key` in )?`\$(?P<at>[^`]*)`)?$", re.S)


def _words(types: str) -> str:
    return " or ".join(_WORDS.get(t.strip(), t.strip()) for t in types.split("|"))


def _quoted(path: str) -> str:
    return f"'{path.lstrip('.')}'" if path else "it"


def _choices(type_: Any, path: str, key: bool = False) -> str:
    """The values a Literal at ``path`` (``.spawn.restart``, ``.items[1].x``) of ``type_`` takes."""
    inspect_ = msgspec.inspect

    def bare(info: Any) -> Any:  # the type inside its metadata, and the struct, list or literal inside an Optional
        while isinstance(info, (inspect_.Metadata, inspect_.UnionType)):
            info = info.type if isinstance(info, inspect_.Metadata) else next(
                (t for t in info.types if not isinstance(t, inspect_.NoneType)), info.types[0])
        return info

    info: Any = inspect_.type_info(type_)
    for part in re.findall(r"\.([^.\[]+)|\[[^\]]*\]", path):
        info = bare(info)
        if part and isinstance(info, inspect_.StructType):
            info = next((f.type for f in info.fields if f.encode_name == part), None)
        elif not part and isinstance(info, (inspect_.ListType, inspect_.DictType)):
            info = info.item_type if isinstance(info, inspect_.ListType) else info.value_type
        if info is None:
            return "its choices"
    info = bare(info)
    if key and isinstance(info, inspect_.DictType):  # the map's keys are what is wrong
        info = bare(info.key_type)
    return ", ".join(map(str, info.values)) if isinstance(info, inspect_.LiteralType) else "its choices"


def describe(err: msgspec.ValidationError, type_: Any) -> str:
    """What a failed decode of ``type_`` says, in one line naming the field."""
    match = _AT.match(str(err))
    text, at, key = (match["text"], match["at"] or "", bool(match["key"])) if match else (str(err), "", False)
    for pattern, template in _FAILURES:
        found = pattern.fullmatch(text)
        if found:
            parts = found.groupdict()
            if "key" in parts:
                parts["key"] = _quoted(f"{at}.{parts['key']}")
            for word in ("want", "got"):
                if word in parts:
                    parts[word] = _words(parts[word])
            if "bound" in parts:
                parts["bound"] = parts["bound"].replace(".0", "")
            if "{choices}" in template:
                parts["choices"] = _choices(type_, at, key)
            return template.format(at=_quoted(at) + (" keys" if key else ""), **parts)
    return f"{_quoted(at)}: {text}" if at else text  # a check of the type's own (__post_init__)


def convert(value: Any, type_: type[T], what: str, error: type[Exception]) -> T:
    """``value`` (decoded msgpack, JSON or YAML) as ``type_``, checked; raise ``error`` with
    ``what: <the field and what is wrong with it>``."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as err:
        raise error(f"{what}: {describe(err, type_)}") from None


_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def decoder(type_: type[T]) -> msgspec.msgpack.Decoder[T]:
    """A msgpack decoder of ``type_`` (one per type: building one costs more than using it)."""
    found = _decoders.get(type_)
    if found is None:
        found = _decoders[type_] = msgspec.msgpack.Decoder(type_)
    return found


def decode(body: bytes, type_: type[T], what: str, error: type[Exception]) -> T:
    """``body`` (msgpack) decoded and checked as ``type_`` in one step; raise ``error`` as `convert` does
    (and for a body that is not msgpack at all)."""
    try:
        return decoder(type_).decode(body)
    except msgspec.ValidationError as err:
        raise error(f"{what}: {describe(err, type_)}") from None
    except msgspec.DecodeError as err:
        raise error(f"{what}: not msgpack ({err})") from None


def build(struct: Callable[P, S], what: str, error: type[Exception], *args: P.args, **kwargs: P.kwargs) -> S:
    """``struct(*args, **kwargs)`` with every field checked against its type (building a Struct
    checks nothing by itself); raise ``error`` as `convert` does."""
    built = struct(*args, **kwargs)
    return convert(msgspec.structs.asdict(built), cast(type[S], struct), what, error)


def arguments(struct: Callable[P, S], what: str, error: type[Exception]
              ) -> Callable[[Callable[[Any, S], R]], Callable[Concatenate[Any, P], R]]:
    """Make a method taking one ``struct`` take the struct's fields as its arguments instead (its
    signature, for callers and for mypy, is the struct's), checked by `build`."""

    def decorate(method: Callable[[Any, S], R]) -> Callable[Concatenate[Any, P], R]:
        def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
            return method(self, build(struct, what, error, *args, **kwargs))

        functools.update_wrapper(call, method)
        delattr(call, "__wrapped__")  # (so that help() and inspect show the struct's parameters, set next)
        own = inspect.signature(struct)
        self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        call.__signature__ = own.replace(parameters=[self, *own.parameters.values()],  # type: ignore[attr-defined]
                                         return_annotation=inspect.signature(method).return_annotation)
        return call

    return decorate
