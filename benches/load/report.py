#!/usr/bin/env python3
"""Turns run.sh's results.tsv into the Markdown report (tables, ratios, goal status).

    python3 report.py results.tsv meta.env

Throughput and latency are medians over rounds. Every ratio is computed within a round
(targets of one round ran back to back, so they saw the same machine) and then the median
of those per-round ratios is reported, with the per-round values beside it.
"""

import csv
import sys
from collections import defaultdict
from statistics import median

LABELS = {
    "direct": "direct to upstream (no proxy)",
    "jg_auth": "jobgate, authenticated route",
    "jg_public": "jobgate, public route",
    "jg_fresh": "jobgate, authenticated route",
    "jg_audit": "jobgate, authenticated, audit to file",
    "jg_limits": "jobgate, authenticated route + two limits",
    "jgc_auth": "jobgate with `[cluster]`, authenticated route, no limit",
    "jgc_limit": "jobgate with `[cluster]`, the same route + one Redis-backed limit",
    "floor": "floor: bare Pingora proxy (same version, same allocator)",
    "nginx": "nginx, plain proxy, no auth",
    "haproxy": "HAProxy 2.6, jwt_verify",
}

# (mode, numerator, denominator, what, goal or None). `goal` is a minimum.
# CPU µs per request against a baseline, within each round: (mode, target, baseline, what,
# kind, goal). kind "ratio": target ÷ baseline, goal a maximum; "minus": target − baseline µs.
# A "+redis" kind adds Redis's CPU per request to both sides (in the cluster mode Redis does
# part of the work).
CPU_VS = [
    ("reused", "jg_public", "floor", "jobgate public route ÷ floor", "ratio", 1.05),
    ("reused", "jg_auth", "floor", "jobgate auth, token reused (cached) ÷ floor", "ratio", 1.35),
    ("fresh", "jg_fresh", "floor", "jobgate auth, fresh token − floor (µs)", "minus", 45.0),
    ("limits", "jg_limits", "jg_auth", "two limits (check_run_id, client_ip) ÷ none", "ratio", 1.05),
    ("cluster", "jgc_limit", "jgc_auth", "one Redis-backed limit (check_run_id) ÷ none, jobgate's CPU", "ratio", None),
    ("cluster", "jgc_limit", "jgc_auth", "one Redis-backed limit − none, jobgate's CPU (µs)", "minus", None),
    ("cluster", "jgc_limit", "jgc_auth", "one Redis-backed limit ÷ none, jobgate's + Redis's CPU", "ratio+redis", None),
    ("reused", "nginx", "floor", "nginx no auth ÷ floor", "ratio", None),
]

RATIOS = [
    ("reused", "jg_auth", "nginx", "jobgate auth (token reused) / nginx no auth", 1.0),
    ("reused", "jg_auth", "haproxy", "jobgate auth (token reused) / HAProxy jwt_verify", 1.5),
    ("fresh", "jg_fresh", "haproxy", "jobgate auth (fresh token) / HAProxy jwt_verify", 1.0),
    ("reused", "floor", "nginx", "floor (bare Pingora) / nginx no auth", None),
    ("reused", "haproxy", "nginx", "HAProxy jwt_verify / nginx no auth (issue: ≈ 0.47)", None),
    ("reused", "jg_public", "nginx", "jobgate public route / nginx no auth", None),
    ("fresh", "jg_fresh", "nginx", "jobgate auth (fresh token) / nginx no auth", None),
    ("audit", "jg_audit", "jg_auth", "jobgate auth, audit to file / audit off", None),
    ("cluster", "jgc_limit", "jgc_auth", "one Redis-backed limit / none", None),
]


def load(path):
    with open(path) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        for key, value in row.items():
            if key not in ("mode", "target"):
                row[key] = float(value)
    return rows


def load_meta(path):
    meta = {}
    with open(path) as handle:
        for line in handle:
            if "=" in line:
                key, value = line.rstrip("\n").split("=", 1)
                meta[key] = value
    return meta


