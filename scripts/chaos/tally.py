#!/usr/bin/env python3
"""tally.py: the figures of one chaos run (scripts/chaos/run.sh), as a table and as JSON.

  tally.py --scenario NAME --workload W --cycles-log FILE --acks LOG --monitor FILE
           --final-lost N --json-out FILE [--json]

--cycles-log: one JSON object per cycle (string values) written by run.sh: cycle, old, new,
  old_epoch, new_epoch, recovery_s, fence_s, rejoined_s, acked, lost, diverged, failures
  ("; "-separated; empty when the cycle went as it must); kill-brick and volume-full add
  snapshot, snapshot_s (the one that committed), snapshot_error (the one that must fail),
  healed_s and note.
--acks: the writer's --detail log ("KEY SHA HOST EPOCH UNIX-TIME").
--monitor: monitor.py's samples.
Old primary serving (reported, not an exit condition): a sample in which a host said primary
with its service running while another host reported a higher epoch. Stale epoch: an acknowledgement whose epoch is lower than the epoch of an acknowledgement
earlier in time. Two primaries: a sample in which two or more hosts said role primary with
their service running. Prints the table (to stderr with --json, which prints the JSON to
stdout); always writes the JSON to --json-out. Exit 0 only when lost, stale and two-primary
counts are 0 and no cycle failed.
"""
import argparse
import json
import math
import sys


def as_float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def as_int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def nearest_rank(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def read_acks(path):
    acks = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                continue  # a torn last line was never acknowledged
            p = line.split()
            if len(p) >= 5 and len(p[1]) == 64:
                acks.append((as_float(p[4]) or 0.0, as_int(p[3]), p[2], p[0]))
    return acks


def stale_acks(acks):
    """Acknowledgements under an epoch lower than one that had acknowledged earlier."""
    out, top = [], None
    for t, epoch, host, key in sorted(acks):
        if epoch is None:
            continue
        if top is not None and epoch < top:
            out.append({"key": key, "host": host, "epoch": epoch, "after_epoch": top, "t": t})
        top = epoch if top is None else max(top, epoch)
    return out


def two_primaries(path):
    """(samples, samples with two serving primaries, samples in which a host served as
    primary while another host already reported a higher epoch: an old primary not yet fenced)"""
    samples, both, behind = 0, [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                s = json.loads(line)
            except ValueError:
                continue
            samples += 1
            serving = sorted(h for h, st in s.get("hosts", {}).items()
                             if st and st.get("role") == "primary" and st.get("service") == "running")
            if len(serving) >= 2:
                both.append({"t": s.get("t"), "hosts": serving})
            epochs = {h: st.get("epoch") for h, st in s.get("hosts", {}).items()
                      if st and isinstance(st.get("epoch"), int)}
            top = max(epochs.values(), default=None)
            old = [h for h in serving if h in epochs and epochs[h] < top]
            if old:
                behind.append({"t": s.get("t"), "serving": old, "epoch": {h: epochs[h] for h in old}, "newest": top})
    return samples, both, behind


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--scenario", "--workload", "--cycles-log", "--acks", "--monitor", "--final-lost", "--json-out"):
        p.add_argument(name, required=True)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    cycles = []
    with open(a.cycles_log) as f:
        for line in f:
            if line.strip():
                cycles.append(json.loads(line))
    acks = read_acks(a.acks)
    stale = stale_acks(acks)
    samples, both, behind = two_primaries(a.monitor)
    recov = [v for v in (as_float(c.get("recovery_s")) for c in cycles) if v is not None]
    fences = [v for v in (as_float(c.get("fence_s")) for c in cycles) if v is not None]
    heals = [v for v in (as_float(c.get("healed_s")) for c in cycles) if v is not None]
    final_lost = as_int(a.final_lost)
    lost_max = max([final_lost if final_lost is not None else 0] +
                   [as_int(c.get("lost")) or 0 for c in cycles])
    failures = ["cycle %s: %s" % (c.get("cycle"), c["failures"]) for c in cycles if c.get("failures")]
    if not cycles:
        failures.append("no cycle ran")
    if final_lost is None:
        failures.append("the final check did not read the service")

    result = {
        "scenario": a.scenario,
        "workload": a.workload,
        "cycles": len(cycles),
        "acknowledged": len(acks),
        "lost": lost_max if final_lost is not None else None,
        "stale_epoch_acks": len(stale),
        "two_primaries_samples": len(both),
        "monitor_samples": samples,
        "old_primary_serving_samples": len(behind),
        "recovery_seconds": {
            "count": len(recov),
            "p50": nearest_rank(recov, 0.50),
            "p99": nearest_rank(recov, 0.99),
            "max": max(recov) if recov else None,
        },
        "fence_seconds_max": max(fences) if fences else None,
        "heal_seconds_max": max(heals) if heals else None,
        "snapshots_committed": sum(1 for c in cycles if c.get("snapshot")),
        "failures": failures,
        "per_cycle": cycles,
        "stale_examples": stale[:10],
        "two_primaries_examples": both[:10],
        "old_primary_serving_examples": behind[:10],
    }
    ok = result["lost"] == 0 and not stale and not both and not failures
    result["ok"] = ok

    def f(v):
        return "-" if v is None else ("%.2f" % v if isinstance(v, float) else str(v))

    out = sys.stderr if a.json else sys.stdout
    print("%-5s %-4s %-4s %6s %6s %9s %7s %7s %6s %s" % (
        "cycle", "old", "new", "epoch", "fence", "recovery", "rejoin", "acked", "lost", "notes / failures"), file=out)

    def notes(c):
        parts = [c.get("diverged")]
        if c.get("snapshot"):
            parts.append("snapshot %s in %s s" % (c["snapshot"], c.get("snapshot_s") or "-"))
        if c.get("snapshot_error"):
            parts.append("failed snapshot: %s" % c["snapshot_error"])
        if c.get("healed_s"):
            parts.append("healed in %s s" % c["healed_s"])
        parts += [c.get("note"), c.get("failures")]
        return " / ".join(x for x in parts if x) or "-"

    for c in cycles:
        print("%-5s %-4s %-4s %6s %6s %9s %7s %7s %6s %s" % (
            c.get("cycle"), c.get("old") or "-", c.get("new") or "-", c.get("new_epoch") or "-",
            c.get("fence_s") or "-", c.get("recovery_s") or "-", c.get("rejoined_s") or "-",
            c.get("acked") or "-", c.get("lost") or "-", notes(c)), file=out)
    r = result["recovery_seconds"]
    print("scenario %s (%s): cycles %d, acknowledged %d, lost %s, stale-epoch acks %d, "
          "two-primary samples %d of %d (old primary serving after a newer epoch: %d), recovery s p50 %s p99 %s max %s%s: %s" % (
              a.scenario, a.workload, len(cycles), len(acks), f(result["lost"]), len(stale), len(both), samples, len(behind),
              f(r["p50"]), f(r["p99"]), f(r["max"]),
              ", fence s max %s" % f(result["fence_seconds_max"]) if fences else "",
              "OK" if ok else "FAILED"), file=out)
    for x in failures:
        print("failure: %s" % x, file=out)
    with open(a.json_out, "w") as jf:
        json.dump(result, jf, indent=1)
        jf.write("\n")
    if a.json:
        print(json.dumps(result, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
