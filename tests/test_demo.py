"""`ladderlab demo` end to end on a tiny corpus: the ladder folder's finished runs are skipped (their losses come
from known laws, so the held-out error is known), the report is printed, and the best mixture is really trained."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest

from ladderlab.cli import main
from ladderlab.config import load_config
from ladderlab.data.mixture import normalise
from ladderlab.ladders.config import LadderConfig
from ladderlab.ladders.plan import mixtures, plan
from ladderlab.ladders.store import LadderStore, write_atomic

DOMAINS = ["a", "b", "c"]


def chinchilla(n, d):
    return 1.8 + 40.0 / n**0.45 + 300.0 / d**0.4


def finish_runs(root, cfg):
    """Mark every planned run finished; main-mixture losses follow Chinchilla, the sweep a mixing law."""
    runs, mixes = plan(cfg), mixtures(cfg)
    store = LadderStore.create(root, cfg, runs)
    t = np.array([[-2.0, 0.5, 0.0], [0.3, -1.5, 0.0], [0.2, 0.4, 0.0]])
    equal = np.full(3, 1 / 3)
    base = chinchilla(runs[0].n, runs[0].tokens) - np.mean(2.0 + np.exp(t @ equal))
    for r in runs:
        shares = np.array(list(normalise(mixes[r.mixture], DOMAINS).values()))
        val = base + 2.0 + np.exp(t @ shares) if r.tokens == runs[0].tokens and r.n == runs[0].n else \
            np.full(3, chinchilla(r.n, r.tokens))
        row = {"run": r.run, "size": r.size, "mixture": r.mixture, "multiple": r.multiple, "seed": r.seed, "N": r.n,
               "D": r.tokens, "step": r.steps, "lr": r.lr, "train_loss": 3.0, "loss": float(val.mean()),
               **{f"val/{d}": float(v) for d, v in zip(DOMAINS, val)}}
        store.run_dir(r.run).mkdir(parents=True)
        write_atomic(store.run_dir(r.run) / "result.json",
                     json.dumps({"run": r.run, "rows": [row], "train_curve": [[r.steps, 3.0]], "seconds": 1.0}))
    store.write_table()


def test_demo_reports_held_out_check_and_trains_the_best_mixture(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for name, chars in {"a": "abcdefgh ", "b": "0123456789+= ", "c": "def x():\n return (y)"}.items():
        docs = [json.dumps({"text": "".join(rng.choice(list(chars), 400))}) for _ in range(60)]
        (corpus / f"{name}.jsonl").write_text("\n".join(docs) + "\n")
    config = tmp_path / "ladder.gin"
    config.write_text(textwrap.dedent(f"""
        DataConfig.corpus = "{corpus}"
        DataConfig.cache_dir = "{tmp_path / 'cache'}"
        LadderConfig.sizes = (3e3, 8e3, 2.5e4, 3.6e4)
        LadderConfig.multiples = (0.05, 0.1)
        LadderConfig.design = 5
        LadderConfig.design_domains = ("a", "b", "c")
        LadderConfig.mixture_grid = "smallest"
        LadderConfig.width_per_layer = 32
        DataConfig.seq_len = 32
        DataConfig.eval_tokens = 256
        LadderConfig.evals_per_run = 1
    """))
    out = tmp_path / "ladder"
    finish_runs(out, load_config(LadderConfig, config))
    doc_path = tmp_path / "demo.json"
    code = main(["demo", "--config", str(config), "--out", str(out), "--bootstrap", "10", "--json", str(doc_path)])
    stdout = capsys.readouterr().out
    assert code == 0
    held = [line for line in stdout.splitlines() if "held-out" in line]
    assert held and held[0].startswith("held-out check: 36k-0.1xC-equal-s0")
    doc = json.loads(doc_path.read_text())
    assert abs(doc["scaling"]["held_out"]["error_pct"]) < 0.5
    check = doc["mixture_check"]
    assert math.isfinite(check["actual"]) and 1.0 < check["actual"] < math.log(259)
    assert check["predicted"] == pytest.approx(doc["mixing"]["loss"])
    assert check["interval"] == doc["mixing"]["interval"]
    lo, hi = check["interval"]
    assert check["inside"] == (lo <= check["actual"] <= hi)
    assert (out / "mixture-check" / "runs.csv").is_file()
    # report.md, written once, holds the trained check and what each mixture name stands for
    md = (out / "report" / "report.md").read_text()
    assert check["line"] in md and check["line"].startswith("mixing-law check: the best mixture trained at N=3,136")
    assert ("the actual loss is inside the 90% interval" if check["inside"] else "the actual loss is OUTSIDE") in md
    verdict = "yes" if check["inside"] else "**NO**"
    assert f"| {check['actual']:.4f} | {check['error_pct']:+.2f}% | {verdict} |" in md
    saved = json.loads((out / "report" / "summary.json").read_text())
    assert saved["mixture_check"] == check and saved["scaling"]["held_out"]["inside"] is not None
    for name, m in mixtures(load_config(LadderConfig, config)).items():
        shares = normalise(m, DOMAINS)
        assert f"| {name} | " + " | ".join(f"{shares[d]:.3f}" for d in DOMAINS) + " |" in md


def test_scale_note_gives_each_sizes_measured_drop_per_doubling_only_when_a_parameter_is_at_a_bound():
    from ladderlab.ladders.report import scale_note

    final = [{"mixture": "equal", "N": n, "D": d, "loss": loss} for n, d, loss in
             [(1e3, 1e5, 3.0), (1e3, 2e5, 2.9), (1e3, 8e5, 2.7), (4e3, 4e5, 2.8), (4e3, 8e5, 2.5)]]
    final.append({"mixture": "other", "N": 1e3, "D": 1e5, "loss": 9.0})
    note = scale_note(final, "equal", ["parameter E is at its bound 4.54e-05; the fit is not trustworthy there"])
    assert note.startswith("E at its bound because the runs' loss drop per doubling of D depends on N (N=1,000: "
                           "0.100 from D=1e+05, 0.100 from D=2e+05; N=4,000: 0.300 from D=4e+05)")
    assert scale_note(final, "equal", ["few points: 5 rows for 5 parameters"]) is None