def fmt(value, digits=0):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def main():
    rows = load(sys.argv[1])
    meta = load_meta(sys.argv[2])
    tick_us = 1e6 / float(meta.get("clk_tck", 100))
    if meta.get("haproxy_config") == "full":
        LABELS["haproxy"] = "HAProxy 2.6, jwt_verify + jobgate's claim rule"
    else:
        LABELS["haproxy"] = "HAProxy 2.6, jwt_verify + iss/aud/exp"

    by = defaultdict(list)  # (mode, target) -> rows in round order
    per_round = defaultdict(dict)  # (mode, round) -> target -> row
    for row in rows:
        row["rps"] = row["requests"] / row["duration_us"] * 1e6 if row["duration_us"] else 0.0
        requests = max(row["requests"], 1)
        row["cpu_us"] = row["proxy_ticks"] * tick_us / requests
        row["up_cpu_us"] = row["upstream_ticks"] * tick_us / requests
        row["redis_cpu_us"] = row.get("redis_ticks", 0.0) * tick_us / requests
        row["redis_calls_per"] = row.get("redis_calls", 0.0) / requests
        row["sys_share"] = row.get("proxy_sys_ticks", 0.0) / row["proxy_ticks"] if row["proxy_ticks"] else 0.0
        # CPU of the machine not used by the proxy, the upstream or wrk: other tenants.
        wall_ticks = row["total_ticks"] / max(int(meta.get("nproc", 1)), 1)
        ours = row["proxy_ticks"] + (row["upstream_ticks"] if row["target"] != "direct" else 0)
        ours += row.get("redis_ticks", 0.0)
        ours += row["wrk_cpu_s"] * float(meta.get("clk_tck", 100))
        row["foreign"] = max(0.0, (row["busy_ticks"] - ours) / wall_ticks) if wall_ticks else 0.0
        row["bad"] = row["err_status"] + row["err_sock"]
        by[(row["mode"], row["target"])].append(row)
        per_round[(row["mode"], row["round"])][row["target"]] = row

    out = []
    w = out.append
    w("## jobgate load benchmark")
    w("")
    w(
        f"Machine: {meta.get('nproc')} × {meta.get('cpu')}, Linux {meta.get('kernel')}; "
        f"nginx {meta.get('nginx')}, HAProxy {meta.get('haproxy')}, wrk {meta.get('wrk')}, "
        f"{meta.get('jobgate')}."
    )
    w("")
    if not rows:  # only the memory mode ran: run.sh appends its table
        print("\n".join(out[:-1]))
        return
    w(
        f"Settings: everything on 127.0.0.1 sharing the machine (load generator, proxy, "
        f"upstream); wrk -t{meta.get('threads')} -c{meta.get('connections')} for throughput, "
        f"-t1 -c1 for latency; {meta.get('duration')} s per run, {meta.get('rounds')} rounds, "
        f"targets in rotation within each round; {meta.get('workers')} worker each "
        f"(nginx worker_processes, HAProxy nbthread, jobgate threads; the upstream too). "
        f"HTTP/1.1 keep-alive on both sides. Upstream: nginx `return 200 \"ok\"`. "
        f"jobgate audit output off unless noted."
    )
    w("")

    mode_titles = {
        "reused": f"Throughput, one token reused on every request (wrk -c{meta.get('connections')})",
        "fresh": (
            f"Throughput, a different token on every request (ring of {meta.get('tokens')} tokens; "
            f"jobgate's cache bounded to 8 entries so every request verifies)"
        ),
        "latency": "Latency at low load (wrk -t1 -c1, token reused)",
        "audit": "Audit log cost (token reused; audit JSON lines appended to a file)",
        "limits": "Rate-limit cost (token reused; the same route with two `[[route.limit]]`s, never refusing)",
        "cluster": (
            f"Redis-backed limit cost (token reused; a jobgate with `[cluster]`, Redis {meta.get('redis')} "
            f"on loopback without persistence; the same route with one `[[route.limit]]` in Redis, never refusing)"
        ),
    }
    modes = [m for m in ("reused", "fresh", "latency", "limits", "audit", "cluster") if any(k[0] == m for k in by)]
    for mode in modes:
        targets = []
        for row in rows:
            if row["mode"] == mode and row["target"] not in targets:
                targets.append(row["target"])
        w(f"### {mode_titles[mode]}")
        w("")
        header = "| target | req/s | p50 µs | p99 µs | proxy CPU µs/req | of which kernel | upstream CPU µs/req | other load (cores) |"
        extra = mode in ("fresh", "reused", "limits", "audit", "cluster") and any(t.startswith("jg") for t in targets)
        if extra:
            header += " jobgate cache misses |"
        if mode == "cluster":
            header += " Redis CPU µs/req | Redis scripts/req |"
        if mode == "latency":
            header += " added p50 µs | added p99 µs |"
        w(header)
        w("|" + "---|" * (header.count("|") - 1))
        for target in targets:
            runs = by[(mode, target)]
            is_proxy = target != "direct"
            line = (
                f"| {LABELS.get(target, target)} | {fmt(median(r['rps'] for r in runs))} "
                f"| {fmt(median(r['p50_us'] for r in runs))} | {fmt(median(r['p99_us'] for r in runs))} "
                f"| {fmt(median(r['cpu_us'] for r in runs), 1) if is_proxy else '—'} "
                f"| {fmt(median(r['sys_share'] for r in runs) * 100, 0) + ' %' if is_proxy else '—'} "
                f"| {fmt(median((r['up_cpu_us'] if is_proxy else r['cpu_us']) for r in runs), 1)} "
                f"| {fmt(median(r['foreign'] for r in runs), 2)} |"
            )
            if extra:
                if target.startswith("jg") and target != "jg_public":
                    hits = sum(r["cache_hits"] for r in runs)
                    misses = sum(r["cache_misses"] for r in runs)
                    share = misses / (hits + misses) * 100 if hits + misses else 0.0
                    line += f" {share:.1f} % |"
                else:
                    line += " — |"
            if mode == "latency":
                if target == "direct":
                    line += " — | — |"
                else:
                    adds50, adds99 = [], []
                    for (m, _), group in sorted(per_round.items()):
                        if m == mode and target in group and "direct" in group:
                            adds50.append(group[target]["p50_us"] - group["direct"]["p50_us"])
                            adds99.append(group[target]["p99_us"] - group["direct"]["p99_us"])
                    line += f" {fmt(median(adds50)) if adds50 else '—'} | {fmt(median(adds99)) if adds99 else '—'} |"
            if mode == "cluster":
                line += (
                    f" {fmt(median(r['redis_cpu_us'] for r in runs), 1)} "
                    f"| {fmt(median(r['redis_calls_per'] for r in runs), 2)} |"
                )
            bad = sum(r["bad"] for r in runs)
            if bad:
                line += f" ⚠ {int(bad)} non-2xx/socket errors"
            w(line)
        w("")
        if mode == "cluster":
            valid = (
                meta.get("cluster_up") == "1"
                and meta.get("cluster_errors") == "0"
                and meta.get("cluster_bad") == "0"
            )
            w(
                ("Valid: " if valid else "⚠ **Not valid**: ")
                + f"non-2xx answers or socket errors {meta.get('cluster_bad')}, "
                f"`jobgate_cluster_errors_total` {meta.get('cluster_errors')} (a failed Redis call falls back to "
                f"local buckets), `jobgate_cluster_up` {meta.get('cluster_up')} at the end. Redis CPU is "
                f"redis-server's utime+stime ÷ requests; Redis scripts/req counts EVALSHA + EVAL calls "
                f"(`INFO commandstats`) ÷ requests: one per request on the limited route, 0 on the other "
                f"(there Redis serves only the gateway's background polling)."
            )
            w("")

    w("### Ratios (requests/s; computed within each round, then the median)")
    w("")
    w("| ratio | median | per round | goal | status |")
    w("|---|---|---|---|---|")
    goal_lines = []
    for mode, num, den, what, goal in RATIOS:
        values = []
        for (m, _), group in sorted(per_round.items()):
            if m == mode and num in group and den in group and group[den]["rps"]:
                values.append(group[num]["rps"] / group[den]["rps"])
        if not values:
            continue
        med = median(values)
        status = "—" if goal is None else ("**met**" if med >= goal else "**missed**")
        goal_text = "—" if goal is None else f"≥ {goal:.2f}"
        w(f"| {what} | {med:.2f} | {' '.join(f'{v:.2f}' for v in values)} | {goal_text} | {status} |")
        if goal is not None:
            goal_lines.append((what, med, goal))
    # CPU-per-request view of the same comparisons: less sensitive to who got the cores.
    for mode, num, den, what, goal in RATIOS:
        if goal is None:
            continue
        values = []
        for (m, _), group in sorted(per_round.items()):
            if m == mode and num in group and den in group and group[num]["cpu_us"]:
                values.append(group[den]["cpu_us"] / group[num]["cpu_us"])
        if values:
            w(
                f"| {mode}: {den} CPU µs/req ÷ {num} CPU µs/req (CPU-efficiency view) | {median(values):.2f} "
                f"| {' '.join(f'{v:.2f}' for v in values)} | (≥ {goal:.2f}) | {'met' if median(values) >= goal else 'missed'} |"
            )
    cpu_lines = []
    for mode, num, den, what, kind, goal in CPU_VS:
        values = []
        for (m, _), group in sorted(per_round.items()):
            if m == mode and num in group and den in group and group[den]["cpu_us"]:
                a, b = group[num]["cpu_us"], group[den]["cpu_us"]
                if kind.endswith("+redis"):
                    a += group[num]["redis_cpu_us"]
                    b += group[den]["redis_cpu_us"]
                values.append(a / b if kind.startswith("ratio") else a - b)
        if not values:
            continue
        med = median(values)
        digits = 2 if kind.startswith("ratio") else 1
        if goal is None:
            goal_text, status = "—", "—"
        else:
            goal_text = f"≤ {goal:.{digits}f}"
            status = "**met**" if med <= goal else "**missed**"
        cpu_lines.append(
            f"| {what} | {med:.{digits}f} | {' '.join(f'{v:.{digits}f}' for v in values)} | {goal_text} | {status} |"
        )
    latency_adds = []
    for (m, _), group in sorted(per_round.items()):
        if m == "latency" and "jg_auth" in group and "direct" in group:
            latency_adds.append(group["jg_auth"]["p50_us"] - group["direct"]["p50_us"])
    if latency_adds:
        med = median(latency_adds)
        status = "**met**" if med < 100 else "**missed**"
        w(
            f"| added median latency, jobgate auth − direct (µs, -c1) | {med:.0f} | "
            f"{' '.join(f'{v:.0f}' for v in latency_adds)} | < 100 | {status} |"
        )
    w("")
    if cpu_lines:
        w("### Against the floor (proxy CPU µs per request; computed within each round, then the median)")
        w("")
        w("| comparison | median | per round | goal | status |")
        w("|---|---|---|---|---|")
        out.extend(cpu_lines)
        w("")
    w(
        "Notes: proxy CPU is utime+stime of the proxy's own processes from /proc/<pid>/stat "
        "(nginx: master + workers) over the run ÷ requests, `of which kernel` its stime share; `other load` is machine CPU (/proc/stat) "
        "used during the run by anything but the proxy, the upstream and wrk, in cores (near 0 on "
        "an idle machine; other tenants, and kernel softirq time not charged to a process). "
        + (
            "HAProxy checks alg, signature, iss, aud, exp, nbf, the same allow rule (owner, owner "
            "id, ref, environment) and sets two identity headers"
            if meta.get("haproxy_config") == "full"
            else "HAProxy checks alg, signature, iss, aud and exp (no rule, no identity headers; "
            "--haproxy-full adds them)"
        )
        + "; jobgate checks alg, kid, signature (or its cache), iss, aud, exp, nbf, iat, a deny "
        "and an allow rule (owner, owner id, ref glob, environment) and sets its GitHub identity "
        "headers; jobgate's fresh-token instance has `token_cache_entries = 1` (8 slots) so the "
        "ring of tokens always misses; the miss share is read from its /metrics. Audit output "
        "off except in the audit table."
    )
    print("\n".join(out))


if __name__ == "__main__":
    main()
