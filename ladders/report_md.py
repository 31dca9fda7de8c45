"""report.md: a ladder report's summary (`report.make_report`) as Markdown: fits, parameters with intervals,
mixtures, every check against its 90% interval, and which actual values fall outside it."""

from __future__ import annotations

from typing import Any

from ladderlab.console import fmt

def markdown(s: dict[str, Any]) -> str:
    """The Markdown summary of `make_report`'s result: the checks, the final losses, the mixtures' shares, each
    law with its parameters, intervals and warnings, the target, and the plots."""
    lines = [f"# Ladder report: {s['name']}", "", f"{s['runs']} finished runs. Intervals are 90%.", ""]
    lines += _checks_md(s)
    lines += ["## Final losses", "", "| run | N | D | loss |", "|---|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['N']:,.0f} | {r['D']:,.0f} | {r['loss']:.4f} |" for r in s["final"]]
    lines += ["", "## Mixtures", "", "Shares of each domain in the training mix (validation covers every domain).", ""]
    domains = list(next(iter(s["mixtures"].values())))
    lines += ["| mixture | " + " | ".join(domains) + " |", "|---|" + "---:|" * len(domains)]
    lines += [f"| {m} | " + " | ".join(f"{v[d]:.3f}" for d in domains) + " |" for m, v in s["mixtures"].items()]
    sc = s["scaling"]
    lines += ["", "## Scaling law", ""]
    if "fit" in sc:
        fit = sc["fit"]
        intervals = fit.get("bootstrap", {}).get("intervals_90", {})
        if "rejected" in sc:
            lines += [f"Law: {sc['law']} (Chinchilla's was not identified: "
                      + "; ".join(sc["rejected"]["warnings"]) + ")", ""]
        lines += ["| parameter | value | 90% interval |", "|---|---:|---:|"]
        for k, v in fit["params"].items():
            lo_hi = intervals.get(k)
            iv = ("fixed" if k in fit["fixed"] else "-" if lo_hi is None
                  else f"[{fmt(lo_hi[0])}, {fmt(lo_hi[1])}]")
            lines.append(f"| {k} | {fmt(v)} | {iv} |")
        lines += ["", sc["quality"], "", sc["line"]] + (["", f"Why: {sc['why']}"] if "why" in sc else [])
    else:
        lines.append(sc.get("skipped", ""))
    lines += _warnings_md(sc)
    mx = s["mixing"]
    lines += ["", "## Mixing law", "", mx.get("line", mx.get("skipped", ""))]
    if s.get("mixture_check"):
        lines += ["", s["mixture_check"]["line"]]
    lines += _warnings_md(mx)
    if s.get("tasks"):
        lines += ["", "## Task laws (multiple-choice accuracy)", "", s["tasks"].get("line", s["tasks"].get("skipped", ""))]
        lines += _warnings_md(s["tasks"])
    if s["target"]:
        lines += ["", "## Target", "", s["target"]["line"]]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in s["plots"]]
    return "\n".join(lines) + "\n"


def _checks_md(s: dict[str, Any]) -> list[str]:
    """Every prediction checked against a trained run, one row each, with the verdict on its interval."""
    rows = []  # (check, predicted, interval, actual, error, inside, number format)
    if "held_out" in s["scaling"]:
        h = s["scaling"]["held_out"]
        rows.append((f"loss of held-out run {h['run']} (scaling law)", h["prediction"], h["interval"], h["actual"],
                     f"{h['error_pct']:+.2f}%", h["inside"], ".4f"))
    if s.get("mixture_check"):
        c = s["mixture_check"]
        rows.append(("loss of the best mixture, trained (mixing law)", c["predicted"], c["interval"], c["actual"],
                     f"{c['error_pct']:+.2f}%", c["inside"], ".4f"))
    for task, r in s.get("tasks", {}).get("tasks", {}).items():
        rows.append((f"{task} accuracy (%) of {s['tasks']['run']} (task law)", 100 * r["acc"],
                     [100 * r["acc_lo"], 100 * r["acc_hi"]], 100 * r["actual_acc"],
                     f"{100 * r['acc_error']:+.1f} pts", r["inside"], ".1f"))
    if not rows:
        return []
    lines = ["## Checks", "", "Each prediction against the run trained to test it.", "",
             "| check | predicted [90% interval] | actual | error | actual inside the interval |",
             "|---|---:|---:|---:|---|"]
    for name, p, (lo, hi), a, err, ok, f in rows:
        where = {True: "yes", False: "**NO**", None: "no interval"}[ok]
        bounds = "" if ok is None else f" [{lo:{f}}, {hi:{f}}]"
        lines.append(f"| {name} | {p:{f}}{bounds} | {a:{f}} | {err} | {where} |")
    outside = [row[0] for row in rows if row[5] is False]
    if outside:
        lines += ["", f"Outside its 90% interval: {'; '.join(outside)}."]
    elif any(row[5] for row in rows):
        lines += ["", "Every actual value is inside its 90% interval."]
    return lines + [""]


def _warnings_md(section: dict[str, Any]) -> list[str]:
    return ["", "Warnings:", ""] + [f"- {w}" for w in section["warnings"]] if section.get("warnings") else []
