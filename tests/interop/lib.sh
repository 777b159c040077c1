# shellcheck shell=bash
#
# Helpers for the interop scenarios (sourced by run.sh).
#
# A scenario runs in its own subshell with `set -e`. Two kinds of checks:
#
#   * soft assertions (assert_*): print one `ok` or `FAIL` line with what was
#     expected and what was seen, record failures, and let the scenario go on
#     so that later checks still give information;
#   * hard steps (must, wait_until): a failure prints a `FAIL` line and ends
#     the scenario at once, because what comes after depends on it.
#
# The runner sets, before a scenario starts:
#   CLUSTER        path of the harness `cluster` script
#   QNETD_ADDR     ADDR:PORT of the server under test
#   SERVER_KIND    ref | ours
#   SERVER_PID     PID of the server process
#   SERVER_SOCK    local socket of the server (corosync-qnetd-tool -p)
#   SC_DIR         private directory of this scenario run
#   SC_FAILS       file in which failures are counted
#   INTEROP_TOKEN  corosync totem token (ms) to use, empty = harness default
#   WAIT_TIMEOUT   default timeout (s) for bounded waits

STATUS_JSON=""      # last snapshot of `cluster status --json`
OBSERVE_OUT=""      # file with the output of the last --observe command

_ts()   { date '+%H:%M:%S'; }
say()   { printf '[%s] %s\n' "$(_ts)" "$*"; }
info()  { printf '[%s]   info: %s\n' "$(_ts)" "$*"; }
_ok()   { printf '[%s]   ok: %s\n' "$(_ts)" "$*"; }
_fail() {
    printf '[%s]   FAIL: %s\n' "$(_ts)" "$*"
    echo "$*" >> "$SC_FAILS"
}

# abort the scenario (the subshell) after a hard failure
abort() { _fail "$*"; exit 1; }

# ---------------------------------------------------------------------------
# running things
# ---------------------------------------------------------------------------

# cluster ARGS...: the harness script; its output goes to the scenario log
cluster() { "$CLUSTER" "$@"; }

# must DESC CMD...: run CMD; abort the scenario if it fails
must() {
    local desc=$1 rc=0; shift
    say "step: $desc"
    "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then
        _ok "$desc"
    else
        abort "$desc (command '$*' exited $rc, expected 0)"
    fi
}

# cluster_up ARGS...: `cluster up` against the server under test with the
# suite's common options (token, wait timeout); aborts on failure
cluster_up() {
    local extra=()
    [ -n "${INTEROP_TOKEN:-}" ] && extra+=(--token "$INTEROP_TOKEN")
    must "cluster up $*" cluster up --qnetd "$QNETD_ADDR" --wait-timeout "$WAIT_TIMEOUT" "${extra[@]}" "$@"
}

# observe DESC CMD...: run a fault command with --observe; keep its output for
# assert_summary. Aborts if the command fails.
observe() {
    local desc=$1 rc=0; shift
    OBSERVE_OUT="$SC_DIR/observe.$(date +%s%N).out"
    say "step: $desc"
    "$@" > "$OBSERVE_OUT" 2>&1 || rc=$?
    sed 's/^/    | /' "$OBSERVE_OUT"
    [ "$rc" -eq 0 ] || abort "$desc (command '$*' exited $rc, expected 0)"
    grep -q '^summary' "$OBSERVE_OUT" || abort "$desc (no summary in the output)"
    _ok "$desc"
}

# server_tool ARGS...: corosync-qnetd-tool against the server under test
# (diagnostics only; a server is not required to implement the tool socket)
server_tool() { timeout 5 corosync-qnetd-tool -p "$SERVER_SOCK" "$@"; }

