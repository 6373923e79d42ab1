#!/usr/bin/env python3
"""Tables for the benchmark scripts' JSON lines (bench/*.sh).

    report.py row < LINE        one line per run, as it finishes
    report.py tables FILE       every table (Markdown) for a results file

Line kinds ("bench"): "milter" (one milter-load run), "memory" (an RSS
reading), "postfix" (one end-to-end run).
"""

import json
import statistics
import sys
from collections import defaultdict

CHAIN = ("OpenDKIM", "OpenDMARC after OpenDKIM")


def load_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def ms(us):
    return f"{us / 1000:.2f}"


def replies(load):
    return ", ".join(f"{v} × {k}" for k, v in sorted(load.get("replies", {}).items()))


def rate(run):
    return run["load"].get("messages_per_second", 0.0)


def cpu_per_message_us(run):
    done = run["load"].get("messages", 0)
    return run["server_cpu_s"] / done * 1e6 if done else 0.0


def row(run):
    load = run["load"]
    lat = load.get("latency_us", {"p50": 0, "p99": 0, "max": 0})
    errors = load.get("errors", [])
    return (
        f"| {run['label']} | {run['transport']} | {run['eml']} | {run['concurrency']} "
        f"| {'yes' if run['session_per_message'] else 'no'} | {load.get('messages', 0)} "
        f"| {rate(run):.0f} | {ms(lat['p50'])} | {ms(lat['p99'])} | {ms(lat['max'])} "
        f"| {replies(load)}{' ERRORS: ' + '; '.join(errors[:2]) if errors else ''} "
        f"| {load.get('generator_cpu_percent_of_one_core') or 0:.0f} % "
        f"| {cpu_per_message_us(run):.0f} | {run.get('machine_busy_percent', 0)} % ({run.get('background_busy_percent', '?')} %) | {run['rss_peak_kib'] / 1024:.1f} |"
    )


RUN_HEADER = (
    "| milter | socket | message | conc. | session/msg | messages | msg/s | p50 ms | p99 ms | max ms "
    "| replies | generator CPU (of one core) | milter CPU µs/msg | machine busy, 2 cores = 100 % (before the run) | milter peak RSS MiB |\n"
    "|---|---|---|--:|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|"
)


def postfix_row(r):
    return (
        f"| {r['label']} | {r['messages']} | {r['sessions']} | {r['source_seconds']:.2f} "
        f"| {r['messages'] / r['source_seconds']:.0f} | {r['delivered_seconds']:.2f} "
        f"| {r['messages'] / r['delivered_seconds']:.0f} | {r['delivered']} "
        f"| {r.get('milter_cpu_s', 0):.2f} | {r.get('milter_cpu_s', 0) / r['messages'] * 1e6:.0f} "
        f"| {r.get('machine_busy_percent', 0)} % ({r.get('background_busy_percent', '?')} %) | {r.get('notes', '')} |"
    )


