#!/usr/bin/env bash
# lab-smoke.sh: the lab (scripts/lab/up.sh: 3 hosts, each in its own network and mount
# namespace with an etcd member, a glusterd and a brick of a replica-3 GlusterFS volume, and
# lifeboatd with redis and PostgreSQL 15) comes up; lab.json names every host's namespace,
# address, link, API, peer address, etcd endpoint, dirs, config and shell, the client
# namespace, the volume and the workloads, and they are real (the namespaces and links exist,
# the volume is mounted inside every host and not outside, etcd has 3 members, postgres
# answers as the postgres user). Then one host loss (scripts/lib/lab_scenario.sh): the redis
# primary's link is cut and its agent and services SIGKILLed; another host takes over and
# every write acknowledged before the kill (and after it) is on the new primary. Before it,
# one chaos cycle each of kill-primary-host and partition-primary with redis and of
# kill-primary-host with postgres (scripts/chaos/run.sh on this lab), and chaos volume-full
# refused on its plain-dir bricks. Then
# scripts/lab/down.sh, and nothing of the lab is left: no namespace, no mount, no process.
# The lab has its own prefix (lbsmk) and dir (in the temp dir), so a lab of the user's stays.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lb_setup
chmod 755 "$LB_TMP" # the postgres user must reach its data dir in the lab
LAB_RUN_DIR="$LB_TMP/lab"
LAB_RUN_PREFIX=lbsmk
LS_WORK="$LB_TMP/work"
export LIFEBOAT_BIN
. "$LB_TESTS_DIR/../lib/lab_scenario.sh"
trap ls_cleanup EXIT

for t in glusterd gluster etcd redis-server nsenter unshare; do
    command -v "$t" >/dev/null 2>&1 || { lb_skip "lab-smoke: $t is not installed (scripts/setup.sh installs it)" && lb_finish; }
done
[ -c /dev/fuse ] || { lb_skip "lab-smoke: /dev/fuse is missing" && lb_finish; }
[ -x "${LIFEBOATD_BIN:-$LB_REPO_ROOT/.build/release/lifeboatd}" ] || {
    fail "setup" "lifeboatd at ${LIFEBOATD_BIN:-$LB_REPO_ROOT/.build/release/lifeboatd}" "missing (swift build -c release)"
    lb_finish
}
T0=$(date +%s)

# ---------------------------------------------------------------- up, lab.json

ls_up
J="$LAB_RUN_DIR/lab.json"
out="$(python3 - "$J" "$LS_WORK/up.json" <<'PY' 2>&1
import json, sys
lab = json.load(open(sys.argv[1]))
printed = json.load(open(sys.argv[2]))
problems = []
if lab != printed:
    problems.append("stdout differs from lab.json")
def need(obj, path):
    cur = obj
    for k in path.split("."):
        if not isinstance(cur, dict) or cur.get(k) in (None, "", [], {}):
            problems.append("missing " + path)
            return None
        cur = cur[k]
    return cur
for k in ("client.netns", "client.address", "client.shell", "volume.mount", "volume.name", "volume.repository",
          "switch.netns", "etcd.endpoints"):
    need(lab, k)
hosts = lab.get("hosts", [])
if len(hosts) != 3:
    problems.append("%d hosts, not 3" % len(hosts))
for h in hosts:
    for k in ("name", "netns", "address", "link", "link_netns", "api", "peer", "etcd", "config", "shell",
              "dirs.brick", "dirs.backing.redis", "dirs.backing.postgres", "dirs.journal.redis",
              "dirs.journal.postgres", "pids.agent", "pids.etcd", "pids.glusterd", "pids.brick"):
        if need(h, k) is None:
            problems[-1] += " (host %s)" % h.get("name")
names = {w.get("name"): w for w in lab.get("workloads", [])}
for w in ("redis", "postgres"):
    if len(names.get(w, {}).get("service_addresses", [])) != 3:
        problems.append("workload %s: not 3 service addresses" % w)
if names.get("postgres", {}).get("user") != "postgres":
    problems.append("postgres does not run as the postgres user")
dirs = [d for h in hosts for d in (h["dirs"]["brick"], h["dirs"]["backing"]["redis"], h["dirs"]["journal"]["redis"],
                                   h["dirs"]["backing"]["postgres"], h["dirs"]["journal"]["postgres"], h["config"])]
if len(set(dirs)) != len(dirs):
    problems.append("two hosts share a local dir")