# show_server_view: print what the server itself reports, as info only
show_server_view() {
    local out rc=0
    out=$(server_tool -l -v 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then
        info "server view (corosync-qnetd-tool -l -v):"
        printf '%s\n' "$out" | sed 's/^/    | /'
    else
        info "server tool socket did not answer (rc=$rc): $(printf '%s' "$out" | head -n 2 | tr '\n' ' ')"
    fi
}

# assert_tool_vote NODE VOTE: the real corosync-qnetd-tool, asked on the
# server's socket (`-l`), shows VOTE (ACK|NACK) as the last ACK/NACK sent to
# NODE. Works for both servers: ours speaks the tool's protocol.
assert_tool_vote() {
    local node=$1 want=$2 out rc=0 line got
    out=$(server_tool -l 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        _fail "corosync-qnetd-tool -l on the server socket failed (rc=$rc): $(printf '%s' "$out" | head -n 2 | tr '\n' ' ')"
        return 0
    fi
    line=$(printf '%s\n' "$out" | awk -v n="    Node ID $node:" '$0 == n {f = 1; next} /^    Node ID/ {f = 0} f && /Vote:/ {print; exit}')
    # "Vote: <last vote> (<last ACK/NACK>)" or "Vote: <last vote>"
    if [[ "$line" =~ \(([A-Z]+)\)$ ]]; then
        got=${BASH_REMATCH[1]}
    else
        got=$(printf '%s' "$line" | sed 's/.*Vote:[[:space:]]*//')
    fi
    assert_eq "corosync-qnetd-tool -l: last ACK/NACK of node $node" "$want" "$got"
}

# normalize_tool: mask what legitimately differs between two runs of the
# same scenario: ports, ring ids (corosync picks them) and the last vote
# before its ACK/NACK (it depends on message timing: "ACK (ACK)" or
# "No change (ACK)").
normalize_tool() {
    sed -E \
        -e 's/^(QNetd address:[[:space:]]+)[^:]+:[0-9]+$/\1ADDR:PORT/' \
        -e 's/^([[:space:]]+Client address:[[:space:]]+)(::ffff:)?([0-9.]+):[0-9]+$/\1\3:PORT/' \
        -e 's/^([[:space:]]+Ring ID:[[:space:]]+).*/\1RING/' \
        -e 's/^([[:space:]]+Vote:[[:space:]]+).* \(([A-Z]+)\)$/\1* (\2)/'
}

# compare_tool_views TAG: what the stock corosync-qnetd-tool prints for this
# state (-s, -s -v, -l -v, -l -c CLUSTER). Against the reference the output
# is kept; against ours it must equal the reference's output for the same
# scenario and TAG, byte for byte once normalize_tool masked ports, ring ids
# and timing-dependent vote prefixes. Needs --server both (ref runs first).
compare_tool_views() {
    local tag=$1 f="$WORK/toolview-$1" out
    out=$( {
        echo "== -s"; server_tool -s
        echo "== -s -v"; server_tool -s -v
        echo "== -l -v"; server_tool -l -v
        echo "== -l -c $INTEROP_CLUSTER_NAME"; server_tool -l -c "$INTEROP_CLUSTER_NAME"
    } 2>&1 | normalize_tool)
    case "$SERVER_KIND" in
        ref)
            printf '%s\n' "$out" > "$f.ref"
            info "reference corosync-qnetd-tool output kept for comparison ($tag)"
            ;;
        ours)
            if [ ! -f "$f.ref" ]; then
                info "corosync-qnetd-tool output NOT compared ($tag): run with --server both"
                return 0
            fi
            if printf '%s\n' "$out" | diff -u "$f.ref" - > "$f.diff"; then
                _ok "corosync-qnetd-tool -s/-s -v/-l -v/-l -c print the same as for the reference ($tag)"
            else
                _fail "corosync-qnetd-tool output differs from the reference's ($tag):"
                sed 's/^/    | /' "$f.diff"
            fi
            ;;
    esac
}

# ---------------------------------------------------------------------------
# cluster status snapshots
# ---------------------------------------------------------------------------

# take_status: refresh STATUS_JSON from `cluster status --json`
take_status() {
    local rc=0
    STATUS_JSON=$(cluster status --json 2>>"$SC_DIR/status.err") || rc=$?
    if [ "$rc" -ne 0 ] || ! jq -e . >/dev/null 2>&1 <<< "$STATUS_JSON"; then
        abort "cluster status --json (rc=$rc, output not valid JSON: ${STATUS_JSON:0:200})"
    fi
    printf '%s\n' "$STATUS_JSON" >> "$SC_DIR/status.jsonl"
    # one compact line per node in the log, handy when reading a failure
    jq -r '.node_status[] | "    node\(.node) quorate=\(.quorate) members=\(.members|map(tostring)|join(",")) votes=\(.total_votes)/\(.expected_votes) qdev_flags=\(.qdevice_flags // "-") vote=\(.qdevice_vote) state=\(.qdevice_state // "-")"' <<< "$STATUS_JSON"
}

# node_field NODE FIELD: value of FIELD for NODE in the last snapshot
# (strings raw, everything else as compact JSON, e.g. [1,2], true, null)
node_field() {
    jq -r --argjson n "$1" --arg f "$2" \
        '[.node_status[] | select(.node == $n)][0] as $x
         | if $x == null then "<no such node>"
           elif ($x | has($f)) | not then "<missing>"
           else $x[$f] | if type == "string" then . else tojson end end' <<< "$STATUS_JSON"
}

