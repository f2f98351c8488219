#!/usr/bin/env python3
"""failover_helper.py: the client side of scripts/bench/failover.sh (standard library only).

Agent status (GET URL/v1/status, the first workload; fields and the primary: scripts/lib/cluster.sh):
  wait-caught-up TIMEOUT URL        until every peer of URL acked its durable position; prints
                                    "SECONDS POSITION"
Services:
  wait-answer T0 TIMEOUT ADDR:PORT...
                                    polls each address every 10 ms (HTTP GET, 200 expected)
                                    until one answers; prints "ADDR:PORT SECONDS_SINCE_T0 BODY"
                                    (T0: a Unix time with fractions)
Journal streaming:
  stream-watch OUT PRIMARY_URL PEER_URL...
                                    samples every 0.1 s, until SIGTERM: time, the primary's
                                    durable seq, each peer's acked seq and bytes_sent (primary's
                                    status) and lifeboat_bytes_received_total (peer's /metrics),
                                    one TSV line per sample
  stream-report OUT BYTES T_START T_WRITTEN
                                    figures from stream-watch's file (JSON)
Data:
  write-delta ROOT BYTES BLOCK SEED  random distinct BLOCK-aligned blocks over the regular files
                                    below ROOT, overwritten in place (pwrite + fsync each);
                                    prints "BLOCKS BYTES SECONDS"
Parsing:
  fio FILE                          JSON: iops, write clat and fsync latency p50/p99 (ms)
  rsync FILE                        JSON: total_bytes_sent, literal_data, matched_data, ...
  report RESULTS                    the summary table (RESULTS: TSV of section, key, value)
"""
import json
import os
import random
import re
import signal
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from agent_status import fetch_workload, get_text as get  # noqa: E402
from report import text_table  # noqa: E402


def workload(url, timeout=2.0):
    return fetch_workload(url, None, timeout)[1] or {}


def seq(pos):
    """The SEQ of "EPOCH:SEQ" (0 for none)."""
    if not isinstance(pos, str) or ":" not in pos:
        return 0
    return int(pos.rsplit(":", 1)[1])


def cmd_wait_caught_up(timeout, url):
    t0 = time.time()
    end = t0 + float(timeout)
    last = ""
    while True:
        try:
            w = workload(url, 1.0)
            durable = w.get("durable_position")
            peers = w.get("peers") or []
            last = "durable %s, peers %s" % (durable, [(p.get("host"), p.get("acked")) for p in peers])
            if peers and all(p.get("connected") and p.get("acked") == durable for p in peers):
                print("%.3f %s" % (time.time() - t0, durable))
                return
        except Exception as e:
            last = str(e)
        if time.time() >= end:
            print("peers not caught up within %s s: %s" % (timeout, last), file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)


def probe(target):
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5) as s:
            s.settimeout(1.0)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        if data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200"):
            return data.split(b"\r\n\r\n", 1)[-1].decode("utf-8", "replace").strip()
    except OSError:
        pass
    return None


def cmd_wait_answer(t0, timeout, *targets):
    t0 = float(t0)
    end = time.time() + float(timeout)
    while time.time() < end:
        for t in targets:
            body = probe(t)
            if body is not None:
                print("%s %.3f %s" % (t, time.time() - t0, "_".join(body.split())))
                return
        time.sleep(0.01)
    print("no service answered within %s s" % timeout, file=sys.stderr)
    sys.exit(1)


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def cmd_stream_watch(out, primary, *peers):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(out, "w") as f:
        while not stop:
            t = time.time()
            try:
                w = workload(primary, 1.0)
                row = [t, seq(w.get("durable_position"))]
                byhost = {p.get("host"): p for p in (w.get("peers") or [])}
                for url in peers:
                    m = get(url.rstrip("/") + "/metrics", 1.0)
                    host = re.search(r'host="([^"]+)"', m)
                    p = byhost.get(host.group(1) if host else None, {})
                    row += [seq(p.get("acked")), p.get("bytes_sent", 0), int(metric(m, "lifeboat_bytes_received_total"))]
                f.write("\t".join(str(x) for x in row) + "\n")
                f.flush()
            except Exception as e:
                print("stream-watch: %s" % e, file=sys.stderr)
            d = 0.1 - (time.time() - t)
            if d > 0 and not stop:
                time.sleep(d)


