"""TPU slices by name, and deviceless compiles against them with libtpu's compiler (the `tpu` extra).

The names, the mesh check and the missing-extra error need no libtpu; the compiles run where it is installed
(`make test-tpu`) and are skipped, with the reason, where it is not."""

from __future__ import annotations

import importlib.util
import json

import pytest

from ladderlab.cli import main
from ladderlab.errors import LadderlabError
from ladderlab.ladders.run.topology import CHIPS, parse_topology

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu is not installed: pip install 'ladderlab[tpu]' "
                                                         "(`make test-tpu` runs these in their own venv)")
TINY = ["--config", "configs/train_tiny.gin", "--compile-only", "--set", "data.seq_len=128", "--set",
        "model.scan_layers=True"]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    """What the commands set for libtpu and jax stays inside each test."""
    for key in ("JAX_PLATFORMS", "TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.setenv(key, {"JAX_PLATFORMS": "cpu", "TPU_WORKER_HOSTNAMES": "localhost"}.get(key, "v5litepod-4"))


@pytest.mark.parametrize("name, topology, chips, hosts", [
    ("v5e-16", "v5e:4x4", 16, 4), ("v5litepod-16", "v5e:4x4", 16, 4), ("v5e-8", "v5e:2x4", 8, 2),
    ("v5e-256", "v5e:16x16", 256, 64), ("v6e-32", "v6e:4x8", 32, 8), ("v5p-8", "v5p:2x2x1", 4, 1),
    ("v5p-32", "v5p:2x2x4", 16, 4), ("v5p-64", "v5p:2x4x4", 32, 8), ("v5p-128", "v5p:4x4x4", 64, 16),
    ("v4-16", "v4:2x2x2", 8, 2), ("v5e:4x4", "v5e:4x4", 16, 4), ("v5:2x2x4", "v5p:2x2x4", 16, 4)])
def test_slice_names_give_libtpu_topologies(name, topology, chips, hosts):
    topo = parse_topology(name)
    assert (topo.topology, topo.chips, topo.hosts) == (topology, chips, hosts)


def test_the_chip_table():
    assert {k: (c.hbm_gib, c.peak_flops) for k, c in CHIPS.items()} == {
        "v4": (32, 275e12), "v5e": (16, 197e12), "v5p": (95, 459e12), "v6e": (32, 918e12)}


@pytest.mark.parametrize("name, message", [
    ("v7-8", "unknown TPU 'v7'"), ("v5e-12", "12 is not a v5e slice size with a standard shape; name the shape as "
                                              "v5e:AxB"),
    ("v5p-33", "33 is not a v5p slice size"), ("v5e:4x4x1", "a v5e topology has 2 dimensions"),
    ("v5e", "expected NAME-COUNT (v5e-16, v5p-32) or CHIP:AxB[xC] (v5e:4x4)")])
def test_bad_names_are_one_line(name, message):
    with pytest.raises(LadderlabError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_topology(name)


def test_a_mesh_that_does_not_match_the_chips_is_one_line(capsys):
    assert main(["train", *TINY, "--topology", "v5e-4", "--set", "mesh=(1,8,1)"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mesh=(1, 8, 1) does not match --topology v5e-4 (v5e:2x2, 4 chips)" in err


def test_topology_needs_compile_only(capsys):
    assert main(["train", "--config", "configs/train_tiny.gin", "--topology", "v5e-4"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.skipif(HAS_LIBTPU, reason="libtpu is installed: the missing-extra error cannot happen here")
def test_without_libtpu_the_missing_extra_is_one_line(capsys):
    assert main(["train", *TINY, "--topology", "v5e-4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--topology v5e-4: libtpu's compiler is not installed; pip install " \
                                    "'ladderlab[tpu]'" in err


@needs_libtpu
def test_compiles_for_a_v5e_slice_and_fits(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["train", *TINY, "--topology", "v5e-4", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    memory, topo = doc["bytes_per_device"], doc["topology"]
    assert doc["devices"] == 4 and doc["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    assert topo == {"name": "v5e-4", "chip": "v5e", "topology": "v5e:2x2", "chips": 4, "hosts": 1, "hbm_gib": 16,
                    "peak_flops": 197e12}
    held = memory["argument"] + memory["output"] + memory["temp"] + memory["generated_code"] - memory["alias"]
    assert doc["hbm_gib_per_device"] == held / 2**30 and doc["fits"] is True
    # the state is donated: its outputs live in its inputs' buffers
    assert memory["alias"] > 0 and memory["alias"] <= memory["output"]
    # the time counts the step's FLOPs (causal attention at half) over the 4 chips' peak; XLA's own count, whose
    # loop bodies count once, is reported beside it
    assert doc["step_s_at_peak"] == doc["tokens_per_step"] * doc["flops_per_token"]["causal"] / (4 * 197e12)
    assert doc["flops_per_device"] > 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "TPU v5e-4 (v5e:2x2: 4 chips on 1 hosts, 16 GiB HBM and 197 bf16 TFLOP/s per chip), " \
                         "compiled by libtpu on this host"
    assert printed[-1] == f"HBM per device {doc['hbm_gib_per_device']:,.2f} GiB (argument + output + temp + code - " \
                          "aliased): fits in the chip's 16 GiB"


@needs_libtpu
def test_a_state_larger_than_the_chip_does_not_fit(tmp_path, capsys):
    # 2 layers of width 8192 on one v5e chip: 1.6e9 parameters, 12 bytes each with Adam's two moments (> 16 GiB)
    out = tmp_path / "c.json"
    assert main(["train", *TINY, "--topology", "v5e-1", "--set", "mesh=(1,1,1)", "--set", "batch_size=1",
                 "--set", "model.d_model=8192", "--set", "model.n_heads=64", "--set", "model.d_ff=32768",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    # libtpu refuses the program (RESOURCE_EXHAUSTED) and says how much it needs: that is the figure reported
    assert doc["out_of_memory"].startswith("RESOURCE_EXHAUSTED: Ran out of memory on HBM")
    assert f"({doc['hbm_gib_per_device']:.2f}G) exceeds available HBM (15.75G)" in doc["out_of_memory"]
    assert doc["hbm_gib_per_device"] > 16 and doc["fits"] is False
    assert capsys.readouterr().out.splitlines()[-1] == f"HBM per device at least {doc['hbm_gib_per_device']:,.2f} " \
                                                      "GiB (the compiler's figure): does not fit in the chip's 16 GiB"


@needs_libtpu
def test_ladder_plan_times_each_run_from_its_compiled_size(tmp_path, capsys):
    cfg = tmp_path / "l.gin"
    cfg.write_text("LadderConfig.sizes = (8e3, 2.5e4)\nLadderConfig.multiples = (1.0, 4.0)\n"
                   "LadderConfig.width_per_layer = 32\nLadderConfig.model_options = {'scan_layers': True}\n")
    out = tmp_path / "p.json"
    assert main(["ladder", "plan", str(cfg), "--topology", "v5e-4", "--mfu", "0.5", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["runs"]
    assert [r["size"] for r in rows] == ["8.3k", "8.3k", "25k", "25k"] and all(r["fits"] for r in rows)
    for small, large in (rows[:2], rows[2:]):  # one compile per size: its multiples share HBM and step time
        assert (small["hbm_gib_per_device"], small["tpu_step_s"]) == (large["hbm_gib_per_device"], large["tpu_step_s"])
        assert large["tpu_est_s"] == large["steps"] * large["tpu_step_s"] and large["steps"] > small["steps"]
    assert rows[2]["tpu_step_s"] > rows[0]["tpu_step_s"]
    printed = " ".join(capsys.readouterr().out.split())  # the title may wrap
    hours = sum(r["tpu_est_s"] for r in rows) / 3600
    assert f"ladder 'ladder' on TPU v5e-4 (v5e:2x2, 16 GiB HBM per chip): 4 runs, {hours:.3g} h at 50% of the " \
           "chips' peak; every size fits" in printed
