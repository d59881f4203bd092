#!/usr/bin/env bash
# Runs the core integration tests with every berth process under valgrind memcheck, then
# summarises the logs. Builds nothing: it uses an existing berth binary.
#
#   scripts/valgrind.sh                      the default set of test files (below)
#   scripts/valgrind.sh test_proxy.py -k big  other files / any pytest arguments instead
#   scripts/valgrind.sh --scan-only          only summarise the logs of the last run
#
# Environment:
#   BERTH_REAL_BIN        berth binary (default build/berth); copied into the log dir first,
#                         so a rebuild during the run does not change the binary under test
#   BERTH_VALGRIND_DIR    logs (default /tmp/berth-vg); its vg.*.log are removed at start
#   BERTH_VALGRIND_ARGS   extra valgrind options, e.g. "--track-origins=yes"
#   BERTH_START_TIMEOUT   fixture's wait for "ready" (default here 60 s; conftest's own: 10)
#   BERTH_STOP_TIMEOUT    fixture's wait after SIGTERM before SIGKILL (default here 90 s; the
#                         leak check runs at exit and must not be killed)
#   BERTH_VALGRIND_FAIL_ON_TESTS=1   also exit non-zero (2) when pytest reports failures
#
# Exit status: 1 when any log has memcheck errors, definite or indirect leaks, or is
# incomplete (the process was killed before valgrind's exit report); else 2 when tests
# failed and BERTH_VALGRIND_FAIL_ON_TESTS=1; else 0.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${BERTH_VALGRIND_DIR:-/tmp/berth-vg}"
export BERTH_VALGRIND_DIR="$dir"

# Core test files (about 8 minutes under valgrind with one free core).
DEFAULT_FILES=(test_proxy.py test_bodies.py test_errors.py test_limits.py test_rules.py
    test_actions.py test_registration.py test_draining.py test_health_active.py
    test_reload.py test_nlb_tcp.py test_nlb_udp.py test_tls.py test_slow_clients.py
    test_desync_modes.py test_discovery.py test_fleet.py)
# Left out of the default run: their assertions are about timing or throughput, which
# valgrind's slowdown breaks, and they say nothing about memory errors. Name one on the
# command line to run it anyway (its memcheck log is still useful when the assertion fails).
DESELECT=(
    # asserts a target is still "initial" 400 ms after registration, across 6 requests
    "test_health_active.py::test_traffic_only_to_healthy_then_fail_open"
    # asserts >= 98% of a 20000-datagram burst arrives within 5 s (about 48% under valgrind);
    # the UDP GSO send path it exercises is also hit by test_udp_datagram_boundaries_and_sizes
    "test_nlb_udp.py::test_udp_sustained_stream_then_lone_datagrams"
)

scan() {
    /usr/bin/python3 - "$dir" <<'PYEOF'
import glob, os, re, sys
from collections import OrderedDict

d = sys.argv[1]
tests = {}
try:
    with open(os.path.join(d, "pids.txt"), errors="replace") as f:
        for ln in f:
            pid, _, rest = ln.rstrip("\n").partition(" ")
            tests[pid] = rest
except FileNotFoundError:
    pass

FRAMES = 8      # frames shown of an error's own stack
SUBFRAMES = 4   # of the allocation / free stacks that follow it
logs = sorted(glob.glob(os.path.join(d, "vg.*.log")),
              key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))
if not logs:
    print("no vg.*.log files in %s" % d)
    sys.exit(1)

def num(s):
    return int(s.replace(",", ""))

bad_logs = 0
tot = {"errors": 0, "definite": 0, "indirect": 0, "possible": 0,
       "definite_blocks": 0, "indirect_blocks": 0, "possible_blocks": 0}
incomplete = []
uniq = OrderedDict()   # (kind, frames) -> [count, set of tests, extra of the first]

