"""benchmarks/smoke.py's JSON check on golden documents (the smoke runs themselves: `python benchmarks/smoke.py`)."""

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def smoke(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("smoke")


def test_every_benchmark_script_has_a_keys_entry(smoke):
    assert set(smoke.KEYS) == {p.stem for p in BENCH.glob("*.py")} - smoke.NOT_BENCHMARKS


def test_problem_names_the_first_bad_key(smoke):
    keys = {"tok_s": smoke.POS, "a.0.err": smoke.NUM, "torch_tok_s": smoke.PEER + smoke.POS}
    ok = {"baseline": "torch 2.13.0+cpu", "tok_s": 5.0, "a": [{"err": -0.5}], "torch_tok_s": 2}
    assert smoke.problem(ok, keys, no_peers=False) is None
    assert smoke.problem({**ok, "tok_s": 0}, keys, False) == "tok_s = 0, expected > 0"
    assert smoke.problem({**ok, "tok_s": float("nan")}, keys, False) == "tok_s = nan, expected a finite number"
    assert smoke.problem({**ok, "tok_s": True}, keys, False) == "tok_s = True, expected a finite number"
    assert smoke.problem({**ok, "a": []}, keys, False) == "missing key a.0.err"
    assert smoke.problem({k: v for k, v in ok.items() if k != "baseline"}, keys, False) == 'no "baseline" key'
    assert smoke.problem(ok, keys, no_peers=True) == \
        "baseline 'torch 2.13.0+cpu' with $BENCH_NO_PEERS set (expected \"skipped\")"


def test_peer_keys_are_null_when_the_baseline_is_skipped(smoke):
    keys = {"tok_s": smoke.POS, "torch_tok_s": smoke.PEER + smoke.POS, "lgb.seconds": smoke.PEER + smoke.POS}
    skipped = {"baseline": "skipped", "tok_s": 5.0, "torch_tok_s": None, "lgb": None}
    assert smoke.problem(skipped, keys, no_peers=True) is None
    assert smoke.problem({**skipped, "torch_tok_s": 2}, keys, False) == \
        "torch_tok_s = 2, expected null (baseline skipped)"
    assert smoke.problem({**skipped, "tok_s": None}, keys, False) == "tok_s = None, expected a finite number"
