#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/scale's report: reads OUT/raw (written by bench/scale) and writes
OUT/results.json, OUT/results.md and the plot OUT/scale.png / .svg (gnuplot).
With --doc PATH it also replaces the section between the markers
`<!-- scale:begin -->` and `<!-- scale:end -->` of PATH (docs/performance.md)
and copies the SVG to docs/img/scale.svg. Python's standard library only.
usage: scale_report.py OUT [--doc docs/performance.md]"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jsonlines  # noqa: E402

out = sys.argv[1]
doc = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--doc" else None
raw = os.path.join(out, "raw")
GIB = 1 << 30


def jlines(name):
    return jsonlines.read(os.path.join(raw, name))


def summary(name):
    for r in jlines(name):
        if r.get("event") == "summary":
            return r
    return None


def mib(s):
    return int(s[:-1]) * (1024 if s[-1] in "Gg" else 1)


def size_name(m):
    return f"{m // 1024} GiB" if m >= 1024 and m % 1024 == 0 else f"{m} MiB"


def fmt(v, nd=1):
    return "—" if v is None else f"{v:.{nd}f}"


meta = json.load(open(os.path.join(raw, "meta.json"))) if os.path.exists(os.path.join(raw, "meta.json")) else {}
skipped = {}
for f in sorted(os.listdir(raw)) if os.path.isdir(raw) else []:
    if f.endswith(".skip"):
        s = json.load(open(os.path.join(raw, f)))
        skipped[s["name"]] = s["skipped"]


