"""Frozen records: what the config, the store and the intake use of ``@dataclass(frozen=True)``,
without importing ``dataclasses``.

``dataclasses`` costs a command such as ``smsgw send`` about a quarter of its start: importing it
brings ``inspect`` (with ``ast``, ``dis`` and ``tokenize``), and every class decorated compiles its
``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and ``__setattr__`` with ``exec``. ``@frozen``
gives a class the same methods, written once here: fields from the class's annotations (``ClassVar``
ones excluded) in order, defaults as class attributes or ``field(default=..., default_factory=...,
init=..., repr=..., compare=...)``, ``__post_init__`` called after ``__init__``, assignment refused
with ``FrozenInstanceError`` (an ``AttributeError``), equality and hash over the compared fields, a
``Name(field=value, ...)`` repr. ``replace(record, **changes)`` is ``dataclasses.replace``.

Type checkers read ``@frozen`` as a frozen dataclass (PEP 681 ``dataclass_transform``).

Neither this module nor any other the short commands import imports ``typing`` (a twelfth of what
`smsgw send` costs to start, and nothing it uses at run time): each names ``typing``'s types for the
type checker only, under ``TYPE_CHECKING = False`` / ``if TYPE_CHECKING:``, which mypy reads as
``typing.TYPE_CHECKING`` (``tests/test_cli_imports.py`` checks that ``typing`` stays out).
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")

_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    """A field of a frozen record was assigned or deleted."""


class Field:
    """One field of a record: its name, default (or factory), and whether ``__init__``, ``__repr__``
    and ``__eq__`` take it."""

    __slots__ = ("name", "default", "default_factory", "init", "repr", "compare")

    def __init__(self, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None,
                 init: bool = True, repr: bool = True, compare: bool = True) -> None:
        if default is not _MISSING and default_factory is not None:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.compare = compare


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None, init: bool = True,
          repr: bool = True, compare: bool = True) -> Any:
    """A field with options, as ``dataclasses.field``."""
    return Field(default, default_factory, init, repr, compare)


def _is_class_var(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return isinstance(text, str) and text.removeprefix("typing.").startswith("ClassVar")


class _Shape:
    """The fields of one record class, and the names each generated method uses."""

    __slots__ = ("name", "fields", "init", "repr", "compare", "positional", "takes", "plain")

    def __init__(self, name: str, fields: tuple[Field, ...]) -> None:
        self.name = name
        self.fields = fields
        self.init = tuple(f.name for f in fields if f.init)
        self.repr = tuple(f.name for f in fields if f.repr)
        self.compare = tuple(f.name for f in fields if f.compare)
        #: every field is taken by __init__: a call with all of them in order needs no defaults
        self.positional = len(self.init) == len(fields)
        self.takes = frozenset(self.init)
        #: (name, default) of each field in order, when every field is an __init__ field with a plain
        #: default or none (_MISSING): what the keyword fast path of _init fills in
        self.plain: tuple[tuple[str, Any], ...] | None = (
            tuple((f.name, f.default) for f in fields)
            if self.positional and all(f.default_factory is None for f in fields) else None)

    def values(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """What ``__init__(*args, **kwargs)`` assigns: every field, from the arguments or its default."""
        if len(args) > len(self.init):
            raise TypeError(f"{self.name}() takes {len(self.init)} positional arguments but {len(args)} were given")
        given = dict(zip(self.init, args, strict=False))
        for key, value in kwargs.items():
            if key not in self.init:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}")
            if key in given:
                raise TypeError(f"{self.name}() got multiple values for argument {key!r}")
            given[key] = value
        values = {}
        for spec in self.fields:
            if spec.name in given:
                values[spec.name] = given[spec.name]
            elif spec.default_factory is not None:
                values[spec.name] = spec.default_factory()
            elif spec.default is not _MISSING:
                values[spec.name] = spec.default
            elif spec.init:
                raise TypeError(f"{self.name}() missing required argument: {spec.name!r}")
        return values


_SHAPE = "__record_shape__"


def _shape(record: object) -> _Shape:
    shape: _Shape = getattr(record, _SHAPE)
    return shape


def _key(record: object) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in _shape(record).compare)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    shape = _shape(self)
    if not kwargs and shape.positional and len(args) == len(shape.init):
        # every field given, in order (the store's rows, the config's tables of countries)
        self.__dict__.update(zip(shape.init, args, strict=True))
    elif not args and shape.plain is not None and shape.takes.issuperset(kwargs):
        # keywords only, plain defaults: each field in order, from the keywords or its default
        values = {}
        for name, default in shape.plain:
            value = kwargs.get(name, default)
            if value is _MISSING:
                raise TypeError(f"{shape.name}() missing required argument: {name!r}")
            values[name] = value
        self.__dict__.update(values)
    else:
        self.__dict__.update(shape.values(args, kwargs))
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _repr(self: Any) -> str:
    shape = _shape(self)
    return f"{shape.name}({', '.join(f'{name}={getattr(self, name)!r}' for name in shape.repr)})"


def _eq(self: Any, other: object) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _key(self) == _key(other)


def _hash(self: Any) -> int:
    return hash(_key(self))


def _setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


_METHODS = {"__init__": _init, "__repr__": _repr, "__eq__": _eq, "__hash__": _hash, "__setattr__": _setattr,
            "__delattr__": _delattr}


def _fields(cls: type) -> tuple[Field, ...]:
    """The fields of ``cls`` from its annotations; a plain default stays a class attribute."""
    specs = []
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_class_var(annotation):
            continue
        value = cls.__dict__.get(name, _MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name = name
        if spec.default is not _MISSING:
            setattr(cls, name, spec.default)
        elif name in cls.__dict__:
            delattr(cls, name)  # a field(default_factory=...) or field(repr=False): no class attribute
        specs.append(spec)
    return tuple(specs)


def _frozen(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen record (see the module's docstring); the methods it defines itself stay."""
    shape = _Shape(cls.__qualname__, _fields(cls))
    setattr(cls, _SHAPE, shape)
    explicit_hash = cls.__dict__.get("__hash__", _MISSING) is not None  # __eq__ alone sets __hash__ = None
    for name, method in _METHODS.items():
        if name not in cls.__dict__ or (name == "__hash__" and not explicit_hash):
            setattr(cls, name, method)
    setattr(cls, "__match_args__", shape.init)  # noqa: B010  (mypy: a type's attribute it cannot know)
    return cls


if TYPE_CHECKING:
    @dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
    def frozen(cls: type[T]) -> type[T]:
        """Make ``cls`` a frozen record (see the module's docstring); the methods it defines itself stay."""
        return _frozen(cls)
else:
    frozen = _frozen


def fields(record: object) -> tuple[Field, ...]:
    """The fields of a record (or record class), in order."""
    return _shape(record).fields


def replace(record: T, /, **changes: Any) -> T:
    """A copy of ``record`` with ``changes``, as ``dataclasses.replace``."""
    for spec in fields(record):
        if not spec.init:
            if spec.name in changes:
                raise ValueError(f"field {spec.name!r} is not taken by __init__: it cannot be replaced")
            continue
        if spec.name not in changes:
            changes[spec.name] = getattr(record, spec.name)
    return type(record)(**changes)
