"""Tests for ladderlab.config: defaults, .gin and .py files, overrides, type checks, dump/reload."""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import pytest

from ladderlab.config import config_to_dict, dump_gin, load_config
from ladderlab.errors import LadderlabError


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = 8
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    lr: float = 1e-3
    steps: int = 10
    tags: tuple[str, ...] = ()
    inner: Inner = dataclasses.field(default_factory=Inner)
    budget: int | None = None
    mode: Literal["a", "b"] = "a"
    sizes: list[int] = dataclasses.field(default_factory=list)
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    seed: Optional[int] = 0
    verbose: bool = False


@dataclasses.dataclass
class Mutable:
    """A non-frozen config, to check overrides work without dataclasses.replace restrictions."""

    count: int = 1
    inner: Inner = dataclasses.field(default_factory=lambda: Inner(width=16))


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def check(excinfo: pytest.ExceptionInfo, *needles: str) -> None:
    """The error is a single line that contains every needle."""
    message = str(excinfo.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def test_defaults_when_no_path():
    assert load_config(Outer) == Outer()


def test_gin_values_and_nested_bindings_land(tmp_path):
    path = write(tmp_path, "run.gin", (
        "Outer.name = 'gin'\n"
        "Outer.lr = 2\n"  # int for a float field
        "Outer.tags = ('a', 'b')\n"
        "Outer.budget = 500\n"
        "Inner.width = 64\n"
    ))
    cfg = load_config(Outer, path)
    assert cfg == Outer(name="gin", lr=2.0, tags=("a", "b"), budget=500, inner=Inner(width=64, depth=2))
    assert isinstance(cfg.lr, float)


def test_gin_reference_macro_and_include(tmp_path):
    base = write(tmp_path, "base.gin", "Outer.steps = 7\nOuter.name = 'base'\n")
    path = write(tmp_path, "run.gin", (
        f"include '{base}'\n"
        "WIDTH = 32\n"
        "Outer.name = 'top'\n"
        "Outer.inner = @Inner()\n"
        "Inner.width = %WIDTH\n"
        "Inner.depth = 5\n"
    ))
    cfg = load_config(Outer, path)
    assert (cfg.steps, cfg.name, cfg.inner) == (7, "top", Inner(width=32, depth=5))


def test_nested_bindings_keep_default_factory_values(tmp_path):
    path = write(tmp_path, "m.gin", "Inner.depth = 9\n")
    assert load_config(Mutable, path).inner == Inner(width=16, depth=9)


def test_two_loads_do_not_leak_bindings(tmp_path):
    first = write(tmp_path, "a.gin", "Outer.steps = 99\nInner.width = 3\n")
    second = write(tmp_path, "b.gin", "Outer.name = 'b'\n")
    assert load_config(Outer, first).steps == 99
    cfg = load_config(Outer, second)
    assert (cfg.name, cfg.steps, cfg.inner) == ("b", 10, Inner())


def test_py_config_and_get_config(tmp_path):
    header = f"from {__name__} import Outer, Inner\n"
    path = write(tmp_path, "a.py", header + "config = Outer(steps=3, inner=Inner(depth=4))\n")
    assert load_config(Outer, path) == Outer(steps=3, inner=Inner(depth=4))
    path = write(tmp_path, "b.py", header + "def get_config():\n    return Outer(name='fn')\n")
    assert load_config(Outer, path).name == "fn"


def test_overrides_land_with_exact_values():
    cfg = load_config(Outer, overrides=[
        "inner.width=64", "lr=1", "budget=None", "tags=('p', 'q')", "verbose=true",
        "name=abc", "mode=b", "sizes=(1, 2)", "weights={'a': 1}", "seed=None", "steps = 12",
    ])
    assert cfg == Outer(inner=Inner(width=64), lr=1.0, budget=None, tags=("p", "q"), verbose=True,
                        name="abc", mode="b", sizes=[1, 2], weights={"a": 1.0}, seed=None, steps=12)
    assert isinstance(cfg.lr, float) and isinstance(cfg.weights["a"], float)
    assert load_config(Outer, overrides=["budget=5", "verbose=False"]).budget == 5


def test_overrides_apply_after_file_and_on_mutable_configs(tmp_path):
    path = write(tmp_path, "run.gin", "Outer.steps = 50\nInner.width = 4\n")
    cfg = load_config(Outer, path, ["inner.depth=3"])
    assert (cfg.steps, cfg.inner) == (50, Inner(width=4, depth=3))
    assert load_config(Mutable, overrides=["count=2", "inner.width=1"]) == Mutable(count=2, inner=Inner(1, 2))


@pytest.mark.parametrize("item, needles", [
    ("steps='x'", ["--set steps='x'", "expected int, got str"]),
    ("steps=1.5", ["steps=1.5", "expected int, got float"]),
    ("steps=True", ["steps=True", "expected int, got bool"]),
    ("verbose=1", ["verbose=1", "expected bool"]),
    ("mode=c", ["mode=c", "expected Literal['a', 'b']"]),
    ("tags=('a', 1)", ["tags=", "expected str, got int"]),
    ("budget=x", ["budget=x", "expected int | None"]),
    ("inner.widht=3", ["--set inner.widht=3", "unknown key 'inner.widht' (known: width, depth)"]),
    ("nope=3", ["unknown key 'nope'"]),
    ("name.x=3", ["unknown key 'name.x'"]),
    ("steps", ["--set steps: expected key=value"]),
])
def test_bad_overrides(item, needles):
    with pytest.raises(LadderlabError) as excinfo:
        load_config(Outer, overrides=[item])
    check(excinfo, *needles)


@pytest.mark.parametrize("text, needles", [
    ("Outer.stepz = 1\n", ["stepz"]),
    ("Nope.steps = 1\n", ["Nope"]),
    ("Outer.steps = = 1\n", ["parse"]),
    ("Outer.steps = 'x'\n", ["steps='x'", "expected int, got str"]),
    ("Inner.width = 2.5\n", ["inner.width=2.5", "expected int, got float"]),
    ("include '/nonexistent/base.gin'\n", ["/nonexistent/base.gin"]),
    ("Outer.steps = %UNDEFINED\n", ["UNDEFINED"]),
    ("Outer.inner = @Nope()\n", ["@Nope()"]),
])
def test_bad_gin_files(tmp_path, text, needles):
    path = write(tmp_path, "bad.gin", text)
    with pytest.raises(LadderlabError) as excinfo:
        load_config(Outer, path)
    check(excinfo, path, *needles)


@pytest.mark.parametrize("name, text, needles", [
    ("none.py", "x = 1\n", ["get_config()", "got NoneType"]),
    ("wrong.py", "config = 3\n", ["got int"]),
    ("broken.py", "raise RuntimeError('boom')\n", ["RuntimeError: boom"]),
])
def test_bad_py_files(tmp_path, name, text, needles):
    path = write(tmp_path, name, text)
    with pytest.raises(LadderlabError) as excinfo:
        load_config(Outer, path)
    check(excinfo, path, *needles)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(LadderlabError) as excinfo:
        load_config(Outer, tmp_path / "nope.gin")
    check(excinfo, "config file not found", "nope.gin")
    path = write(tmp_path, "run.yaml", "steps: 1\n")
    with pytest.raises(LadderlabError) as excinfo:
        load_config(Outer, path)
    check(excinfo, path, ".yaml")


def test_config_to_dict_is_json_ready():
    cfg = Outer(tags=("a",), weights={"w": 0.5})
    assert config_to_dict(cfg) == {
        "name": "x", "lr": 1e-3, "steps": 10, "tags": ["a"], "inner": {"width": 8, "depth": 2},
        "budget": None, "mode": "a", "sizes": [], "weights": {"w": 0.5}, "seed": 0, "verbose": False,
    }


def test_dump_gin_round_trips(tmp_path):
    cfg = load_config(Outer, overrides=[
        "name=\"it's\"", "lr=0.1", "tags=('a', 'b')", "inner.width=3", "budget=7", "mode=b",
        "sizes=[4]", "weights={'x': 2.0}", "verbose=True",
    ])
    text = dump_gin(cfg)
    assert "Outer.inner = @inner/Inner()\n" in text and "inner/Inner.width = 3\n" in text
    assert load_config(Outer, write(tmp_path, "operative.gin", text)) == cfg
    mutable = Mutable(count=5, inner=Inner(width=1, depth=1))
    assert load_config(Mutable, write(tmp_path, "m.gin", dump_gin(mutable))) == mutable


@dataclasses.dataclass(frozen=True)
class Twin:
    """Two configs of one class, so `Inner.field` is ambiguous."""

    a: Inner = dataclasses.field(default_factory=Inner)
    b: Inner = dataclasses.field(default_factory=Inner)


def test_gin_style_class_field_overrides_land():
    cfg = load_config(Outer, overrides=["Inner.width=64", "Outer.steps=5", "inner/Inner.depth=7"])
    assert cfg == Outer(steps=5, inner=Inner(width=64, depth=7))
    assert load_config(Twin, overrides=["b/Inner.width=3"]) == Twin(b=Inner(width=3))


@pytest.mark.parametrize("cls, item, needles", [
    (Twin, "Inner.width=3", ["--set Inner.width=3", "class 'Inner' is ambiguous (use one of: a.width, b.width)"]),
    (Outer, "Nope.width=3", ["unknown class 'Nope' (classes: Inner, Outer)"]),
    (Outer, "Inner=3", ["--set Inner=3: expected Inner.FIELD=VALUE"]),
    (Outer, "Inner.widht=3", ["unknown key 'Inner.widht' (known: width, depth)"]),
    (Twin, "c/Inner.width=3", ["unknown class 'c/Inner'"]),
])
def test_bad_class_field_overrides_name_the_choices(cls, item, needles):
    with pytest.raises(LadderlabError) as excinfo:
        load_config(cls, overrides=[item])
    check(excinfo, *needles)


def test_size_labels_in_overrides():
    cfg = load_config(Outer, overrides=["steps=2k", "lr=1.5M", "sizes=(1k, 3K)", "budget=7B", "name=7B"])
    assert (cfg.steps, cfg.lr, cfg.sizes, cfg.budget, cfg.name) == (2000, 1.5e6, [1000, 3000], 7_000_000_000, "7B")
    assert isinstance(cfg.steps, int) and isinstance(cfg.lr, float)
    with pytest.raises(LadderlabError) as excinfo:
        load_config(Outer, overrides=["steps=1.2345k"])  # 1234.5 is not an int
    check(excinfo, "steps=1.2345k", "expected int, got str")


def test_parse_size():
    from ladderlab.units import parse_size

    assert [parse_size(t) for t in ("7B", "190M", "1.3B", "500K", "500k", "2T", "3.2e11", " 12 ")] == \
        [7e9, 1.9e8, 1.3e9, 5e5, 5e5, 2e12, 3.2e11, 12.0]
    with pytest.raises(ValueError, match="size label like 7B.*got '7X'"):
        parse_size("7X")
