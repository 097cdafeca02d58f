#!/usr/bin/env python3
"""Markdown tables (medians, run-to-run spread) from bench/acme-client/bench.sh's results.jsonl."""
import json
import statistics
import sys

path, sites = sys.argv[1], int(sys.argv[2])
rows = [json.loads(line) for line in open(path) if line.strip()]
runs = [r for r in rows if r["kind"] == "run"]
first = {r["config"]: r for r in rows if r["kind"] == "first_start"}
cells = list(dict.fromkeys(r["cell"] for r in runs))


def vals(cell, f):
    return [f(r) for r in runs if r["cell"] == cell]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    """(max - min) / median, in %."""
    return 100 * (max(xs) - min(xs)) / med(xs) if xs else float("nan")


us = lambda r: r["result"]["proxy_cpu_us_per_op"]
core = lambda r: r["result"]["rate_per_proxy_core"]

print(f"### Full TLS 1.3 handshakes (mtls off), gatehouse on one core; {len(set(r['run'] for r in runs))} run(s) per cell\n")
print("| cell | sites | SNI | µs proxy CPU / handshake (median) | runs | spread | handshakes/s per proxy core | handshakes/s wall | proxy CPU use | loadgen µs CPU/op | CPU1 busy not the proxy's, s | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
sni = {"one-localhost": "localhost", "one-exact": "exact", "one-wild": "wildcard", "many-exact": "exact", "many-wild": "wildcard"}
for c in cells:
    u = vals(c, us)
    print(
        f"| {c} | {sites if c.startswith('many') else 1} | {sni.get(c, '?')} | **{med(u):.1f}** | "
        f"{', '.join(f'{x:.1f}' for x in u)} | {spread(u):.1f} % | {med(vals(c, core)):,.0f} | "
        f"{med(vals(c, lambda r: r['result']['rate'])):,.0f} | {med(vals(c, lambda r: r['result']['proxy_cpu_util'])):.2f} | "
        f"{med(vals(c, lambda r: r['result']['loadgen_cpu_us_per_op'])):.0f} | "
        f"{med(vals(c, lambda r: r['cpus']['cpu1_busy_s'] - r['result']['proxy_cpu_s'])) if 'cpus' in runs[0] else float('nan'):.2f} | {sum(vals(c, lambda r: r['result']['errors']))} |"
    )

pairs = [("many-exact", "one-localhost"), ("many-exact", "one-exact"), ("many-wild", "one-localhost"), ("many-wild", "one-wild")]
pairs = [(a, b) for a, b in pairs if a in cells and b in cells]
if pairs:
    print(f"\n### Ratio {sites:,} sites / 1 site (µs proxy CPU per handshake, medians)\n")
    print("| many / one | ratio | difference µs | lowest–highest ratio of single runs | spread of the two cells |")
    print("|---|---|---|---|---|")
    for a, b in pairs:
        ua, ub = vals(a, us), vals(b, us)
        print(
            f"| {a} / {b} | **{med(ua) / med(ub):.3f}** | {med(ua) - med(ub):+.1f} | "
            f"{min(ua) / max(ub):.3f}–{max(ua) / min(ub):.3f} | {spread(ua):.1f} % / {spread(ub):.1f} % |"
        )

print("\n### Memory and start-up (per gateway process, after start-up, before load)\n")
print("| config | sites | VmRSS after start (median) | VmHWM at start (median) | VmRSS after load | start-up to listening (median, certificates on disk) | first start (issuing every certificate) | VmRSS / VmHWM after first start | idle CPU ms/s |")
print("|---|---|---|---|---|---|---|---|---|")
configs = {}
for r in runs:
    cfg = "many" if r["cell"].startswith("many") else r["cell"]
    configs.setdefault(cfg, []).append(r)
mib = lambda k: k / 1024
summary = {}
for cfg, rs in configs.items():
    rss = med([r["rss_kib"] for r in rs])
    hwm = med([r["hwm_kib"] for r in rs])
    summary[cfg] = (rss, hwm)
    st = [r["startup_s"] for r in rs]
    f = first.get(cfg)
    fs = f"{f['startup_s']:.2f} s" if f else "–"
    fm = f"{mib(f['rss_kib']):.1f} / {mib(f['hwm_kib']):.1f} MiB" if f else "–"
    print(
        f"| {cfg} | {sites if cfg == 'many' else 1} | {mib(rss):.1f} MiB | {mib(hwm):.1f} MiB | "
        f"{mib(med([r['rss_after_load_kib'] for r in rs])):.1f} MiB | {med(st):.2f} s ({min(st):.2f}–{max(st):.2f}) | {fs} | {fm} | "
        f"{med([r['idle_cpu_ms_per_s'] for r in rs]):.1f} |"
    )
if "many" in summary and "one-localhost" in summary:
    (rm, hm), (r1, h1) = summary["many"], summary["one-localhost"]
    print(
        f"\nMemory per managed certificate (many − one-localhost) / {sites - 1:,}: "
        f"**{(rm - r1) * 1024 / (sites - 1):,.0f} B VmRSS**, {(hm - h1) * 1024 / (sites - 1):,.0f} B VmHWM (peak during start-up)."
    )
    if "many" in first and "one-localhost" in first:
        fm, f1 = first["many"], first["one-localhost"]
        print(
            f"After the first start (issuing): {(fm['rss_kib'] - f1['rss_kib']) * 1024 / (sites - 1):,.0f} B VmRSS, "
            f"{(fm['hwm_kib'] - f1['hwm_kib']) * 1024 / (sites - 1):,.0f} B VmHWM per certificate."
        )

discarded = [r for r in rows if r["kind"] == "discarded"]
if discarded:
    print(f"\n{len(discarded)} run(s) discarded and repeated because other work ran on the CPUs during them.")