def bw(name):
    p = os.path.join(raw, name + ".json")
    if not os.path.exists(p):
        return None
    try:
        r = json.loads(open(p).read().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return r.get("avg_mib_s") * 1048576 if r.get("avg_mib_s") else None


def pick(name):
    """The run of `name` (or of its repetitions name.rN) with the median downtime."""
    runs = [n[:-len(".jsonl")] for n in os.listdir(raw)
            if re.fullmatch(re.escape(name) + r"(\.r\d+)?\.jsonl", n)]
    done = [(summary(n + ".jsonl")["downtime_ms"], n) for n in runs
            if (summary(n + ".jsonl") or {}).get("status") == "completed"]
    if done:
        done.sort()
        return done[(len(done) - 1) // 2][1], [d for d, _ in done]
    return (runs[0] if runs else name), []


def rows_for(prefix, sizes):
    rows = []
    for s in sizes:
        name, downs = pick(f"{prefix}-{s}")
        src, dst = summary(name + ".jsonl"), summary(name + ".dst.jsonl")
        row = {"name": name, "size_mib": mib(s), "skipped": skipped.get(f"{prefix}-{s}"),
               "downtimes_ms": downs}
        if src and src.get("status") == "completed":
            d = src.get("downtime_breakdown") or {}
            st = src.get("setup") or {}
            dst_setup = (dst or {}).get("setup") or {}
            dd = (dst or {}).get("downtime_breakdown") or {}
            row.update({
                "ok": True, "total_ms": src["total_ms"], "downtime_ms": src["downtime_ms"],
                "harvest_ms": d.get("harvest_ms"), "final_copy_ms": d.get("final_copy_ms"),
                "fences_ms": d.get("fences_ms"), "revoke_ms": d.get("revoke_ms"),
                "verify_ms": d.get("verify_ms"), "commit_ms": d.get("commit_ms"),
                "verify_pages": dd.get("verify_pages"), "final_pages": d.get("final_pages"),
                "bulk_rate": st.get("bulk_rate"), "bulk_ms": st.get("bulk_ms"),
                "zero_scan_ms": st.get("zero_scan_ms"),
                "prepare_ms": dst_setup.get("prepare_ms"), "register_ms": dst_setup.get("register_ms"),
                "src_register_ms": st.get("register_ms"),
                "src_overhead": st.get("overhead_bytes"), "dst_overhead": dst_setup.get("overhead_bytes"),
                "harvest_ms_per_gib": src.get("harvest_ms_per_gib"),
            })
        elif src or dst:
            row.update({"ok": False, "error": (src or dst).get("error")})
        rows.append(row)
    return rows


sizes = meta.get("sizes", "").split()
qsizes = meta.get("qemu_sizes", "").split()
vmsizes = meta.get("vm_sizes", "").split()
bw_tcp, bw_rdma = bw("bw-tcp"), bw("bw-rdma")
tcp = rows_for("tcp", sizes)
rdma = rows_for("rdma", vmsizes)
qemu = []
for s in qsizes:
    p = os.path.join(raw, f"qemu-{s}.json")
    r = {"size_mib": mib(s), "skipped": skipped.get(f"qemu-{s}")}
    if os.path.exists(p):
        try:
            r.update(json.loads(open(p).read().strip().splitlines()[-1]))
        except (ValueError, IndexError):
            pass
    qemu.append(r)
qby = {r["size_mib"]: r for r in qemu if r.get("ok")}


def table(rows, rate):
    md = ["| guest | total s | downtime ms | harvest | final copy | fences | revoke | verify | commit RTT "
          "| bulk MiB/s | bulk / bw | RAM prep ms/GiB | register ms/GiB | overhead MiB/GiB | QEMU tcp: total s | QEMU downtime ms |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        q = qby.get(r["size_mib"])
        qs = (fmt(q["total_ms"] / 1e3, 2), fmt(q["downtime_ms"], 0)) if q else ("—", "—")
        if r.get("skipped"):
            md.append(f"| {size_name(r['size_mib'])} | skipped: {r['skipped']} |" + " |" * 13 + f" {qs[0]} | {qs[1]} |")
            continue
        if not r.get("ok"):
            md.append(f"| {size_name(r['size_mib'])} | failed: {r.get('error') or 'not run'} |" + " |" * 13 + f" {qs[0]} | {qs[1]} |")
            continue
        g = r["size_mib"] / 1024
        ov = ((r.get("src_overhead") or 0) + (r.get("dst_overhead") or 0)) / g / 1048576
        br = r.get("bulk_rate")
        md.append(
            f"| {size_name(r['size_mib'])} | {fmt(r['total_ms'] / 1e3, 2)} | {fmt(r['downtime_ms'])}"
            f"{' (' + ', '.join(fmt(d) for d in r['downtimes_ms']) + ')' if len(r.get('downtimes_ms') or []) > 1 else ''} "
            f"| {fmt(r['harvest_ms'], 2)} | {fmt(r['final_copy_ms'], 2)} | {fmt(r['fences_ms'], 2)} "
            f"| {fmt(r['revoke_ms'], 2)} | {fmt(r['verify_ms'], 2)} | {fmt(r['commit_ms'], 2)} "
            f"| {fmt(br / 1048576 if br else None, 0)} | {fmt(br / rate if br and rate else None, 2)} "
            f"| {fmt((r.get('prepare_ms') or 0) / g, 0)} | {fmt((r.get('register_ms') or 0) / g, 1)} "
            f"| {fmt(ov, 1)} | {qs[0]} | {qs[1]} |")
    return md


def fit(pts):
    """Least squares y = a + b x; None with fewer than two points."""
    if len(pts) < 2:
        return None
    n = len(pts)
    sx = sum(x for x, _ in pts)
    sy = sum(y for _, y in pts)
    sxx = sum(x * x for x, _ in pts)
    sxy = sum(x * y for x, y in pts)
    den = n * sxx - sx * sx
    if not den:
        return None
    b = (n * sxy - sx * sy) / den
    return (sy - b * sx) / n, b


ok = [r for r in tcp if r.get("ok")]
res = {"meta": meta, "bw_tcp": bw_tcp, "bw_rdma": bw_rdma, "tcp": tcp, "rdma": rdma, "qemu": qemu}
md = ["# bench/scale results", "",
      f"{meta.get('date', '?')}, commit {meta.get('commit', '?')}, {meta.get('nproc', '?')} cores "
      f"({meta.get('cpu', '?')}), {meta.get('mem_gib', '?')} GiB, kernel {meta.get('kernel', '?')}, "
      f"load at the end {meta.get('load', '?')}; run time {meta.get('seconds', '?')} s.", "",
      f"`rdmig bw` tcp loopback, 256 KiB, 2 channels: {fmt(bw_tcp / 1048576 if bw_tcp else None, 0)} MiB/s.", "",
      "## tcp loopback, idle guests with every page written (`--prefill 100`), 2 channels", ""]
md += table(tcp, bw_tcp)
md += ["", "Columns harvest .. commit RTT: the downtime's parts in ms (docs/json.md, `downtime_breakdown`). "
       "QEMU: a guest whose RAM is all written and idle, QEMU's own `tcp:` (bench/scale_qemu.py).", ""]
if meta.get("no_vm"):
    md += ["rdma part not run (--no-vm).", ""]
elif rdma:
    md += ["## rdma (SoftRoCE VM)", "",
           f"`rdmig bw` rdma, 256 KiB, 2 channels: {fmt(bw_rdma / 1048576 if bw_rdma else None, 0)} MiB/s.", ""]
    md += table(rdma, bw_rdma)
    md.append("")

# ---- targets ----
targets = []
by = {r["size_mib"]: r for r in ok}
small = by.get(256)
big = max(ok, key=lambda r: r["size_mib"]) if ok else None
if small and big and big is not small:
    ratio = big["downtime_ms"] / small["downtime_ms"] if small["downtime_ms"] else None
    targets.append(("downtime(%s) / downtime(256 MiB) <= 1.2" % size_name(big["size_mib"]),
                    fmt(ratio, 2), ratio is not None and ratio <= 1.2))
if ok:
    worst = max(ok, key=lambda r: r["downtime_ms"])
    targets.append(("idle downtime <= 20 ms at every size", f"worst {fmt(worst['downtime_ms'])} ms "
                    f"({size_name(worst['size_mib'])})", worst["downtime_ms"] <= 20))
    rates = [r["bulk_rate"] / bw_tcp for r in ok if r.get("bulk_rate") and bw_tcp]
    if rates:
        targets.append(("bulk-round rate / `rdmig bw` >= 0.9", "min %.2f, max %.2f" % (min(rates), max(rates)),
                        min(rates) >= 0.9))
r512, q512 = by.get(512), qby.get(512)
if r512 and q512:
    targets.append(("total(512 MiB idle, rdmig) <= total(512 MiB written, QEMU tcp:)",
                    f"{fmt(r512['total_ms'] / 1e3, 2)} s vs {fmt(q512['total_ms'] / 1e3, 2)} s",
                    r512["total_ms"] <= q512["total_ms"]))
md += ["## Targets (issue #13)", "", "| target | measured | met |", "| --- | --- | --- |"]
md += [f"| {t} | {m} | {'yes' if y else 'NO'} |" for t, m, y in targets]
res["targets"] = [{"target": t, "measured": m, "met": y} for t, m, y in targets]

# ---- projection ----
ft = fit([(r["size_mib"] / 1024, r["total_ms"] / 1e3) for r in ok])
fd = fit([(r["size_mib"] / 1024, r["downtime_ms"]) for r in ok])
proj = []
if ft and fd and big:
    g = big["size_mib"] / 1024
    prep = (big.get("prepare_ms") or 0) / g
    reg = (big.get("register_ms") or 0) / g
    hv = big.get("harvest_ms_per_gib") or 0
    ov = ((big.get("src_overhead") or 0) + (big.get("dst_overhead") or 0)) / g / 1048576
    # The downtime's only O(guest) part is the final harvest: the rest at the largest size, plus it.
    rest = big["downtime_ms"] - (big.get("harvest_ms") or 0)
    hvf = (big.get("harvest_ms") or 0) / g
    for gib in (64, 1024):
        proj.append({"gib": gib, "total_s": ft[0] + ft[1] * gib, "downtime_ms": rest + hvf * gib,
                     "prepare_s": prep * gib / 1e3, "register_s": reg * gib / 1e3,
                     "harvest_ms": hv * gib, "overhead_mib": ov * gib})
    res["projection"] = {"total_s": {"a": ft[0], "b_per_gib": ft[1]},
                         "downtime_ms": {"a": fd[0], "b_per_gib": fd[1]}, "at": proj}
    md += ["", "## Projection", "",
           f"Total time: the least-squares line through the tcp rows, {ft[0]:.2f} s + {ft[1]:.2f} s/GiB. "
           f"Downtime: what the largest guest's took besides its final harvest ({rest:.1f} ms, "
           f"independent of size) plus that harvest's {hvf:.2f} ms/GiB (the page-table walk; "
           f"a line through the downtimes themselves, {fd[0]:.1f} ms + {fd[1]:.2f} ms/GiB, mostly fits noise). "
           f"Setup measured at {size_name(big['size_mib'])}: "
           f"RAM preparation {prep:.0f} ms/GiB, registration {reg:.1f} ms/GiB, a dirty harvest "
           f"{hv:.2f} ms/GiB, rdmig's memory {ov:.1f} MiB per GiB of guest (both sides).", "",
           "| guest | total s | downtime ms | RAM prep s | register s | one harvest ms | rdmig memory MiB |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    md += [f"| {p['gib']} GiB | {p['total_s']:.0f} | {p['downtime_ms']:.1f} | {p['prepare_s']:.1f} "
           f"| {p['register_s']:.1f} | {p['harvest_ms']:.1f} | {p['overhead_mib']:.0f} |" for p in proj]

# ---- plot ----
dat = []
for r in ok:
    q = qby.get(r["size_mib"])
    dat.append(f"{r['size_mib']} {r['total_ms'] / 1e3} {r['downtime_ms']} "
               f"{q['total_ms'] / 1e3 if q else '?'} {q['downtime_ms'] if q else '?'}")
for s, q in sorted(qby.items()):
    if s not in by:
        dat.append(f"{s} ? ? {q['total_ms'] / 1e3} {q['downtime_ms']}")
dat.sort(key=lambda line: int(line.split()[0]))
open(os.path.join(out, "scale.dat"), "w").write("# MiB rdmig_total_s rdmig_downtime_ms qemu_total_s qemu_downtime_ms\n"
                                                + "\n".join(dat) + "\n")
plots = []
gp = shutil.which("gnuplot")
if not gp:
    md.append("\nPlot not drawn: gnuplot is not installed (scripts/install-deps installs gnuplot-nox).")
elif dat:
    body = """set multiplot layout 1,2 title 'Idle guest, every page written, tcp loopback, 2 channels'
set datafile missing '?'; set logscale x 2; set grid; set key top left font ',9'
set xlabel 'guest RAM (MiB)'
set title 'Total time'; set ylabel 's'
plot 'scale.dat' using 1:2 with linespoints pt 7 lw 2 title 'rdmig', '' using 1:4 with linespoints pt 5 lw 2 title 'QEMU tcp:'
set title 'Downtime'; set ylabel 'ms'; set logscale y
plot 'scale.dat' using 1:3 with linespoints pt 7 lw 2 title 'rdmig', '' using 1:5 with linespoints pt 5 lw 2 title 'QEMU tcp:'
unset multiplot"""
    for ext, term in (("png", "pngcairo size 900,420 font ',10'"), ("svg", "svg size 900,420 font ',10'")):
        r = subprocess.run([gp], input=f"set terminal {term}\nset output 'scale.{ext}'\n{body}\n",
                           text=True, cwd=out, capture_output=True)
        if r.returncode:
            sys.stderr.write(f"scale_report: gnuplot scale.{ext}: {r.stderr}\n")
        else:
            plots.append(ext)
    if "png" in plots:
        md += ["", "![scale](scale.png) ([svg](scale.svg))"]
res["plots"] = plots
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
text = "\n".join(md) + "\n"
open(os.path.join(out, "results.md"), "w").write(text)
print(text)

if doc:
    body = text.replace("# bench/scale results\n", "").replace("## ", "#### ")
    body = body.replace("![scale](scale.png) ([svg](scale.svg))", "![downtime and total time against guest size](img/scale.svg)")
    if "svg" in plots:
        shutil.copy(os.path.join(out, "scale.svg"), os.path.join(os.path.dirname(doc), "img", "scale.svg"))
    d = open(doc).read()
    new = f"<!-- scale:begin (bench/scale --doc writes this part) -->\n{body}<!-- scale:end -->"
    if re.search(r"<!-- scale:begin.*?<!-- scale:end -->", d, re.S):
        d = re.sub(r"<!-- scale:begin.*?<!-- scale:end -->", lambda _: new, d, flags=re.S)
    else:
        d = d.rstrip("\n") + "\n\n" + new + "\n"
    open(doc, "w").write(d)
    sys.stderr.write(f"scale_report: wrote {doc}\n")