def cmd_stream_report(out, nbytes, t_start, t_written):
    """From stream-watch's samples: when each peer had received the written bytes."""
    nbytes, t_start, t_written = int(nbytes), float(t_start), float(t_written)
    rows = [[float(x) for x in line.split("\t")] for line in open(out) if line.strip()]
    npeers = (len(rows[0]) - 2) // 3
    res = {"bytes": nbytes, "write_seconds": t_written - t_start, "peers": []}
    base = [r for r in rows if r[0] <= t_start] or rows[:1]
    base = base[-1]
    final_seq = rows[-1][1]
    for k in range(npeers):
        ia, isent, irecv = 2 + 3 * k, 3 + 3 * k, 4 + 3 * k
        recv0 = base[irecv]
        done = next((r for r in rows if r[ia] >= final_seq and r[irecv] - recv0 > 0 and r[0] >= t_start), None)
        received = rows[-1][irecv] - recv0
        # the fastest 1-second window
        peak = 0.0
        j = 0
        for i in range(len(rows)):
            while rows[i][0] - rows[j][0] > 1.0:
                j += 1
            dt = rows[i][0] - rows[j][0]
            if dt >= 0.5:
                peak = max(peak, (rows[i][irecv] - rows[j][irecv]) / dt)
        pr = {"received_bytes": received, "sent_bytes": rows[-1][isent] - base[isent], "peak_1s_mbps": peak / 1e6}
        # what had arrived when the writer's fsync returned, and how fast the rest drained
        at_w = [r for r in rows if r[0] <= t_written]
        got_w = (at_w[-1][irecv] - recv0) if at_w else 0
        pr["received_at_fsync_bytes"] = got_w
        if t_written > t_start:
            pr["during_write_mbps"] = got_w / (t_written - t_start) / 1e6
        if done:
            secs = done[0] - t_start
            pr["acked_seconds"] = secs
            pr["mbps"] = received / secs / 1e6 if secs > 0 else 0
            if done[0] - t_written > 0.15 and received - got_w > 0:
                pr["drain_mbps"] = (received - got_w) / (done[0] - t_written) / 1e6
        res["peers"].append(pr)
    print(json.dumps(res))


