#!/usr/bin/env python3
"""Modbus polling benchmark: N simulated monitors on ONE Modbus TCP link.

Starts `firmware-sim modbus` serving N generic-rcm monitors (5 per unit id,
the circuits of multi-circuit monitors), a `gridwatch run` polling all of them
every EVERY, lets it warm up, then reads /metrics twice, WINDOW seconds apart,
and prints: polls per second, cadence per device, start lateness against the
schedule (the jitter; from gridwatch_modbus_poll_delay_seconds), skipped
cycles, failed polls, and the CPU of both processes.

Usage: scripts/bench-modbus.py [--monitors 1000] [--every 1s] [--window 60]
                               [--warmup 10] [--profile release|debug]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(http_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        return r.read().decode()


def series(text, name):
    """{labels-string: value} of one metric family member."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):]] = float(value)
    return out


def value(text, name, **labels):
    total = 0.0
    for key, v in series(text, name).items():
        if all(f'{k}="{val}"' in key for k, val in labels.items()):
            total += v
    return total


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024 if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--monitors", type=int, default=1000)
    ap.add_argument("--every", default="1s")
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--profile", default="release")
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    bins = os.path.join(target, a.profile)
    sim_bin, gw_bin = os.path.join(bins, "firmware-sim"), os.path.join(bins, "gridwatch")
    d = tempfile.mkdtemp(prefix="bench-modbus-")
    mb_port, http_port, mqtt_port = free_port(), free_port(), free_port()
    endpoint = f"tcp://127.0.0.1:{mb_port}"
    sim = subprocess.Popen(
        [sim_bin, "modbus", "--listen", f"127.0.0.1:{mb_port}", "--monitors", str(a.monitors),
         "--per-unit", "5", "--registry-out", os.path.join(d, "registry.toml"),
         "--endpoint", endpoint, "--every", a.every],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in sim.stdout:
        if line.startswith("serving"):
            break
    with open(os.path.join(d, "rules.toml"), "w") as f:
        f.write('[residual_current]\nwarning = 200\nalarm = 300\nclear = 250\nfor = "5s"\n')
    with open(os.path.join(d, "routing.toml"), "w") as f:
        f.write('[roles]\ngrid_worker = ["webhook"]\n')
    with open(os.path.join(d, "gateway.toml"), "w") as f:
        f.write(f'''registry = "registry.toml"
rules = "rules.toml"
routing = "routing.toml"
[site]
id = "bench"
name = "bench"
[storage]
path = "data"
[mqtt]
embedded = true
listen = "127.0.0.1:{mqtt_port}"
[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"
[channels.webhook.sink]
url = "http://127.0.0.1:9/none"
''')
    gw = subprocess.Popen([gw_bin, "run", "--config", os.path.join(d, "gateway.toml")],
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "gw.log"), "w"),
                          env=dict(os.environ, RUST_LOG="warn"))
    try:
        time.sleep(a.warmup)
        t0, m0 = time.monotonic(), metrics(http_port)
        c0 = (cpu_seconds(gw.pid), cpu_seconds(sim.pid))
        time.sleep(a.window)
        t1, m1 = time.monotonic(), metrics(http_port)
        c1 = (cpu_seconds(gw.pid), cpu_seconds(sim.pid))
        dt = t1 - t0
        delta = lambda name, **l: value(m1, name, **l) - value(m0, name, **l)
        ok = delta("gridwatch_modbus_polls_total", endpoint=endpoint, outcome="ok")
        allp = delta("gridwatch_modbus_polls_total", endpoint=endpoint)
        skipped = delta("gridwatch_modbus_cycles_skipped_total", endpoint=endpoint)
        count = delta("gridwatch_modbus_poll_delay_seconds_count", endpoint=endpoint)
        total = delta("gridwatch_modbus_poll_delay_seconds_sum", endpoint=endpoint)
        buckets = []
        for key, v in series(m1, "gridwatch_modbus_poll_delay_seconds_bucket").items():
            le = re.search(r'le="([^"]+)"', key).group(1)
            before = series(m0, "gridwatch_modbus_poll_delay_seconds_bucket").get(key, 0.0)
            buckets.append((float("inf") if le == "+Inf" else float(le), v - before))
        buckets.sort()

        def quantile(q):
            for le, c in buckets:
                if c >= q * count:
                    return le
            return float("inf")

        within_50 = next((c for le, c in buckets if le == 0.05), 0.0)
        every_s = float(a.every.rstrip("s"))
        print(f"monitors {a.monitors} every {a.every} on one TCP link, window {dt:.1f} s")
        print(f"polls ok {ok:.0f} of {allp:.0f} ({ok / dt:.1f}/s; expected {a.monitors / every_s:.1f}/s)")
        print(f"cadence per device: {ok / a.monitors / dt * every_s:.4f} polls per period")
        print(f"cycles skipped: {skipped:.0f}")
        print(f"start lateness: mean {1000 * total / max(count, 1):.2f} ms, p50 <= {1000 * quantile(0.5):g} ms, "
              f"p99 <= {1000 * quantile(0.99):g} ms, p99.9 <= {1000 * quantile(0.999):g} ms, "
              f"{100 * within_50 / max(count, 1):.3f} % within 50 ms")
        print(f"CPU: gridwatch {100 * (c1[0] - c0[0]) / dt:.1f} % of one core, "
              f"firmware-sim {100 * (c1[1] - c0[1]) / dt:.1f} %; RSS gridwatch {rss_mb(gw.pid):.1f} MB")
    finally:
        gw.terminate()
        sim.terminate()
        gw.wait()
        sim.wait()


if __name__ == "__main__":
    sys.exit(main())