# expand "1,2" / "1 2" / "1-3" into a word list
_nodes() {
    local spec=${1//,/ } x out=""
    for x in $spec; do
        if [[ "$x" == *-* ]]; then out="$out $(seq -s ' ' "${x%-*}" "${x#*-}")"; else out="$out $x"; fi
    done
    echo $out
}

# ---------------------------------------------------------------------------
# soft assertions
# ---------------------------------------------------------------------------

# assert_eq DESC EXPECTED SEEN
assert_eq() {
    if [ "$2" = "$3" ]; then _ok "$1: expected '$2', seen '$3'"
    else _fail "$1: expected '$2', seen '$3'"; fi
}

# assert_ne DESC UNEXPECTED SEEN
assert_ne() {
    if [ "$2" != "$3" ]; then _ok "$1: expected not '$2', seen '$3'"
    else _fail "$1: expected not '$2', seen '$3'"; fi
}

# assert_node_field NODES FIELD VALUE   (on the last take_status snapshot)
#   e.g. assert_node_field 1,2 qdevice_vote ACK; assert_node_field 1 members '[1]'
assert_node_field() {
    local n
    for n in $(_nodes "$1"); do
        assert_eq "node$n $2" "$3" "$(node_field "$n" "$2")"
    done
}

# assert_node_field_not NODES FIELD VALUE
assert_node_field_not() {
    local n
    for n in $(_nodes "$1"); do
        assert_ne "node$n $2" "$3" "$(node_field "$n" "$2")"
    done
}

# assert_node_field_match NODES FIELD REGEX   (bash =~, e.g. '^Fail ')
assert_node_field_match() {
    local n v
    for n in $(_nodes "$1"); do
        v=$(node_field "$n" "$2")
        if [[ "$v" =~ $3 ]]; then _ok "node$n $2: expected to match /$3/, seen '$v'"
        else _fail "node$n $2: expected to match /$3/, seen '$v'"; fi
    done
}

# summary_field NODE KEY: KEY=value from the summary of the last observe
#   keys: final (quorate at the end), first_inquorate, quorate_throughout
summary_field() {
    [ -n "$OBSERVE_OUT" ] && [ -f "$OBSERVE_OUT" ] || { echo "<no observe output>"; return 0; }
    local key=$2
    [ "$key" = final ] && key=quorate     # "nodeN final quorate=Yes ..."
    awk -v node="node$1" -v key="$key" '
        /^summary/ { in_s = 1; next }
        in_s && $1 == node && !found {
            for (i = 2; i <= NF; i++) {
                if (index($i, "=") == 0) continue
                k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v)
                if (k == key) { print v; found = 1; break }
            }
        }
        END { if (!found) print "<missing>" }' "$OBSERVE_OUT"
}

# assert_summary NODES KEY VALUE
#   e.g. assert_summary 1 quorate_throughout yes; assert_summary 2 final No
assert_summary() {
    local n
    for n in $(_nodes "$1"); do
        assert_eq "observe summary node$n $2" "$3" "$(summary_field "$n" "$2")"
    done
}

# assert_server_alive: the server under test is still running
assert_server_alive() {
    if kill -0 "$SERVER_PID" 2>/dev/null && [ "$(awk '/^State:/{print $2}' "/proc/$SERVER_PID/status" 2>/dev/null)" != Z ]; then
        _ok "server ($SERVER_KIND, pid $SERVER_PID) still running"
    else
        _fail "server ($SERVER_KIND, pid $SERVER_PID) still running: it is gone"
    fi
}

# ---------------------------------------------------------------------------
# bounded waits (hard)
# ---------------------------------------------------------------------------

# wait_cluster KIND NODES [TIMEOUT]: cluster wait-quorate|wait-inquorate|wait-ack|wait-nack|wait-novote
# NODES may use ranges (1-4); the harness itself only takes "1,2,3" or "all"
wait_cluster() {
    local nodes; nodes=$(_nodes "$2"); nodes=${nodes// /,}
    must "$1 $2 (within ${3:-$WAIT_TIMEOUT}s)" cluster "$1" "$nodes" --timeout "${3:-$WAIT_TIMEOUT}"
}

# holds_for DESC SECONDS JQ_FILTER: poll `cluster status --json` for SECONDS
# and fail at the first poll where the jq filter is false (an unreadable
# status counts as a failed poll only if it stays unreadable to the end).
holds_for() {
    local desc=$1 secs=$2 filter=$3 start=$SECONDS out polls=0
    while [ $((SECONDS - start)) -lt "$secs" ]; do
        out=$(cluster status --json 2>/dev/null) || out=""
        if [ -n "$out" ]; then
            polls=$((polls + 1))
            if ! jq -e "$filter" >/dev/null 2>&1 <<< "$out"; then
                STATUS_JSON=$out
                abort "$desc: false after $((SECONDS - start))s (jq: $filter)"
            fi
        fi
        sleep 0.5
    done
    [ "$polls" -gt 0 ] || abort "$desc: no readable cluster status in ${secs}s"
    _ok "$desc (held for ${secs}s, $polls polls)"
}

# wait_until DESC TIMEOUT JQ_FILTER: poll `cluster status --json` until the
# jq filter is true (e.g. '[.node_status[].members == [1,2]] | all')
wait_until() {
    local desc=$1 timeout=$2 filter=$3 start=$SECONDS out
    while :; do
        out=$(cluster status --json 2>/dev/null) || out=""
        if [ -n "$out" ] && jq -e "$filter" >/dev/null 2>&1 <<< "$out"; then
            _ok "$desc (after $((SECONDS - start))s)"
            return 0
        fi
        [ $((SECONDS - start)) -ge "$timeout" ] && break
        sleep 0.5
    done
    STATUS_JSON=$out
    abort "$desc: not true after ${timeout}s (jq: $filter)"
}
