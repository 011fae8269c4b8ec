#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/compare's report: reads OUT/raw (written by bench/compare) and writes
OUT/results.json, OUT/results.md, the plot data (OUT/*.dat) and the plots
(OUT/throughput, OUT/rounds, OUT/downtime, OUT/fetch as .png and .svg, drawn by
gnuplot).
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

# ---- 3. throttling, and hybrid post-copy (issue #18) ----
WH_RUNS = ("baseline", "adaptive", "step", "postcopy", "postcopy-2", "postcopy-0")
PC_ARGS = {"postcopy": "--postcopy-after auto", "postcopy-2": "--postcopy-after 2",
           "postcopy-0": "--postcopy-after 0"}
# Issue #18's targets for hybrid post-copy, against the adaptive throttle of the same run.
PC_LOST_MAX, PC_BYTES_MAX, PC_DOWNTIME_MAX = 0.25, 1.3, 300.0


def met(v, limit):
    return "n/a" if v is None else ("met" if v <= limit else "**NOT met**")


def pc_work(name):
    """The destination's post-copy: (its summary's postcopy object, the work its
    guest did while its pages came); (None, 0) when it did not switch."""
    d = summary(f"{name}.dst")
    pc = d.get("postcopy") if d else None
    return pc, (pc or {}).get("guest_work") or 0


base = summary("wh-baseline")
# Work per second while the guest runs (total minus downtime), unthrottled.
base_rate = (base["guest_work"] / (base["total_ms"] - base["downtime_ms"])
             if base and base["total_ms"] > base["downtime_ms"] else None)
md.append("\n## Write-heavy guest: adaptive and step throttling, hybrid post-copy (tcp)\n")
md.append("Work / s is guest_work per second the guest ran (total minus downtime). Work lost "
          "is the work the guest would have done unthrottled in the time it ran (baseline's "
          "work / s x run time) minus what it did: an amount, so that a policy that throttles "
          "hard for a short time and one that throttles lightly for long are compared on what "
          "the guest really lost (the share of each run is shown in brackets). The baseline "
          "runs the same guest with --throttle off and no bandwidth cap. Post-copy rows: "
          "same guest and cap, pre-copy then post-copy (postcopy: --postcopy-after auto, "
          "postcopy-2: --postcopy-after 2, postcopy-0: --postcopy-after 0, no pre-copy); their guest work is the source's plus the "
          "destination's while its pages came, their total runs until the destination has "
          "every page. Bytes / size: bytes sent over the guest's size.\n")
md.append("| run | status | total ms | downtime ms | rounds | max throttle | post-copy | "
          "guest work | work / s | work lost | bytes / size | ratio |")
md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
lost = {}
for name in WH_RUNS:
    s = summary(f"wh-{name}")
    if not s:
        res["not_run"].append(f"write-heavy {name}")
        continue
    pc, dwork = pc_work(f"wh-{name}") if name in PC_ARGS else (None, 0)
    work = s["guest_work"] + dwork
    run_ms = s["total_ms"] - s["downtime_ms"]
    rate = work / (run_ms / 1e3) if run_ms > 0 else None
    lo = (1 - rate / (base_rate * 1e3)) if rate is not None and base_rate else None
    lo = 0.0 if name == "baseline" else lo
    # Absolute work lost: what the unthrottled guest would have done in run_ms, minus what it did.
    lost[name] = (base_rate * run_ms - work) if base_rate and name != "baseline" else 0.0
    row = {"run": name, "status": s["status"], "total_ms": s["total_ms"],
           "downtime_ms": s["downtime_ms"], "rounds": s["rounds"],
           "max_throttle": s["max_throttle"], "guest_work": work,
           "work_per_s": rate, "work_lost": lo, "work_lost_units": lost[name],
           "bytes": s["bytes"], "ram_bytes": s["ram_bytes"],
           "bytes_over_size": ratio(s["bytes"], s["ram_bytes"])}
    if name in PC_ARGS:
        row.update(postcopy_args=PC_ARGS[name], switched=s.get("postcopy") is not None,
                   source_guest_work=s["guest_work"], dest_postcopy_guest_work=dwork,
                   dest_summary=pc is not None)
    res["throttle"].append(row)
a = next((r for r in res["throttle"] if r["run"] == "adaptive"), None)
st = next((r for r in res["throttle"] if r["run"] == "step"), None)
lost_ratio = ratio(lost.get("adaptive"), lost.get("step")) if lost.get("step") else None
dt_ratio = ratio(a["downtime_ms"], st["downtime_ms"]) if a and st else None
tt_ratio = ratio(a["total_ms"], st["total_ms"]) if a and st else None
res["throttle_ratios"] = {"work_lost_adaptive_over_step": lost_ratio,
                          "downtime_adaptive_over_step": dt_ratio,
                          "total_adaptive_over_step": tt_ratio}
res["postcopy_targets"] = {}
for r in res["throttle"]:
    if r["run"] in PC_ARGS:
        # A ratio to a loss of nothing (or less: a baseline slowed more by its own uncapped
        # migration than the throttle slowed adaptive) says nothing: n/a.
        lr = (ratio(lost.get(r["run"]), lost["adaptive"])
              if (lost.get("adaptive") or 0) > 0 else None)
        t = {"switched": r["switched"], "lost_over_adaptive": lr,
             "lost_met": None if lr is None else lr <= PC_LOST_MAX,
             "bytes_over_size": r["bytes_over_size"],
             "bytes_met": r["bytes_over_size"] <= PC_BYTES_MAX,
             "downtime_ms": r["downtime_ms"], "downtime_met": r["downtime_ms"] <= PC_DOWNTIME_MAX}
        res["postcopy_targets"][r["run"]] = t
        lrs = "n/a (adaptive lost nothing against the baseline)" if lr is None else lr
        rat = (f"lost {lrs} of adaptive's (target <= {PC_LOST_MAX}: "
               f"{met(lr, PC_LOST_MAX)}); bytes {r['bytes_over_size']} x size (target <= "
               f"{PC_BYTES_MAX}: {met(r['bytes_over_size'], PC_BYTES_MAX)}); downtime {f(r['downtime_ms'])} "
               f"ms (target <= {PC_DOWNTIME_MAX:.0f} ms: {met(r['downtime_ms'], PC_DOWNTIME_MAX)})")
        if not r["switched"]:
            rat = ("**did not switch to post-copy** (pre-copy converged first, max throttle "
                   f"{r['max_throttle']:.0%}): " + rat)
        elif not r["dest_summary"]:
            rat = "**destination's summary missing: its guest work is not counted**; " + rat
    else:
        rat = {"baseline": "1 (reference)",
               "adaptive": f"lost {lost_ratio} of step's (target <= 0.5); downtime {dt_ratio} of "
                           f"step's (target <= 1); total {tt_ratio}",
               "step": "reference for adaptive"}[r["run"]]
    pcs = "-" if r["run"] not in PC_ARGS else ("yes" if r["switched"] else "no")
    md.append(f"| {r['run']} | {r['status']} | {f(r['total_ms'])} | {f(r['downtime_ms'])} | "
              f"{r['rounds']} | {r['max_throttle']:.0%} | {pcs} | {r['guest_work']} | "
              f"{f(r['work_per_s'], 0)} | {f(lost.get(r['run']), 0)} ({pct(r['work_lost'])}) | "
              f"{f(r['bytes_over_size'], 2)} | {rat} |")

# ---- 3b. post-copy's on-demand fetch latency ----
# (name, what it is); the VM ones compare rdma and tcp on the same emulated CPU.
PC_FETCH = (("wh-postcopy", "tcp, native, --postcopy-after auto"),
            ("wh-postcopy-2", "tcp, native, --postcopy-after 2"),
            ("wh-postcopy-0", "tcp, native, --postcopy-after 0"),
            ("pc-tcp-vm", "tcp, SoftRoCE VM (loopback)"),
            ("pc-rdma-vm", "rdma, SoftRoCE VM"))
res["postcopy_fetch"] = []
md.append("\n## Post-copy: on-demand fetch latency (issue #18)\n")
md.append("From the destination's summary (its postcopy object): the time a guest access "
          "waited for a page it lacked, from the fault to the page in place. On demand / "
          "total: pages the guest faulted on over every page moved after the switch. The VM "
          "rows run the same 64 MiB guest (random writes at 64 MB/s, 16 MB/s cap, "
          "--postcopy-after 2) over rdma and over tcp loopback inside one SoftRoCE VM.\n")
md.append("| run | transport | status | p50 us | p99 us | max us | on demand / total pages | "
          "post-copy ms | recoveries |")
md.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
fetch = {}
for name, what in PC_FETCH:
    s = summary(name)
    d = summary(f"{name}.dst")
    if not s:
        res["not_run"].append(f"post-copy fetch latency {name} ({what})")
        md.append(f"| {name} | {what} | **NOT RUN** | | | | | | |")
        continue
    pc = (d or {}).get("postcopy")
    row = {"run": name, "what": what, "status": s["status"], "switched": pc is not None}
    if pc:
        row.update({k: pc.get(k) for k in ("pages", "demand_pages", "ms", "fetch_p50_us",
                                           "fetch_p99_us", "fetch_max_us", "recoveries")})
        fetch[name] = row
    res["postcopy_fetch"].append(row)
    if not pc:
        why = "destination's summary missing" if not d else "did not switch to post-copy"
        md.append(f"| {name} | {what} | {s['status']}: **{why}** | | | | | | |")
        continue
    md.append(f"| {name} | {what} | {s['status']} | {f(pc['fetch_p50_us'], 0)} | "
              f"{f(pc['fetch_p99_us'], 0)} | {f(pc['fetch_max_us'], 0)} | "
              f"{pc['demand_pages']} / {pc['pages']} | {f(pc['ms'])} | {pc['recoveries']} |")
p99r = (ratio(fetch["pc-rdma-vm"]["fetch_p99_us"], fetch["pc-tcp-vm"]["fetch_p99_us"])
        if "pc-rdma-vm" in fetch and "pc-tcp-vm" in fetch else None)
res["postcopy_fetch_ratio"] = {"p99_rdma_over_tcp_vm": p99r,
                               "met": None if p99r is None else p99r < 1}
md.append(f"\nrdma / tcp fetch p99 in the VM: "
          + ("**not measured** (a VM run is missing or did not switch)" if p99r is None else
             f"{p99r} (target < 1: {'met' if p99r < 1 else '**NOT met**'})") + ".")

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
for name in WH_RUNS:
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
    if rr and name in ("adaptive", "step"):
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
# Microseconds, floored at 1 for the log scale.
if fetch:
    write_dat("fetch.dat", [(f'"{n}"', max(r["fetch_p50_us"] or 1, 1), max(r["fetch_p99_us"] or 1, 1),
                             max(r["fetch_max_us"] or 1, 1)) for n, r in fetch.items()])

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
        if fetch:
            scripts.append(("fetch", """set title "Post-copy: on-demand fetch latency (destination)"
set ylabel 'microseconds (log)'; set logscale y; set grid ytics; set yrange [1:*]
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.7
set boxwidth 0.9; set xtics font ',9'; set key top center horizontal
plot 'fetch.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p99', '' using 4 title 'max'"""))
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