for path in logs:
    pid = re.sub(r"\D", "", os.path.basename(path))
    with open(path, errors="replace") as f:
        raw = f.read().splitlines()
    lines = [re.sub(r"^==\d+== ?", "", ln) for ln in raw if re.match(r"^==\d+==", ln)]
    text = "\n".join(lines)
    m = re.search(r"ERROR SUMMARY: ([\d,]+) errors from ([\d,]+) contexts", text)
    errs = num(m.group(1)) if m else None
    leak = {}
    for kind in ("definitely", "indirectly", "possibly"):
        mm = re.search(r"%s lost: ([\d,]+) bytes in ([\d,]+) blocks" % kind, text)
        leak[kind] = (num(mm.group(1)), num(mm.group(2))) if mm else (0, 0)
    # Records: blocks separated by empty lines; a record's 2nd line is "at 0x..." frame.
    records, cur = [], []
    for ln in lines + [""]:
        if ln.strip() == "":
            if cur:
                records.append(cur)
            cur = []
        else:
            cur.append(ln)
    problems = []
    for rec in records:
        if rec and re.match(r"^Thread \d+", rec[0]):
            rec = rec[1:]
        if len(rec) < 2 or not re.match(r"^\s+(at|by) 0x", rec[1]):
            continue
        head = rec[0]
        if "lost in loss record" in head:
            if "possibly lost" in head or "still reachable" in head:
                continue
            kind = re.sub(r"^.*are (\w+ly) lost.*$", r"\1 lost", head)
        else:
            kind = re.sub(r"\d+", "N", head)
        # Segments: the error's own stack, then e.g. "Address ... alloc'd" / "Block was
        # alloc'd at" with their stacks (shown shorter).
        segs = [[head, []]]
        for x in rec[1:]:
            if re.match(r"^\s+(at|by) 0x", x):
                segs[-1][1].append(re.sub(r"0x[0-9A-Fa-f]+: ", "", x.strip()))
            else:
                segs.append([x.strip(), []])
        frames = segs[0][1][:FRAMES]
        extra = [(lab, fr[:SUBFRAMES]) for lab, fr in segs[1:]]
        problems.append((head, frames, extra))
        key = (kind, tuple(frames))
        u = uniq.setdefault(key, [0, set(), extra])
        u[0] += 1
        u[1].add(tests.get(pid, "?").split(" | ")[0])
    complete = errs is not None
    has_bad = (not complete) or errs > 0 or leak["definitely"][0] or leak["indirectly"][0]
    tot["errors"] += errs or 0
    tot["definite"] += leak["definitely"][0]; tot["definite_blocks"] += leak["definitely"][1]
    tot["indirect"] += leak["indirectly"][0]; tot["indirect_blocks"] += leak["indirectly"][1]
    tot["possible"] += leak["possibly"][0]; tot["possible_blocks"] += leak["possibly"][1]
    if not complete:
        incomplete.append(path)
    if has_bad:
        bad_logs += 1
    flag = "BAD " if has_bad else "ok  "
    print("%s%s  %s" % (flag, os.path.basename(path), tests.get(pid, "(test unknown)")))
    print("      ERROR SUMMARY: %s | definitely lost: %d B/%d blk | indirectly lost: %d B/%d blk"
          " | possibly lost: %d B/%d blk%s"
          % ("-" if errs is None else errs, leak["definitely"][0], leak["definitely"][1],
             leak["indirectly"][0], leak["indirectly"][1], leak["possibly"][0],
             leak["possibly"][1],
             "" if complete else "  [INCOMPLETE: no exit report, process killed?]"))
    for head, frames, extra in problems:
        print("      " + head)
        for fr in frames:
            print("          " + fr)
        for lab, fr in extra:
            print("        " + lab)
            for x in fr:
                print("            " + x)

print()
print("=== valgrind summary: %d berth processes, %d with problems ===" % (len(logs), bad_logs))
print("memcheck errors: %d | definitely lost: %d B in %d blocks | indirectly lost: %d B in %d "
      "blocks | possibly lost: %d B in %d blocks"
      % (tot["errors"], tot["definite"], tot["definite_blocks"], tot["indirect"],
         tot["indirect_blocks"], tot["possible"], tot["possible_blocks"]))
if incomplete:
    print("incomplete logs (no exit report): %d: %s"
          % (len(incomplete), " ".join(os.path.basename(p) for p in incomplete)))
if uniq:
    print("\n=== distinct problems (kind, first %d frames) ===" % FRAMES)
    for (kind, frames), (count, ts, extra) in uniq.items():
        print("%dx %s" % (count, kind))
        for fr in frames:
            print("      " + fr)
        for lab, fr in extra:
            print("    " + re.sub(r"0x[0-9A-Fa-f]+", "0x..", lab))
            for x in fr:
                print("        " + x)
        print("   tests: " + ", ".join(sorted(ts)))
sys.exit(1 if bad_logs else 0)
PYEOF
}

if [ "${1:-}" = "--scan-only" ]; then
    scan
    exit $?
fi

command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 1; }
real="${BERTH_REAL_BIN:-$root/build/berth}"
[ -x "$real" ] || { echo "no berth binary at $real (build it first)" >&2; exit 1; }
mkdir -p "$dir"
rm -f "$dir"/vg.*.log "$dir/pids.txt"
cp -f "$real" "$dir/berth"
export BERTH_REAL_BIN="$dir/berth"
export BERTH_BIN="$root/scripts/valgrind-berth.sh"
export BERTH_START_TIMEOUT="${BERTH_START_TIMEOUT:-60}"
export BERTH_STOP_TIMEOUT="${BERTH_STOP_TIMEOUT:-90}"

if [ $# -gt 0 ]; then
    args=("$@")
else
    args=("${DEFAULT_FILES[@]}")
    for t in "${DESELECT[@]}"; do args+=(--deselect "$t"); done
fi
echo "berth: $real ($(stat -c '%y' "$real"), sha256 $(sha256sum "$real" | cut -c1-16)) -> $dir/berth"
echo "logs: $dir   start/stop timeouts: ${BERTH_START_TIMEOUT}s/${BERTH_STOP_TIMEOUT}s"
start=$(date +%s)
(cd "$root/tests/integration" &&
    /usr/bin/python3 -m pytest -p no:cacheprovider -q -rfE --durations=25 "${args[@]}") \
    2>&1 | tee "$dir/pytest.log"
test_rc=${PIPESTATUS[0]}
echo "pytest exit status $test_rc after $(( $(date +%s) - start ))s"
echo
scan
vg_rc=$?
if [ $vg_rc -ne 0 ]; then
    exit 1
fi
if [ "$test_rc" -ne 0 ] && [ "${BERTH_VALGRIND_FAIL_ON_TESTS:-0}" = 1 ]; then
    exit 2
fi
exit 0
