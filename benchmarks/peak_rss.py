"""Run a command and record the peak memory of it and of every process it starts (workers included).

    python benchmarks/peak_rss.py [--json OUT.json] [--kill-after S] -- CMD ARGS...

``/usr/bin/time -v`` sees only the command and the children it waited for;
a worker pool's processes are children of a forkserver, and the numbers that
matter for "does it fit in RAM" are per process. This samples ``/proc`` every
``--interval`` seconds (Linux only) for the whole process tree under the command
and reports, per process, the peak resident set split the way the kernel
counts it: ``RssAnon`` (private memory: what can run a machine out of RAM) and
``RssFile`` (pages of mapped files, e.g. the memory-mapped cache: the kernel
drops them under pressure, but ``ps``/``time`` count them). ``--kill-after S``
sends SIGKILL (or ``--signal INT``, a Ctrl-C) to the command after S seconds,
only to it: its workers must notice on their own, as after a real ``kill -9``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _status(pid: int) -> dict[str, int] | None:
    """VmRSS, RssAnon, RssFile (kB) of one process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(rest.split()[0])
    return out


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (``/proc/PID/stat`` fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _tree(root: int) -> list[int]:
    kids, out, stack = _children(), [], [root]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(kids.get(p, ()))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--kill-after", type=float, default=None)
    ap.add_argument("--signal", default="KILL", help="what --kill-after sends: KILL (kill -9), INT (Ctrl-C), TERM")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("error: no command given (use: peak_rss.py -- CMD ...)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peaks: dict[int, dict] = {}
    tree_peak = tree_anon_peak = 0
    killed = False
    load0 = os.getloadavg()[0]
    while proc.poll() is None:
        total = anon = 0
        for pid in _tree(proc.pid):
            st = _status(pid)
            if not st:
                continue
            p = peaks.setdefault(pid, {"cmd": _cmdline(pid), "rss_kb": 0, "anon_kb": 0, "file_kb": 0,
                                       "root": pid == proc.pid, "cpu_s": 0.0})
            p["cpu_s"] = max(p["cpu_s"], _cpu_seconds(pid) or 0.0)  # the last reading before it exits
            for k_out, k_in in (("rss_kb", "VmRSS"), ("anon_kb", "RssAnon"), ("file_kb", "RssFile")):
                p[k_out] = max(p[k_out], st.get(k_in, 0))
            total += st.get("VmRSS", 0)
            anon += st.get("RssAnon", 0)
        tree_peak, tree_anon_peak = max(tree_peak, total), max(tree_anon_peak, anon)
        if args.kill_after is not None and not killed and time.perf_counter() - t0 >= args.kill_after:
            os.kill(proc.pid, getattr(signal, "SIG" + args.signal.upper()))
            killed = True
        time.sleep(args.interval)
    wall = time.perf_counter() - t0
    time.sleep(2.0)  # what is still alive two seconds after the command ended (orphaned workers?)
    survivors = [pid for pid in peaks if pid != proc.pid and _status(pid) is not None]
    root = [p for p in peaks.values() if p["root"]]
    workers = [p for p in peaks.values() if not p["root"]]
    report = {
        "cmd": " ".join(cmd), "rc": proc.returncode, "wall_s": round(wall, 1), "killed": killed,
        "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
        "root_peak_rss_mb": round(max((p["rss_kb"] for p in root), default=0) / 1024, 1),
        "root_peak_anon_mb": round(max((p["anon_kb"] for p in root), default=0) / 1024, 1),
        "worker_peak_rss_mb": round(max((p["rss_kb"] for p in workers), default=0) / 1024, 1),
        "worker_peak_anon_mb": round(max((p["anon_kb"] for p in workers), default=0) / 1024, 1),
        "tree_peak_rss_mb": round(tree_peak / 1024, 1), "tree_peak_anon_mb": round(tree_anon_peak / 1024, 1),
        "cpu_s": round(sum(p["cpu_s"] for p in peaks.values()), 1),
        "worker_cpu_s": round(sum(p["cpu_s"] for p in workers), 1),
        "processes": len(peaks), "survivors": [_cmdline(p) for p in survivors],
        "per_process": sorted(({"cmd": p["cmd"], "rss_mb": round(p["rss_kb"] / 1024, 1),
                                "anon_mb": round(p["anon_kb"] / 1024, 1), "file_mb": round(p["file_kb"] / 1024, 1),
                                "cpu_s": round(p["cpu_s"], 1)}
                               for p in peaks.values()), key=lambda p: -p["rss_mb"])[:8],
    }
    text = json.dumps(report, indent=1)
    print(text, file=sys.stderr)
    if args.json:
        args.json.write_text(text)
    return 0 if proc.returncode == 0 or killed else proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
