"""Typed run configs: plain dataclasses loaded from defaults, a .py or .gin file, then `key=value` overrides.

Every loaded value is checked (and gently coerced) against the field's annotation, so a bad file or
override fails at load time with one `LadderlabError` line naming the file or key, not mid-run.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import re
import runpy
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import gin

from ladderlab.errors import LadderlabError
from ladderlab.units import LABEL, parse_size

T = TypeVar("T")
_LABEL_IN_TEXT = re.compile(rf"(?<![\w.'\"]){LABEL}(?![\w'\"])")  # a bare size label inside an override's value


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a `cls` from its defaults or a .py/.gin file, type-check it, then apply `key=value` overrides."""
    file = None if path is None else Path(path)
    if file is None:
        cfg = cls()
    elif not file.is_file():
        raise LadderlabError(f"config file not found: {file}")
    elif file.suffix == ".py":
        cfg = _load_py(cls, file)
    elif file.suffix == ".gin":
        cfg = _load_gin(cls, file)
    else:
        raise LadderlabError(f"{file}: unsupported config type {file.suffix!r} (expected .gin or .py)")
    cfg = _validate(cfg, str(file) if file else f"{cls.__name__} defaults")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise LadderlabError(f"--set {item}: expected key=value")
        cfg = _override(cfg, _key_path(cfg, key.strip(), f"--set {item}"), _parse_value(raw.strip()), f"--set {item}",
                        key.strip())
    return cfg


def _key_path(cfg: Any, key: str, where: str) -> list[str]:
    """The field path of an override key: a dotted path (`model.d_model`) or gin's `Class.field` naming the one
    config of that class in `cfg` (`ModelConfig.d_model`), optionally gin-scoped (`model/ModelConfig.d_model`)."""
    head, *rest = key.split(".")
    scope, _, name = head.rpartition("/")
    if not name[:1].isupper():
        return key.split(".")
    found = {".".join(path): path for path, value in _nested(cfg, []) if type(value).__name__ == name}
    if scope:
        found = {k: v for k, v in found.items() if k == scope.replace("/", ".")}
    if not found or not rest:
        classes = ", ".join(sorted({type(value).__name__ for _, value in _nested(cfg, [])}))
        raise LadderlabError(f"{where}: unknown class {head!r} (classes: {classes})" if not found else
                             f"{where}: expected {head}.FIELD=VALUE")
    if len(found) > 1:
        choices = ", ".join(".".join([*path, *rest]) for path in found.values())
        raise LadderlabError(f"{where}: class {name!r} is ambiguous (use one of: {choices})")
    return [*next(iter(found.values())), *rest]


