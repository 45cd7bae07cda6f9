"""Turns benches/compare.sh's JSON lines into the markdown table of docs/performance.md.

    table.py RESULTS COMMAND SHORT [SKIPPED...]   print the table
    table.py --update FILE TABLE                  replace the table between the markers in FILE
"""
import datetime
import json
import os
import platform
import statistics
import sys

START, END = "<!-- bench:start -->", "<!-- bench:end -->"

if sys.argv[1] == "--update":
    path, table = sys.argv[2], open(sys.argv[3]).read()
    text = open(path).read()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    open(path, "w").write(f"{head}{START}\n{table}{END}{tail}")
    sys.exit(0)

results, command, short, skipped = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
rows = [json.loads(line) for line in open(results) if line.strip()]
labels = []
for r in rows:
    if r["label"] not in labels and not r["label"].endswith("-cpu"):
        labels.append(r["label"])


def get(label, figure, **match):
    """The figure's result: each number the median over the rounds that measured it."""
    found = [r for r in rows
             if r["label"] == label and r["figure"] == figure and all(r.get(k) == v for k, v in match.items())]
    if not found:
        return None
    merged = dict(found[0])
    for key, value in found[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in found if isinstance(r.get(key), (int, float))]
            merged[key] = statistics.median(values)
    return merged


sizes = sorted({r["conns"] for r in rows if r["figure"] == "throughput"})
big = max(sizes) if sizes else 1


def fmt(value, ratio=None, unit=""):
    if value is None:
        return "—"
    text = f"{value:,.1f}{unit}" if value < 100 else f"{value:,.0f}{unit}"
    return f"{text} ({ratio:.2f}x)" if ratio is not None else text


def figure_row(label):
    cells = []

    def ratio_cell(figure, key, lower_is_better=False, **match):
        r, d = get(label, figure, **match), get("direct", figure, **match)
        if not r:
            return "—"
        ratio = (r[key] / d[key]) if d and d[key] else None
        return fmt(r[key], ratio)

    cells.append(ratio_cell("throughput", "mb_per_s", conns=1, size=65536, base64=False))
    cells.append(ratio_cell("throughput", "mb_per_s", conns=big, size=65536, base64=False))
    cells.append(ratio_cell("latency", "p50_us"))
    lat = get(label, "latency")
    cells.append(fmt(lat["p99_us"]) if lat else "—")
    cells.append(fmt(lat["cpu_us_per_round_trip"])
                 if lat and lat.get("cpu_us_per_round_trip") is not None else "—")
    cells.append(ratio_cell("messages", "per_s"))
    cells.append(ratio_cell("connections", "per_s"))
    small = get(label, "throughput", conns=1, size=65536, base64=False)
    huge = get(label, "throughput", conns=1, size=16 << 20, base64=False)
    cells.append(fmt(huge["mb_per_s"], huge["mb_per_s"] / small["mb_per_s"]) if huge and small else "—")
    b64 = get(label, "throughput", conns=1, size=65536, base64=True)
    cells.append(fmt(b64["mb_per_s"], b64["mb_per_s"] / small["mb_per_s"]) if b64 and small else "—")
    idle = get(label, "idle")
    cells.append(f"{idle['kib_per_session']:.1f} at {idle['sessions']:,}" if idle else "—")
    cpu = get(label + "-cpu", "throughput") or get(label, "throughput", conns=1, size=65536, base64=False)
    cells.append(f"{cpu['cpu_s_per_gb']:.2f}" if cpu and cpu.get("cpu_s_per_gb") is not None else "—")
    return cells


cpu_model = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass

out = []
out.append(f"{'Smoke run (tiny durations, debug build, not a measurement)' if short else 'Run'} of "
           f"{datetime.date.today().isoformat()} on {os.cpu_count()} × {cpu_model}, "
           f"Linux {platform.release()}: `{command}`\n")
