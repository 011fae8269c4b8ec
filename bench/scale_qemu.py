#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""One live migration of a QEMU guest whose RAM is all written, over QEMU's
own tcp: on this host, for bench/scale.

    scale_qemu.py --size MIB [--host ADDR] [--dir DIR] [--timeout S]

The source's RAM is a private mapping of a file filled with non-zero data
(every page written, none zero), and the guest has nothing to boot: the
firmware waits, so the guest is idle. The destination gets fresh RAM. The
source is migrated to `migrate-incoming tcp:ADDR:PORT` with QEMU's defaults;
the result is one JSON object on stdout from the source's final
query-migrate: total_ms, downtime_ms, setup_ms, transferred, mbps, status.
Exit 0 when the migration completed, 1 otherwise, 77 without QEMU.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


class Qmp:
    def __init__(self, path, timeout=30.0):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise RuntimeError(f"QMP socket {path} did not come up")
                time.sleep(0.05)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error'].get('desc')}")
            # events: skip


def free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fill(path, size):
    # Every page non-zero and different, so that nothing counts as a zero page.
    chunk = bytearray(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            for p in range(0, len(chunk), 4096):
                chunk[p:p + 8] = ((i << 8) + (p >> 12) + 1).to_bytes(8, "little")
                chunk[p + 8] = 0x5A
            f.write(chunk)


def qemu(args, log):
    base = ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-no-user-config",
            "-accel", "tcg", "-smp", "1"]
    return subprocess.Popen(base + args, stdout=log, stderr=subprocess.STDOUT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, required=True, help="guest RAM in MiB")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        print("scale_qemu: qemu-system-x86_64 not found", file=sys.stderr)
        return 77
    d = tempfile.mkdtemp(prefix="scale-qemu.", dir=a.dir)
    procs = []
    try:
        ram = os.path.join(d, "ram")
        fill(ram, a.size << 20)
        size = f"{a.size}M"
        port = free_port(a.host)
        log = open(os.path.join(d, "qemu.log"), "w")
        dst = qemu(["-m", size, "-object", f"memory-backend-ram,id=ram0,size={size}",
                    "-machine", "pc,memory-backend=ram0",
                    "-qmp", f"unix:{d}/dst.qmp,server=on,wait=off",
                    "-incoming", f"tcp:{a.host}:{port}"], log)
        procs.append(dst)
        src = qemu(["-m", size, "-object",
                    f"memory-backend-file,id=ram0,size={size},mem-path={ram},share=off",
                    "-machine", "pc,memory-backend=ram0",
                    "-qmp", f"unix:{d}/src.qmp,server=on,wait=off"], log)
        procs.append(src)
        qs, qd = Qmp(f"{d}/src.qmp"), Qmp(f"{d}/dst.qmp")
        time.sleep(1.0)  # the firmware runs, finds nothing to boot, and waits
        qs.cmd("migrate", {"uri": f"tcp:{a.host}:{port}"})
        deadline = time.time() + a.timeout
        info = {}
        while time.time() < deadline:
            info = qs.cmd("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
        ok = info.get("status") == "completed"
        ramst = info.get("ram", {})
        out = {"size_mib": a.size, "status": info.get("status", "timeout"),
               "total_ms": info.get("total-time"), "downtime_ms": info.get("downtime"),
               "setup_ms": info.get("setup-time"), "transferred": ramst.get("transferred"),
               "mbps": ramst.get("mbps"), "ok": ok}
        if ok:
            st = qd.cmd("query-status")
            out["dst_running"] = st.get("status") == "running" or st.get("running", False)
        print(json.dumps(out))
        return 0 if ok else 1
    except (RuntimeError, OSError, json.JSONDecodeError) as e:
        print(f"scale_qemu: {e}", file=sys.stderr)
        print(json.dumps({"size_mib": a.size, "status": "error", "error": str(e), "ok": False}))
        return 1
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