POSTFIX_HEADER = (
    "| milters | messages | sessions | smtp-source s | accepted msg/s | delivered s | delivered msg/s "
    "| at smtp-sink | milter CPU s | milter CPU µs/msg | machine busy (before the run) | notes |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def milter_tables(runs, out):
    out.append("### Every run\n")
    out.append(RUN_HEADER)
    out.extend(row(r) for r in runs)

    # Side by side: persistent sessions, 4 KiB message.
    persistent = [r for r in runs if not r["session_per_message"] and r["eml"].startswith("rsa-4k")]
    by = defaultdict(dict)  # (label, transport) -> conc -> run
    for r in persistent:
        by[(r["label"], r["transport"])][r["concurrency"]] = r
    # The chain as serial composition: each message costs the time of both.
    for transport in ("unix", "inet"):
        dkim, dmarc = by.get((CHAIN[0], transport)), by.get((CHAIN[1], transport))
        if dkim and dmarc:
            chain = {}
            for c in sorted(set(dkim) & set(dmarc)):
                a, b = dkim[c], dmarc[c]
                chain[c] = {
                    "rate": 1 / (1 / rate(a) + 1 / rate(b)),
                    "p50": a["load"]["latency_us"]["p50"] + b["load"]["latency_us"]["p50"],
                }
            by[("OpenDKIM→OpenDMARC (serial composition)", transport)] = chain
    columns = sorted(by, key=lambda k: (order(k[0]), k[1]))
    levels = sorted({c for col in by.values() for c in col})
    out.append("\n### Messages/s side by side (4 KiB RSA message, one session per connection)\n")
    out.append("| concurrency | " + " | ".join(f"{l} ({t})" for l, t in columns) + " |")
    out.append("|--:|" + "--:|" * len(columns))
    for c in levels:
        cells = []
        for col in columns:
            r = by[col].get(c)
            if r is None:
                cells.append("")
            elif "rate" in r:
                cells.append(f"{r['rate']:.0f}")
            else:
                cells.append(f"{rate(r):.0f}")
        out.append(f"| {c} | " + " | ".join(cells) + " |")

    # Targets.
    def best(label, transport=None):
        cands = [
            (v["rate"] if "rate" in v else rate(v), c, t)
            for (l, t), col in by.items()
            if l == label and (transport is None or t == transport)
            for c, v in col.items()
        ]
        return max(cands) if cands else None

    ours = best("dmarc-milter")
    out.append("\n### Milter targets\n")
    out.append("| target | measured | met |\n|---|---|---|")
    if ours:
        chain = best("OpenDKIM→OpenDMARC (serial composition)")
        if chain:
            ratio = ours[0] / chain[0]
            out.append(
                f"| best ≥ 5× OpenDKIM→OpenDMARC chain | {ours[0]:.0f} ({ours[2]}, c={ours[1]}) vs "
                f"{chain[0]:.0f} ({chain[2]}, c={chain[1]}): {ratio:.1f}× | {'yes' if ratio >= 5 else 'no'} |"
            )
        dmarc = best("OpenDMARC")
        if dmarc:
            ratio = ours[0] / dmarc[0]
            out.append(
                f"| best ≥ 3× OpenDMARC alone | {ours[0]:.0f} vs {dmarc[0]:.0f} ({dmarc[2]}, c={dmarc[1]}): "
                f"{ratio:.2f}× | {'yes' if ratio >= 3 else 'no'} |"
            )
        for ceiling in ("empty milter (indymilter)", "dmarc-milter, client ignored"):
            e = best(ceiling, "inet")
            o = best("dmarc-milter", "inet")
            if e and o:
                ratio = o[0] / e[0]
                out.append(
                    f"| best ≥ 70 % of {ceiling} (TCP) | {o[0]:.0f} (c={o[1]}) vs {e[0]:.0f} (c={e[1]}): "
                    f"{ratio * 100:.0f} % | {'yes' if ratio >= 0.7 else 'no'} |"
                )
        for transport in ("inet", "unix"):
            r = by.get(("dmarc-milter", transport), {}).get(1)
            if r:
                p50 = r["load"]["latency_us"]["p50"]
                out.append(
                    f"| p50 ≤ 1 ms at concurrency 1 ({transport}) | {ms(p50)} ms | {'yes' if p50 <= 1000 else 'no'} |"
                )

    # Memory per message in flight: HWM growth from concurrency 1 to the
    # highest, per extra connection.
    out.append("\n### Memory per message in flight (dmarc-milter, peak RSS = VmHWM after each level)\n")
    out.append("| message | socket | VmHWM at c=1 MiB | at c=max MiB | c=max | per extra message in flight KiB |")
    out.append("|---|---|--:|--:|--:|--:|")
    for (label, transport, eml), col in group_runs(runs, "dmarc-milter").items():
        lo, hi = min(col), max(col)
        if hi > lo:
            a, b = col[lo], col[hi]
            per = (b["hwm_after_kib"] - a["hwm_after_kib"]) / (hi - lo)
            out.append(
                f"| {eml} | {transport} | {a['hwm_after_kib'] / 1024:.1f} | {b['hwm_after_kib'] / 1024:.1f} "
                f"| {hi} | {per:.0f} |"
            )


def group_runs(runs, label):
    groups = defaultdict(dict)
    for r in runs:
        if r["label"] == label and not r["session_per_message"]:
            groups[(label, r["transport"], r["eml"])][r["concurrency"]] = r
    return groups


def order(label):
    names = [
        "dmarc-milter",
        "dmarc-milter, client ignored",
        "empty milter (indymilter)",
        "OpenDKIM",
        "OpenDMARC",
        "OpenDMARC after OpenDKIM",
        "OpenDKIM→OpenDMARC (serial composition)",
    ]
    return names.index(label) if label in names else len(names)


def tables(path):
    lines = load_lines(path)
    out = []
    for m in (l for l in lines if l["bench"] == "meta"):
        out.append("### Machine and versions\n")
        out.append(
            f"- {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, Linux {m['kernel']}, rustc {m['rustc']}\n"
            f"- commit {m['commit']}{' with changes to ' + m['modified'] if m['modified'].strip() else ''}, {m['date']}\n"
            f"- Postfix {m['postfix']}, OpenDKIM {m['opendkim']}, OpenDMARC {m['opendmarc']}, unbound {m['unbound']}\n"
            f"- load average at the start: {m.get('loadavg', '?')}\n"
        )
    runs = [l for l in lines if l["bench"] == "milter"]
    if runs:
        milter_tables(runs, out)
    memory = [l for l in lines if l["bench"] == "memory"]
    if memory:
        out.append("\n### Resident memory readings\n")
        out.append("| when | VmRSS MiB | VmHWM MiB |\n|---|--:|--:|")
        out.extend(f"| {m['label']} | {m['rss_kib'] / 1024:.1f} | {m['hwm_kib'] / 1024:.1f} |" for m in memory)
    postfix = [l for l in lines if l["bench"] == "postfix"]
    if postfix:
        out.append("\n### Postfix end to end (smtp-source → Postfix → smtp-sink)\n")
        out.append(POSTFIX_HEADER)
        out.extend(postfix_row(r) for r in postfix)
        rates = defaultdict(list)
        for r in postfix:
            rates[r["label"]].append(r["messages"] / r["delivered_seconds"])
        med = {label: statistics.median(v) for label, v in rates.items()}
        if "no milter" in med:
            b = med["no milter"]
            out.append("\n| milters | runs | delivered msg/s (median) | min–max | % of no milter (medians) |")
            out.append("|---|--:|--:|---|--:|")
            for label, v in rates.items():
                out.append(
                    f"| {label} | {len(v)} | {med[label]:.0f} | {min(v):.0f}–{max(v):.0f} | {med[label] / b * 100:.0f} % |"
                )
    print("\n".join(out))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "row":
        line = json.loads(sys.stdin.read())
        print(row(line) if line["bench"] == "milter" else postfix_row(line), file=sys.stderr)
    elif len(sys.argv) == 3 and sys.argv[1] == "tables":
        tables(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