out.append(f"Ratios are to direct TCP in the same run (for the 16 MiB and base64 columns: to the same "
           f"proxy's 64 KiB binary throughput). Throughput in MB/s echoed, latency in µs, idle in KiB "
           f"per session at that many sessions (PSS of the proxy's process tree), CPU in proxy "
           f"seconds per GB echoed (children included), and in proxy µs per round trip in the "
           f"latency figure.\n")
header = ["", "MB/s, 1 conn", f"MB/s, {big} conns", "p50 µs", "p99 µs", "CPU µs/round trip",
          "msgs/s, 50 conns",
          "conns/s", "16 MiB msgs", "base64", "idle KiB/session", "CPU s/GB"]
out.append("| " + " | ".join(header) + " |")
out.append("|" + " --- |" * len(header))
for label in labels:
    out.append(f"| {label} | " + " | ".join(figure_row(label)) + " |")

# Over HTTP/2 against over HTTP/1.1, in this run (issue 23: at least 0.8x on throughput and
# msgs/s, at most 8 KiB per idle session): ours, and the WebSocket floor, which shows what the
# h2 crate and HTTP/2's framing cost a bridge that does nothing else.
def h2_pairs(h2, h1):
    pairs = []
    for name, figure, key, match in [
            ("MB/s, 1 session", "throughput", "mb_per_s", dict(conns=1, size=65536, base64=False)),
            (f"MB/s, {big} sessions", "throughput", "mb_per_s", dict(conns=big, size=65536, base64=False)),
            ("msgs/s, 50 sessions", "messages", "per_s", {}),
            ("p50 µs", "latency", "p50_us", {}),
            ("sessions/s", "connections", "per_s", {})]:
        a, b = get(h2, figure, **match), get(h1, figure, **match)
        if a and b and b[key]:
            pairs.append(f"{name} {fmt(a[key])} vs {fmt(b[key])} ({a[key] / b[key]:.2f}x)")
    return pairs


ours_h2 = h2_pairs("ours-h2", "ours")
idle_h2 = get("ours-h2", "idle")
if idle_h2:
    ours_h2.append(f"idle {idle_h2['kib_per_session']:.1f} KiB per session at "
                   f"{idle_h2['sessions']:,} over {-(-idle_h2['sessions'] // 100):,} connections")
if ours_h2:
    out.append("\nOurs over HTTP/2 (`ours-h2`) against ours over HTTP/1.1 in this run: "
               + "; ".join(ours_h2) + ".")
floor_h2 = h2_pairs("ws-floor-h2", "ws-floor")
if floor_h2:
    out.append("\nThe WebSocket floor over HTTP/2 (`ws-floor-h2`) against it over HTTP/1.1 in this "
               "run: " + "; ".join(floor_h2) + ".")
# Ours polling for the client's answer (`--busy-poll 50`) against ours sleeping (issue 25:
# the round trip an interactive user feels), with what the polling costs in CPU.
bp_pairs = []
for name, figure, key, match in [
        ("p50 µs", "latency", "p50_us", {}),
        ("p99 µs", "latency", "p99_us", {}),
        ("CPU µs per round trip", "latency", "cpu_us_per_round_trip", {}),
        ("msgs/s, 50 connections", "messages", "per_s", {}),
        ("MB/s, 1 connection", "throughput", "mb_per_s", dict(conns=1, size=65536, base64=False))]:
    a, b = get("ours-bp", figure, **match), get("ours", figure, **match)
    if a and b and a.get(key) is not None and b.get(key):
        bp_pairs.append(f"{name} {fmt(a[key])} vs {fmt(b[key])} ({a[key] / b[key]:.2f}x)")
if bp_pairs:
    out.append("\nOurs with `--busy-poll 50` (`ours-bp`) against ours with the default (no polling) "
               "in this run: " + "; ".join(bp_pairs) + ".")
if skipped:
    out.append("\nSkipped: " + "; ".join(skipped) + ".")
print("\n".join(out))