def _nested(cfg: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    """(field path, config) of `cfg` and every dataclass inside it."""
    yield path, cfg
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.init and dataclasses.is_dataclass(value):
            yield from _nested(value, [*path, f.name])


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Return the config as nested plain dicts/lists (JSON-ready), e.g. for a run's metadata."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def dump_gin(cfg: Any) -> str:
    """Write the resolved config as gin bindings, so a run folder can save (and reload) its operative config."""
    return "".join(_gin_lines(cfg, scope=""))


def _gin_lines(cfg: Any, scope: str) -> list[str]:
    """Bindings for `cfg` with every selector prefixed by the gin `scope` (`inner/` for nested configs)."""
    lines = []
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        value, binding = getattr(cfg, f.name), f"{scope}{type(cfg).__name__}.{f.name}"
        if dataclasses.is_dataclass(value):
            # gin replaces (does not nest) reference scopes, so each nested config gets its full path as scope.
            sub = f"{scope}{f.name}/"
            lines.append(f"{binding} = @{sub}{type(value).__name__}()\n")
            lines += _gin_lines(value, sub)
        else:
            lines.append(f"{binding} = {value!r}\n")
    return lines


def _load_py(cls: type[T], path: Path) -> T:
    """Run a .py config file; it defines `config` (a `cls`) or `get_config()` returning one."""
    try:
        namespace = runpy.run_path(str(path))
        cfg = namespace["config"] if "config" in namespace else namespace.get("get_config", lambda: None)()
    except Exception as e:
        raise LadderlabError(f"{path}: {type(e).__name__}: {_first_line(e)}") from e
    if not isinstance(cfg, cls):
        raise LadderlabError(f"{path}: must define `config` or `get_config()` giving a {cls.__name__}, "
                             f"got {type(cfg).__name__}")
    return cfg


def _load_gin(cls: type[T], path: Path) -> T:
    """Parse a .gin file in a fresh gin scope and build `cls` through gin's wrapped constructors."""
    gin.clear_config()
    try:
        _configurable(cls)
        gin.parse_config_file(str(path), skip_unknown=False)
        gin.finalize()  # Runs gin's checks, e.g. that every %MACRO used is defined.
        return _build(cls, cls())
    except Exception as e:  # gin raises ValueError, SyntaxError, OSError, TypeError with multi-line messages.
        raise LadderlabError(f"{path}: {_first_line(e)}") from e
    finally:
        gin.clear_config()


@functools.cache
def _configurable(cls: type) -> Callable[..., Any]:
    """Register `cls` and the dataclasses its fields mention with gin (once per class); return the gin wrapper."""
    for hint in typing.get_type_hints(cls).values():
        for nested in _dataclass_types(hint):
            _configurable(nested)
    return gin.external_configurable(cls, name=cls.__name__)


def _dataclass_types(hint: Any) -> Iterator[type]:
    """Yield the dataclass types appearing anywhere in an annotation (`Inner`, `Inner | None`, ...)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        yield hint
    for arg in typing.get_args(hint):
        yield from _dataclass_types(arg)


def _build(cls: type[T], base: T) -> T:
    """Call `cls`'s gin wrapper; unbound fields keep `base`'s values, and nested defaults get their own bindings."""
    bound = gin.get_bindings(cls, resolve_references=False)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.init and f.name not in bound:
            value = getattr(base, f.name)
            kwargs[f.name] = _build(type(value), value) if dataclasses.is_dataclass(value) else value
    return _configurable(cls)(**kwargs)


def _validate(cfg: T, source: str, prefix: str = "") -> T:
    """Check and coerce every field (recursively) against its annotation; errors name `source` and the key."""
    hints, values = typing.get_type_hints(type(cfg)), {}
    for f in dataclasses.fields(cfg):
        if f.init:
            value = getattr(cfg, f.name)
            checked = _checked(value, hints[f.name], f"{source}: {prefix}{f.name}={value!r}")
            is_nested = dataclasses.is_dataclass(checked)
            values[f.name] = _validate(checked, source, f"{prefix}{f.name}.") if is_nested else checked
    return dataclasses.replace(cfg, **values)


def _override(cfg: T, keys: list[str], value: Any, where: str, key: str) -> T:
    """Return `cfg` with the field at dotted path `keys` set to `value` (checked); frozen configs are replaced."""
    names = [f.name for f in dataclasses.fields(cfg) if f.init]
    head = keys[0]
    if head not in names or (len(keys) > 1 and not dataclasses.is_dataclass(getattr(cfg, head))):
        raise LadderlabError(f"{where}: unknown key {key!r} (known: {', '.join(names)})")
    if len(keys) > 1:
        value = _override(getattr(cfg, head), keys[1:], value, where, key)
    else:
        value = _checked(value, typing.get_type_hints(type(cfg))[head], where)
    return dataclasses.replace(cfg, **{head: value})


def _parse_value(raw: str) -> Any:
    """Parse an override value as a Python literal, size labels as strings (`sizes=(3k, 12k)` gives ('3k', '12k'),
    which number fields take as 3e3, 1.2e4), falling back to the raw string (so `name=abc` works)."""
    for text in (raw, _LABEL_IN_TEXT.sub(lambda m: repr(m[0]), raw)):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    return raw


def _checked(value: Any, hint: Any, where: str) -> Any:
    """`_coerce`, with a mismatch reported as a one-line LadderlabError prefixed by `where`."""
    try:
        return _coerce(value, hint)
    except TypeError as e:
        raise LadderlabError(f"{where}: {e}") from None


def _coerce(value: Any, hint: Any) -> Any:
    """Return `value` as annotation `hint` wants it (int->float, list->tuple, 'true'->True) or raise TypeError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(value, arm)
            except TypeError:
                pass
    elif origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
    elif origin in (tuple, list) and isinstance(value, (tuple, list)):
        if not args:
            return origin(value)
        if origin is list or args[-1] is Ellipsis:  # list[X] and tuple[X, ...] repeat X; tuple[X, Y] is fixed.
            args = args[:1] * len(value)
        if len(args) == len(value):
            return origin(_coerce(v, a) for v, a in zip(value, args))
    elif origin is dict and isinstance(value, dict):
        key_type, value_type = args or (Any, Any)
        return {_coerce(k, key_type): _coerce(v, value_type) for k, v in value.items()}
    elif hint is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    elif hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    elif hint in (int, float) and isinstance(value, str) and re.fullmatch(LABEL, value):  # 7B, 190M, 500K
        number = parse_size(value)
        if hint is float or number == int(number):
            return hint(number)
    elif isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
    raise TypeError(f"expected {name}, got {type(value).__name__}")


def _plain(value: Any) -> Any:
    """Convert a config value to JSON-ready data: dataclasses to dicts, tuples to lists."""
    if dataclasses.is_dataclass(value):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _first_line(error: BaseException) -> str:
    """First non-empty line of an exception message (gin appends file/line context on later lines)."""
    lines = [line.strip().rstrip(":") for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