print("; ".join(problems) or "ok")
for h in hosts:
    print("HOST", h["name"], h["netns"], h["link"], h["address"], h["config"], h["dirs"]["brick"])
print("LAB", lab["client"]["netns"], lab["volume"]["mount"], lab["switch"]["netns"])
PY
)"
assert_eq "lab.json: every field is there, stdout is the same JSON" ok "$(head -n 1 <<<"$out")"
read -r _ J_CLIENT J_MOUNT J_SW < <(grep '^LAB ' <<<"$out")
assert_eq "lab.json: the client namespace" "$LAB_CLIENT" "${J_CLIENT:-}"
assert_true "lab.json: the client namespace exists" "/run/netns/$LAB_CLIENT" lab_netns_exists "$LAB_CLIENT"
assert_true "the volume is not mounted outside the hosts" "no mount on $LAB_MOUNT in the root namespace" not_mounted "$LAB_MOUNT"
while read -r _ name netns link addr config brick; do
    i=${name#h}
    assert_true "lab.json: $name's network namespace $netns exists" "/run/netns/$netns" lab_netns_exists "$netns"
    assert_match "lab.json: $name's address $addr is on its eth0" "inet $addr/24" "$(ip -n "$netns" -o addr show dev eth0 2>&1)"
    assert_match "lab.json: $name's link $link is on the bridge in $J_SW" "master br0 .*state UP" \
        "$(ip -n "$J_SW" -o link show "$link" 2>&1)"
    assert_true "$name: the volume is mounted inside the host" "a fuse.glusterfs mount on $J_MOUNT" \
        lab_in "$i" awk -v m="$J_MOUNT" '$5 == m && / fuse.glusterfs / { f = 1 } END { exit !f }' /proc/self/mountinfo
    assert_true "$name: its brick exists" "$brick" test -d "$brick"
    assert_match "$name: its config uses the etcd coordinator" "backend: etcd" "$(cat "$config" 2>&1)"
done < <(grep '^HOST ' <<<"$out")
members="$(ip netns exec "$LAB_CLIENT" curl -sf -m 5 -X POST -d '{}' "$(lab_etcd_url 1)/v3/cluster/member/list" 2>&1)"
assert_eq "etcd has 3 members" 3 "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1]).get("members", [])))' "$members" 2>&1)"
if ls_wait_primary 30 postgres 0 -1; then
    pass
    pg_user="$(ip netns exec "$LAB_CLIENT" "$LAB_PGBIN/psql" -h "$(lab_addr "$PRIMARY")" -p "$LAB_PG_PORT" -U postgres -d postgres \
        -XAtc "SELECT current_user" 2>&1)"
    assert_eq "postgres answers on h$PRIMARY from the client namespace" postgres "$pg_user"
    assert_eq "the postmaster of h$PRIMARY runs as the postgres user" postgres "$(ps -o user= -p "${PRIMARY_PID:-0}" 2>&1 | tr -d ' ')"
else
    fail "one primary for postgres" "exactly one agent with role primary and postgres running within 30 s" "$WAIT_SEEN"
fi

# ---------------------------------------------------------------- chaos cycles

# One cycle of each with scripts/chaos/run.sh on this lab (it leaves the lab up and healed):
# kill-primary-host and partition-primary with redis, kill-primary-host with postgres. Each
# must exit 0 (no acknowledged write lost, none under a stale epoch, never two primaries
# serving, every cycle as its scenario says), and its JSON must say so.
chaos_cycle() {
    local scenario=$1 workload=$2 out="$LS_WORK/chaos-$1-$2"
    CHAOS_DIR="$LS_WORK/chaos" "$LB_REPO_ROOT/scripts/chaos/run.sh" --scenario "$scenario" --workload "$workload" \
        --cycles 1 --json --lab "$LAB_RUN_DIR" --prefix "$LAB_RUN_PREFIX" >"$out.json" 2>"$out.err"
    assert_exit "chaos $scenario ($workload), 1 cycle: run.sh exits 0" 0 $? "$out.err"
    assert_eq "chaos $scenario ($workload): lost, stale-epoch acks, two-primary samples" "0 0 0" \
        "$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["lost"], r["stale_epoch_acks"], r["two_primaries_samples"])' "$out.json" 2>&1)"
    lb_info "chaos $scenario ($workload): $(tail -n 3 "$out.err" | grep -E "^scenario" | head -n 1)"
}
chaos_cycle kill-primary-host redis
chaos_cycle partition-primary redis
chaos_cycle kill-primary-host postgres
# volume-full needs bounded bricks (up.sh --brick-size): on this lab's plain-dir bricks run.sh
# refuses at once, naming the way out; up.sh refuses a brick too small for XFS (both cheap)
CHAOS_DIR="$LS_WORK/chaos" "$LB_REPO_ROOT/scripts/chaos/run.sh" --scenario volume-full --lab "$LAB_RUN_DIR" \
    >"$LS_WORK/volume-full.out" 2>"$LS_WORK/volume-full.err"
assert_exit "chaos volume-full on plain-dir bricks is refused" 2 $? "$LS_WORK/volume-full.err"
assert_file_match "chaos volume-full refused: the message names --brick-size" 'bounded size.*--brick-size' "$LS_WORK/volume-full.err"
"$LB_REPO_ROOT/scripts/lab/up.sh" --dir "$LB_TMP/small-bricks" --prefix lbsmb --brick-size 100M >/dev/null 2>"$LS_WORK/small-bricks.err"
assert_exit "up.sh --brick-size 100M (below XFS's 300M) is refused" 2 $? "$LS_WORK/small-bricks.err"
assert_file_match "up.sh --brick-size 100M: one line naming the minimum" 'brick-size must be a size of at least 300M' "$LS_WORK/small-bricks.err"
# the chaos cycles moved the redis primary: the host loss below starts from where it is now
if ls_wait_primary 30 redis 0 -1; then LS_P=$PRIMARY; else fail "one primary for redis after the chaos cycles" "one within 30 s" "$WAIT_SEEN"; fi

# ---------------------------------------------------------------- one host loss

ls_writer_snapshot
ls_host_loss
ls_check_all
lb_info "host loss h$LS_OLD -> h$LS_NEW: $LS_KILL_ACKS acknowledged before the kill, $LS_BEFORE_OK found after ($LS_BEFORE_LOST lost); primary again $(ls_elapsed "$LS_T_KILL" "$LS_T_UP") s after the kill"

# ---------------------------------------------------------------- down: nothing left

# every pid of the lab, before down: the pid files and every process in a lab namespace
lab_pids=()
for f in "$LAB_RUN_DIR"/pids/*; do [ -f "$f" ] && lab_pids+=("$(cat "$f")"); done
for ns in $(lab_namespaces 1 2 3); do mapfile -t -O "${#lab_pids[@]}" lab_pids < <(lab_pids_in_net "$ns"); done
lb_info "down: ${#lab_pids[@]} lab pids before"
T_DOWN=$(date +%s)
if [ "${LB_KEEP:-0}" = 1 ]; then ls_down --keep-logs; else ls_down; fi
assert_exit "scripts/lab/down.sh exits 0" 0 "$LS_DOWN_RC" "$LS_WORK/down.out"
lb_info "down took $(($(date +%s) - T_DOWN)) s: $(tail -n 1 "$LS_WORK/down.out")"
left="$(ip netns list 2>/dev/null | awk -v p="$LAB_RUN_PREFIX-" 'index($1, p) == 1 { print $1 }' | tr '\n' ' ')"
assert_eq "no lab network namespace is left" "" "$left"
assert_eq "no mount is left below the lab dir" "" "$(mounts_under "$LAB_RUN_DIR" | tr '\n' ' ')"
alive=""
for p in "${lab_pids[@]+"${lab_pids[@]}"}"; do pid_alive "$p" && alive+="$p($(cat "/proc/$p/comm" 2>/dev/null)) "; done
assert_eq "no lab process is left" "" "$alive"
if [ "${LB_KEEP:-0}" = 1 ]; then
    assert_eq "only the logs are left of the lab dir (LB_KEEP=1: down.sh --keep-logs)" ".lifeboat-lab logs" \
        "$(ls -A "$LAB_RUN_DIR" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
else
    assert_true "the lab dir is gone" "no $LAB_RUN_DIR" test ! -e "$LAB_RUN_DIR"
fi
"$LB_REPO_ROOT/scripts/lab/down.sh" --dir "$LAB_RUN_DIR" $([ "${LB_KEEP:-0}" = 1 ] && echo --keep-logs) >"$LS_WORK/down-again.out" 2>&1
assert_exit "scripts/lab/down.sh again (nothing there) exits 0" 0 $? "$LS_WORK/down-again.out"
lb_info "took $(($(date +%s) - T0)) s"
lb_finish