def cmd_write_delta(root, nbytes, block, seed):
    nbytes, block = int(nbytes), int(block)
    rng = random.Random(int(seed))
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                n = os.path.getsize(p) // block
                if n:
                    files.append((p, n))
    total = sum(n for _, n in files)
    count = min(total, max(1, nbytes // block))
    picks = sorted(rng.sample(range(total), count))
    t0 = time.perf_counter()
    fi, base, fd = 0, 0, None
    for b in picks:
        while b >= base + files[fi][1]:
            base += files[fi][1]
            fi += 1
            if fd is not None:
                os.close(fd)
                fd = None
        if fd is None:
            fd = os.open(files[fi][0], os.O_WRONLY)
        os.pwrite(fd, os.urandom(block), (b - base) * block)
        os.fsync(fd)
    if fd is not None:
        os.close(fd)
    print("%d %d %.3f" % (count, count * block, time.perf_counter() - t0))


def cmd_fio(path):
    text = open(path).read()
    doc = json.loads(text[text.index("{"):])
    job = doc["jobs"][0]
    if job.get("error"):
        sys.exit("fio job error %s" % job["error"])
    w = job["write"]
    s = job.get("sync") or {}

    def pct(d, p):
        v = (d.get("percentile") or {}).get(p)
        return v / 1e6 if v is not None else None

    clat = w.get("clat_ns") or {}
    slat = s.get("lat_ns") or {}
    out = {"iops": w["iops"], "ios": w.get("total_ios"),
           "write_p50_ms": pct(clat, "50.000000"), "write_p99_ms": pct(clat, "99.000000"),
           "fsync_p50_ms": pct(slat, "50.000000"), "fsync_p99_ms": pct(slat, "99.000000"),
           "fsync_mean_ms": slat["mean"] / 1e6 if "mean" in slat else None}
    # one write + one fsync per I/O: the latency the application sees per 8 KiB write
    if w["iops"]:
        out["per_io_ms"] = 1000.0 / w["iops"]
    print(json.dumps(out))


def cmd_rsync(path):
    text = open(path).read()
    out = {}
    for key, name in [("files", "Number of files"), ("files_transferred", "Number of regular files transferred"),
                      ("total_file_size", "Total file size"), ("literal_data", "Literal data"),
                      ("matched_data", "Matched data"), ("total_bytes_sent", "Total bytes sent"),
                      ("total_bytes_received", "Total bytes received")]:
        m = re.search(r"^%s: ([0-9,]+)" % re.escape(name), text, re.M)
        if m:
            out[key] = int(m.group(1).replace(",", ""))
    print(json.dumps(out))


# ---------------------------------------------------------------- report

def cmd_report(path):
    data = {}
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        sec, key, val = line.split("\t", 2)
        data.setdefault(sec, {})[key] = val

    def num(sec, key, default=None):
        try:
            return float(data[sec][key])
        except (KeyError, ValueError):
            return default

    def f(v, spec="%.3f"):
        return "-" if v is None else spec % v

    def mib(v):
        return "-" if v is None else "%.2f" % (v / 1048576)

    def table(hdr, rows):
        print(text_table(hdr, rows, [False] + [True] * (len(hdr) - 1)))

    goals = []
    # failover
    fo = sorted((s for s in data if s.startswith("failover ")), key=lambda s: (data[s].get("mode"), float(data[s].get("ttl", 0))))
    if fo:
        print("\n1. Failover by part (seconds; new primary's last_recovery, kill->answer measured by the bench)\n")
        hdr = ["mode", "ttl", "kill->answer", "lease left", "detection", "lease", "snap load", "delta", "replay",
               "mount", "service", "total", "total-detect", "new primary"]
        rows = []
        for s in fo:
            d = data[s]
            if d.get("error"):
                rows.append([d.get("mode"), d.get("ttl"), "FAILED: " + d["error"]] + [""] * (len(hdr) - 3))
                continue
            tot, det = num(s, "total_seconds"), num(s, "detection_seconds")
            after = tot - det if tot is not None and det is not None else None
            rows.append([d.get("mode"), d.get("ttl") + "s", f(num(s, "kill_to_answer")), f(num(s, "lease_left_at_kill")),
                         f(det), f(num(s, "lease_seconds")), f(num(s, "snapshot_load_seconds")), f(num(s, "delta_seconds")),
                         f(num(s, "replay_seconds")), f(num(s, "mount_seconds")), f(num(s, "service_start_seconds")),
                         f(tot), f(after), d.get("new_primary", "-")])
            if after is not None:
                goals.append(["everything after detection (%s, ttl %ss) < 3 s for %s MiB" % (d.get("mode"), d.get("ttl"), mib(num(s, "state_bytes"))),
                              "%.3f s" % after, "met" if after < 3 else "missed"])
        table(hdr, rows)
        print("\nkill->answer: SIGKILL of the primary's agent and service until the new primary's service answered "
              "(the bench polls every 10 ms); lease left: the old lease's expiry minus the kill time (from the report's "
              "started_at - detection_seconds); detection: lease expiry -> a peer took it; total: lifeboat's "
              "total_seconds, lease expiry -> the agent's own health probe (curl, every 50 ms) passed, so "
              "kill->answer ~ lease left + total - up to one probe; total-detect: everything after detection")
        print("\nDelta after the newest snapshot\n")
        hdr = ["mode", "ttl", "written MiB", "blocks", "journal recs", "journal MiB", "jrnl/written", "local recs",
               "fetched recs", "fetched MiB", "from", "replayed", "snapshot MiB"]
        rows = []
        for s in fo:
            d = data[s]
            if d.get("error"):
                continue
            w, j = num(s, "delta_written_bytes"), num(s, "journal_delta_bytes")
            fetched = num(s, "delta_bytes")
            rows.append([d.get("mode"), d.get("ttl") + "s", mib(w), d.get("delta_blocks", "-"), d.get("journal_delta_records", "-"),
                         mib(j), f(j / w if w and j is not None else None, "%.3fx"), d.get("local_records", "-"),
                         d.get("delta_records", "-"), mib(fetched), d.get("delta_peer", "-"), d.get("replayed_records", "-"),
                         mib(num(s, "snapshot_bytes"))])
            if w and j is not None:
                goals.append(["delta bytes / bytes written after the snapshot <= 1.2x (%s, ttl %ss)" % (d.get("mode"), d.get("ttl")),
                              "%.3fx (journal %s MiB / written %s MiB)" % (j / w, mib(j), mib(w)), "met" if j / w <= 1.2 else "missed"])
        table(hdr, rows)
        print("\nwritten: random distinct 8 KiB-aligned blocks overwritten in place after the snapshot (pwrite+fsync each); "
              "journal: the records after the snapshot's position and the bytes a peer received for them "
              "(lifeboat_bytes_received_total); local recs: records after the snapshot the new primary already held "
              "(it had received the stream); fetched: delta_records / delta_bytes it fetched from delta_peer")
    # rsync
    if "rsync" in data:
        r = data["rsync"]
        print("\n2. rsync -a --stats --no-whole-file (post-change data -> restore of the snapshot) vs Lifeboat's delta\n")
        if r.get("error"):
            print("FAILED: " + r["error"])
        else:
            s0 = fo[0] if fo else None
            lb_secs = None
            if s0:
                lb_secs = (num(s0, "delta_seconds") or 0) + (num(s0, "replay_seconds") or 0)
            hdr = ["", "bytes sent MiB", "literal MiB", "matched MiB", "seconds"]
            rows = [["rsync", mib(num("rsync", "total_bytes_sent")), mib(num("rsync", "literal_data")),
                     mib(num("rsync", "matched_data")), f(num("rsync", "seconds"))]]
            if s0:
                rows.append(["lifeboat journal delta (%s)" % s0.split(" ", 1)[1], mib(num(s0, "journal_delta_bytes")), "-", "-",
                             f(lb_secs)])
            table(hdr, rows)
            jd = num(s0, "journal_delta_bytes") if s0 else None
            sent, lit = num("rsync", "total_bytes_sent"), num("rsync", "literal_data")
            if jd and sent:
                print("\nlifeboat delta / rsync bytes sent: %.3fx; / rsync literal data: %s; rsync seconds / lifeboat "
                      "delta+replay seconds: %s" % (jd / sent, "%.3fx" % (jd / lit) if lit else "-",
                                                     "%.1fx" % (num("rsync", "seconds") / lb_secs) if lb_secs else "-"))
            print("rsync total file size %s MiB, files %s; lifeboat seconds = delta_seconds + replay_seconds of the "
                  "recovery (the delta was already on the new primary)" % (mib(num("rsync", "total_file_size")), r.get("files", "-")))
            if num("rsync", "restore_seconds") is not None:
                print("for the recovery's parts: `lifeboat restore` of the same snapshot took %s s (cold cache), "
                      "then `sync -f` of the restored tree %s s (a recovery does not wait for that flush: the "
                      "journal covers the restored files until the agent's checkpoint flushes them)" %
                      (f(num("rsync", "restore_seconds")), f(num("rsync", "restore_syncfs_seconds"))))
    # streaming
    streams = [k for k in ("stream disk", "stream tmpfs") if k in data]
    if streams:
        print("\n3. Journal streaming to the peers (sequential write into the primary's data dir, fsync at the end)\n")
        hdr = ["dirs on", "peer", "received MiB", "until acked s", "MB/s", "peak 1 s MB/s", "MiB at fsync",
               "MB/s during write", "drain MB/s"]
        rows, notes = [], []
        for k in streams:
            st = data[k]
            where = k.split()[1]
            if st.get("error"):
                rows.append([where, "FAILED: " + st["error"]] + [""] * (len(hdr) - 2))
                continue
            rep = json.loads(st["report"])
            for i, p in enumerate(rep["peers"]):
                rows.append([where, st.get("peer%d" % i, str(i)), mib(p["received_bytes"]), f(p.get("acked_seconds")),
                             f(p.get("mbps"), "%.1f"), f(p.get("peak_1s_mbps"), "%.1f"), mib(p.get("received_at_fsync_bytes")),
                             f(p.get("during_write_mbps"), "%.1f"), f(p.get("drain_mbps"), "%.1f")])
            notes.append("%s: wrote %s MiB in %.3f s (%.1f MB/s into the mount); the primary sent %.1f MB/s to both peers together" %
                         (where, mib(rep["bytes"]), rep["write_seconds"], rep["bytes"] / rep["write_seconds"] / 1e6,
                          sum(p.get("mbps") or 0 for p in rep["peers"])))
            m = min((p.get("mbps") or 0) for p in rep["peers"])
            goals.append(["streaming to a peer >= 200 MB/s (dirs on %s)" % where, "%.1f MB/s (slowest peer)" % m,
                          "met" if m >= 200 else "missed"])
        table(hdr, rows)
        print("\n" + "\n".join(notes))
        print("dd bs=1M conv=fsync from a file in the page cache, replication async; MB/s = bytes received / seconds "
              "from the start of the write until the peer acked the last record (bounded by the write rate into the "
              "mount); MiB at fsync: received when dd's fsync returned; drain: the rest / the time from then until "
              "acked; disk: every host's dirs on this machine's one disk; tmpfs: on /dev/shm")
    # fsync
    fs = [s for s in ("fsync native", "fsync async", "fsync sync") if s in data]
    if fs:
        print("\n4. fsync latency: fio 8 KiB random writes, fsync after each (psync, iodepth 1)\n")
        hdr = ["target", "IOPS", "vs native", "fsync p50 ms", "fsync p99 ms", "write p50 ms", "write p99 ms"]
        rows = []
        nat = num("fsync native", "iops")
        for s in fs:
            if data[s].get("error"):
                rows.append([s.split()[1], "FAILED: " + data[s]["error"], "", "", "", "", ""])
                continue
            io = num(s, "iops")
            rows.append([s.split()[1] if s != "fsync native" else "native", f(io, "%.0f"),
                         f(io / nat if nat and io else None, "%.2fx"), f(num(s, "fsync_p50_ms")), f(num(s, "fsync_p99_ms")),
                         f(num(s, "write_p50_ms")), f(num(s, "write_p99_ms"))])
        table(hdr, rows)
        a, sy = num("fsync async", "fsync_p50_ms"), num("fsync sync", "fsync_p50_ms")
        n50 = num("fsync native", "fsync_p50_ms")
        parts = []
        if a and n50:
            parts.append("fsync p50 async/native %.2fx" % (a / n50))
        if sy and n50:
            parts.append("sync/native %.2fx" % (sy / n50))
        if sy and a:
            parts.append("sync/async %.2fx" % (sy / a))
        if parts:
            print("\n" + ", ".join(parts) + "; native: a plain dir on the backing dirs' filesystem")
    if goals:
        print("\nGoals (informational; timing never fails the run)\n")
        table(["goal", "measured", "result"], goals)


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"wait-caught-up": cmd_wait_caught_up, "wait-answer": cmd_wait_answer, "stream-watch": cmd_stream_watch,
          "stream-report": cmd_stream_report, "write-delta": cmd_write_delta, "fio": cmd_fio, "rsync": cmd_rsync,
          "report": cmd_report}.get(cmd)
    if fn is None:
        sys.exit("failover_helper.py: unknown command %s (see --help)" % cmd)
    fn(*args)


if __name__ == "__main__":
    main()
