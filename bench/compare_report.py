#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/compare's report: reads OUT/raw (written by bench/compare) and writes
OUT/results.json, OUT/results.md, the plot data (OUT/*.dat) and the plots
(OUT/throughput, OUT/rounds, OUT/downtime as .png and .svg, drawn by gnuplot).
Python's standard library only.  usage: compare_report.py OUT"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jsonlines  # noqa: E402

out = sys.argv[1]
raw = os.path.join(out, "raw")


def jlines(name):
    return jsonlines.read(os.path.join(raw, name))


def jone(name):
    r = jlines(name)
    return r[-1] if r else None


def summary(name):
    for r in jlines(name + ".jsonl"):
        if r.get("event") == "summary":
            return r
    return None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def pct(v):
    return "n/a" if v is None else f"{v:.1%}"


def f(v, d=1):
    return "n/a" if v is None else f"{v:.{d}f}"


meta = jone("meta.json") or {}
try:
    meta = json.load(open(os.path.join(raw, "meta.json")))
except (OSError, ValueError):
    pass
res = {"meta": meta, "raw_limits": [], "idle": [], "throttle": [], "qemu": [], "qemu_written": [],
       "not_run": []}
md = []

# ---- 1. raw limits ----
for be, target in (("tcp", 0.9), ("rdma", 0.95)):
    rows = jlines(f"bw-{be}.jsonl")
    if not rows:
        res["not_run"].append(f"raw limits over {be}")
    for r in rows:
        res["raw_limits"].append(dict(r, target=target))
md.append("## Raw limits: rdmig bw against its peers\n")
md.append("| backend | message bytes | peer | peer Gb/s | rdmig Gb/s | rdmig / peer | target |")
md.append("| --- | --- | --- | --- | --- | --- | --- |")
for r in res["raw_limits"]:
    md.append(f"| {r['kind']} | {r['size']} | {r['peer']} | {f(r['peer_gbps'], 3)} | "
              f"{f(r['rdmig_gbps'], 3)} | {r['ratio']} | >= {r['target']} |")

# ---- 2. idle guest ----
md.append("\n## Idle guest: effective migration rate against raw `rdmig bw`\n")
md.append("| backend | guest | bytes sent | zero pages | total ms | downtime ms | "
          "effective Gb/s (ram / total) | raw rdmig bw Gb/s | ratio | target |")
md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for be in ("tcp", "rdma"):
    s = summary(f"idle-{be}")
    bw = jone(f"raw-{be}.json")
    if not s:
        res["not_run"].append(f"idle guest over {be}")
        continue
    eff = s["ram_bytes"] * 8 / (s["total_ms"] / 1e3) / 1e9 if s["total_ms"] else None
    rawg = bw.get("avg_gbps") if bw else None
    row = {"backend": be, "status": s["status"], "ram_bytes": s["ram_bytes"],
           "bytes": s["bytes"], "zero_pages": s["zero_pages"], "total_ms": s["total_ms"],
           "downtime_ms": s["downtime_ms"], "effective_gbps": eff, "raw_gbps": rawg,
           "ratio": ratio(eff, rawg) if s["status"] == "completed" else None, "target": 0.9}
    res["idle"].append(row)
    bel = be if s["status"] == "completed" else f"{be} ({s['status']})"
    md.append(f"| {bel} | {s['ram_bytes'] >> 20} MiB | {s['bytes'] >> 20} MiB | {s['zero_pages']} | "
              f"{f(s['total_ms'])} | {f(s['downtime_ms'])} | {f(eff, 3)} | {f(rawg, 3)} | "
              f"{'n/a' if row['ratio'] is None else row['ratio']} | >= 0.9 |")

# ---- 3. throttling ----
base = summary("wh-baseline")
# Work per second while the guest runs (total minus downtime), unthrottled.
base_rate = (base["guest_work"] / (base["total_ms"] - base["downtime_ms"])
             if base and base["total_ms"] > base["downtime_ms"] else None)
md.append("\n## Write-heavy guest: adaptive against step throttling (tcp)\n")
md.append("Work / s is guest_work per second the guest ran (total minus downtime). Work lost "
          "is the work the guest would have done unthrottled in the time it ran (baseline's "
          "work / s x run time) minus what it did: an amount, so that a policy that throttles "
          "hard for a short time and one that throttles lightly for long are compared on what "
          "the guest really lost (the share of each run is shown in brackets). The baseline "
          "runs the same guest with --throttle off and no bandwidth cap.\n")
md.append("| run | status | total ms | downtime ms | rounds | max throttle | guest work | "
          "work / s | work lost | ratio |")
md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
lost = {}
for name in ("baseline", "adaptive", "step"):
    s = summary(f"wh-{name}")
    if not s:
        res["not_run"].append(f"write-heavy {name}")
        continue
    run_ms = s["total_ms"] - s["downtime_ms"]
    rate = s["guest_work"] / (run_ms / 1e3) if run_ms > 0 else None
    lo = (1 - rate / (base_rate * 1e3)) if rate is not None and base_rate else None
    lo = 0.0 if name == "baseline" else lo
    # Absolute work lost: what the unthrottled guest would have done in run_ms, minus what it did.
    lost[name] = (base_rate * run_ms - s["guest_work"]) if base_rate and name != "baseline" else 0.0
    res["throttle"].append({"run": name, "status": s["status"], "total_ms": s["total_ms"],
                            "downtime_ms": s["downtime_ms"], "rounds": s["rounds"],
                            "max_throttle": s["max_throttle"], "guest_work": s["guest_work"],
                            "work_per_s": rate, "work_lost": lo,
                            "work_lost_units": lost[name]})
a = next((r for r in res["throttle"] if r["run"] == "adaptive"), None)
st = next((r for r in res["throttle"] if r["run"] == "step"), None)
lost_ratio = ratio(lost.get("adaptive"), lost.get("step")) if lost.get("step") else None
dt_ratio = ratio(a["downtime_ms"], st["downtime_ms"]) if a and st else None
tt_ratio = ratio(a["total_ms"], st["total_ms"]) if a and st else None
for r in res["throttle"]:
    rat = {"baseline": "1 (reference)",
           "adaptive": f"lost {lost_ratio} of step's (target <= 0.5); downtime {dt_ratio} of step's "
                       f"(target <= 1); total {tt_ratio}",
           "step": "reference for adaptive"}[r["run"]]
    md.append(f"| {r['run']} | {r['status']} | {f(r['total_ms'])} | {f(r['downtime_ms'])} | "
              f"{r['rounds']} | {r['max_throttle']:.0%} | {r['guest_work']} | "
              f"{f(r['work_per_s'], 0)} | {f(lost.get(r['run']), 0)} ({pct(r['work_lost'])}) | "
              f"{rat} |")
res["throttle_ratios"] = {"work_lost_adaptive_over_step": lost_ratio,
                          "downtime_adaptive_over_step": dt_ratio,
                          "total_adaptive_over_step": tt_ratio}

# ---- 4. QEMU ----
qv = ["qemu-tcp-1", "relay-tcp-1", "qemu-tcp-4", "relay-tcp-4",
      "qemu-rdma-1", "relay-rdma-1", "relay-rdma-4"]
peer = {"relay-tcp-1": ("qemu-tcp-1", 1.1, "<="), "relay-tcp-4": ("qemu-tcp-4", 1.1, "<="),
        "relay-rdma-1": ("qemu-rdma-1", 0.5, "<="), "relay-rdma-4": ("qemu-rdma-1", 0.5, "<=")}
def load_variants(names, what):
    """The qemu_migrate results of `names` by name; the missing ones are not_run."""
    got = {}
    for v in names:
        p = os.path.join(raw, v + ".json")
        if os.path.exists(p):
            try:
                got[v] = json.load(open(p))
            except ValueError:
                got[v] = {"label": v, "status": "no result", "ok": 0}
        else:
            res["not_run"].append(f"{what} {v}")
    return got


q = load_variants(qv, "QEMU")
md.append("\n## QEMU: rdmig relay against QEMU's own transports\n")
md.append("Figures from the source QEMU's query-migrate (total-time, downtime, ram.transferred, "
          "ram.mbps). Ratio: total time over the peer's.\n")
md.append("| variant | status | total ms | downtime ms | MiB transferred | Mb/s | peer | "
          "total / peer's | target |")
md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for v in qv:
    if v not in q:
        continue
    r = q[v]
    pv, tgt, op = peer.get(v, (None, None, None))
    rt = ratio(r.get("total_ms"), q[pv].get("total_ms")) if pv in q and r.get("ok") else None
    row = dict(r, peer=pv, ratio=rt, target=tgt)
    row.pop("rdmig", None)
    res["qemu"].append(row)
    md.append(f"| {v} | {r.get('status')} | {f(r.get('total_ms'), 0)} | {f(r.get('downtime_ms'), 0)} | "
              f"{f((r.get('transferred') or 0) / 2**20)} | {f(r.get('mbps'))} | {pv or '-'} | "
              f"{'-' if rt is None else rt} | {'-' if tgt is None else op + ' ' + str(tgt)} |")

def busy_pct(r):
    """qemu_migrate's host_busy as a percentage, or '-'."""
    b = (r.get("cpu") or {}).get("host_busy")
    return "-" if b is None or b < 0 else f"{b * 100:.0f} %"


def relay_cpu(r):
    """The two relays' CPU ms over the migration (relay mode), or '-'."""
    c = r.get("cpu") or {}
    v = [c.get("src_relay_ms"), c.get("dst_relay_ms")]
    return "-" if None in v or min(v) < 0 else f(sum(v), 0)


# ---- 5. QEMU, the written guest ----
wv = ["wg-qemu-tcp-1", "wg-relay-tcp-1", "wg-qemu-tcp-4", "wg-relay-tcp-4",
      "wg-qemu-rdma-1", "wg-relay-rdma-1"]
wpeer = {"wg-relay-tcp-1": ("wg-qemu-tcp-1", 1.3), "wg-relay-tcp-4": ("wg-qemu-tcp-4", 1.3),
         "wg-relay-rdma-1": ("wg-qemu-rdma-1", 0.5)}
res["qemu_written"] = []
w = load_variants(wv, "QEMU written guest")
if w:
    md.append("\n## QEMU: the written guest (issue #15)\n")
    md.append("A guest whose every dword of RAM was written once (tests/qemu/guest.S built with "
              "FILL), then idle; the migration starts once the fill is done, and every dword of "
              "the destination is compared afterwards (checked). Figures from the source QEMU's "
              "query-migrate. Ratio: total time over QEMU's own transport's, in this run. "
              "Host busy: the share of all CPUs busy while the migration ran (100 %: "
              "CPU-bound); relays' CPU: the two rdmig processes' CPU time over it.\n")
    md.append("| variant | status | MiB written | checked | total ms | downtime ms | "
              "MiB transferred | Mb/s | host busy | relays' CPU ms | peer | total / peer's | "
              "target | met |")
    md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for v in wv:
    if v not in w:
        continue
    r = w[v]
    pv, tgt = wpeer.get(v, (None, None))
    ok = bool(r.get("ok")) and bool(r.get("checked"))
    rt = (ratio(r.get("total_ms"), w[pv].get("total_ms"))
          if pv in w and ok and w[pv].get("ok") and w[pv].get("checked") else None)
    met = None if rt is None or tgt is None else rt <= tgt
    row = dict(r, peer=pv, ratio=rt, target=tgt, met=met)
    row.pop("rdmig", None)
    res["qemu_written"].append(row)
    md.append(f"| {v} | {r.get('status')} | {r.get('fill_mib', '-')} | "
              f"{'yes' if r.get('checked') else 'NO'} | {f(r.get('total_ms'), 0)} | "
              f"{f(r.get('downtime_ms'), 0)} | {f((r.get('transferred') or 0) / 2**20)} | "
              f"{f(r.get('mbps'))} | {busy_pct(r)} | {relay_cpu(r)} | {pv or '-'} | "
              f"{'-' if rt is None else rt} | {'-' if tgt is None else '<= ' + str(tgt)} | "
              f"{'-' if met is None else ('yes' if met else 'NO')} |")

if res["not_run"]:
    md.append("\n**Not run in this run:** " + "; ".join(res["not_run"]) + ".")
md.insert(0, f"# bench/compare results\n\n`{meta.get('command', 'bench/compare')}` on "
          f"{meta.get('date', '?')}: {meta.get('nproc', '?')} cores ({meta.get('cpu', '?')}), "
          f"kernel {meta.get('kernel', '?')}, load {meta.get('load', '?')}, commit "
          f"{meta.get('commit', '?')}. Run time: {meta.get('seconds', '?')} s.\n")

# ---- plot data ----
series = []  # (title, file)


def write_dat(name, rows):
    p = os.path.join(out, name)
    with open(p, "w") as fh:
        for r in rows:
            fh.write(" ".join(str(x) for x in r) + "\n")
    return name


for v in qv:
    p = os.path.join(raw, v + ".samples")
    if not os.path.exists(p):
        continue
    pts, prev = [], None
    for line in open(p):
        t = line.split()
        if len(t) < 4:
            continue
        ms, b = float(t[0]), float(t[1])
        if prev and ms > prev[0]:
            pts.append((round(ms / 1e3, 2), round((b - prev[1]) / 2**20 / ((ms - prev[0]) / 1e3), 1)))
        prev = (ms, b)
    if pts:
        series.append((f"QEMU guest: {v}", write_dat(f"tp-{v}.dat", pts)))
rounds = {}
for name in ("baseline", "adaptive", "step"):
    ev = [e for e in jlines(f"wh-{name}.jsonl") if e.get("event") in ("round", "state")]
    pts, prev = [], None
    for e in ev:
        ms, b = e["elapsed_ms"], e["bytes"]
        if prev and ms - prev[0] > 50:
            pts.append((round(ms / 1e3, 2), round((b - prev[1]) / 2**20 / ((ms - prev[0]) / 1e3), 1)))
            prev = (ms, b)
        elif not prev:
            prev = (ms, b)
    if pts:
        series.append((f"engine tcp write-heavy: {name}", write_dat(f"tp-wh-{name}.dat", pts)))
    rr = [(e["round"], round(e["dirty_rate"] / 2**20, 1), round(e["bandwidth"] / 2**20, 1),
           round(e["throttle"] * 100, 1)) for e in ev if e.get("event") == "round"]
    if rr and name != "baseline":
        rounds[name] = write_dat(f"rounds-{name}.dat", rr)
bars = []
for r in res["idle"]:
    bars.append((f"idle-{r['backend']}", r["downtime_ms"]))
for r in res["throttle"]:
    bars.append((f"wh-{r['run']}", r["downtime_ms"]))
for r in res["qemu"] + res["qemu_written"]:
    if r.get("ok"):
        bars.append((r["label"], r["downtime_ms"]))
write_dat("downtime.dat", [(i, f'"{n}"', v) for i, (n, v) in enumerate(bars)])

# ---- plots ----
gp = shutil.which("gnuplot")
plots = []
if not gp:
    md.append("\nPlots not drawn: gnuplot is not installed (scripts/install-deps installs gnuplot-nox).")
else:
    for ext, term in (("png", "pngcairo size 900,520 font ',10'"), ("svg", "svg size 900,520 font ',10'")):
        scripts = []
        groups = [(g, [x for x in series if k in x[0]]) for g, k in
                  (("QEMU guest over tcp", "-tcp-"), ("QEMU guest over rdma (SoftRoCE VM, TCG)", "-rdma-"),
                   ("rdmig engine, write-heavy guest, tcp", "engine"))]
        groups = [g for g in groups if g[1]]
        if groups:
            body = f"set multiplot layout {len(groups)},1 title 'Migration throughput over time'\n"
            for g, ss in groups:
                pl = ", ".join(f"'{fn}' using 1:2 with linespoints pt 7 ps 0.4 lw 1.5 title '{t.split(': ')[-1]}'"
                               for t, fn in ss)
                body += f"""set title '{g}'; set xlabel 'seconds since the migration started'; set ylabel 'MiB/s'
set key inside right top vertical font ',8' opaque; set grid
plot {pl}
"""
            scripts.append(("throughput", body + "unset multiplot"))
        if rounds:
            s_rounds = True
            body = "set multiplot layout 1,%d title 'Write-heavy guest (random, 200 MB/s dirty, 100 MB/s cap): per round'\n" % len(rounds)
            for name, fn in rounds.items():
                body += f"""set title '{name}'; set xlabel 'round'; set ylabel 'MiB/s'
set y2label 'throttle %'; set y2range [0:100]; set ytics nomirror; set y2tics 0,20,100
set key top left font ',8'; set grid
plot '{fn}' using 1:2 with linespoints pt 7 title 'dirty rate', '' using 1:3 with linespoints pt 5 title 'bandwidth', '' using 1:4 axes x1y2 with steps lw 2 title 'throttle'
"""
            body += "unset multiplot"
            scripts.append(("rounds", body))
        if bars:
            scripts.append(("downtime", """set title 'Downtime per variant'
set ylabel 'ms'; set style fill solid 0.6; set boxwidth 0.7; set grid ytics
set xtics rotate by -30 font ',8'; set yrange [0:*]; unset key
plot 'downtime.dat' using 1:3:xtic(2) with boxes, '' using 1:3:(sprintf('%.0f', $3)) with labels offset 0,0.7 font ',8'"""))
        for name, body in scripts:
            t = term.replace("900,520", "900,900") if name == "throughput" else term
            s = f"set terminal {t}\nset output '{name}.{ext}'\n{body}\n"
            r = subprocess.run([gp], input=s, text=True, cwd=out, capture_output=True)
            if r.returncode:
                sys.stderr.write(f"compare_report: gnuplot {name}.{ext}: {r.stderr}\n")
            elif ext == "png":
                plots.append(name)
    if plots:
        md.append("\n## Plots\n")
        for p in plots:
            md.append(f"![{p}]({p}.png) ([svg]({p}.svg))")
res["plots"] = plots
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
open(os.path.join(out, "results.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
