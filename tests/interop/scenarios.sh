# shellcheck shell=bash
#
# Interop scenarios (sourced by run.sh). Helpers: lib.sh.
#
# To add a scenario:
#   1. write a function that drives the cluster and asserts (it runs in a
#      subshell with `set -e`; QNETD_ADDR is the server under test, which the
#      runner has started already and stops afterwards; the runner also runs
#      `cluster down`);
#   2. register it below with
#        register_scenario NAME FUNCTION SERVER_TLS "one line description"
#      SERVER_TLS (off|on|required) is the `-s` the server is started with.
#
# Order of registration = order of execution.

SCENARIOS=()
declare -A SC_FUNC=() SC_TLS=() SC_DESC=()

register_scenario() { # NAME FUNCTION SERVER_TLS DESCRIPTION
    SCENARIOS+=("$1")
    SC_FUNC[$1]=$2
    SC_TLS[$1]=$3
    SC_DESC[$1]=$4
}

# ---------------------------------------------------------------------------
# 2-node ffsplit, split 1/2: the tie-breaker decides who keeps quorum
# ---------------------------------------------------------------------------
ffsplit2_split() { # TIE_BREAKER WINNER LOSER
    local tb=$1 win=$2 lose=$3

    cluster_up --nodes 2 --algorithm ffsplit --tls off --tie-breaker "$tb"
    take_status
    assert_node_field 1,2 quorate true
    assert_node_field 1,2 members '[1,2]'
    assert_node_field 1,2 expected_votes 3
    assert_node_field 1,2 total_votes 3
    assert_node_field 1,2 qdevice_state Connected
    assert_node_field 1,2 qdevice_vote ACK
    assert_node_field 1,2 qdevice_flags A,V,NMW

    observe "split 1/2 (observe, settle 12s)" cluster split 1/2 --observe --settle 12 --max 60
    assert_summary "$win" quorate_throughout yes
    assert_summary "$win" final Yes
    assert_summary "$lose" final No

    take_status
    assert_node_field "$win" quorate true
    assert_node_field "$win" members "[$win]"
    assert_node_field "$win" total_votes 2
    assert_node_field "$win" qdevice_vote ACK
    assert_node_field "$lose" quorate false
    assert_node_field "$lose" members "[$lose]"
    assert_node_field "$lose" total_votes 1
    assert_node_field_not "$lose" qdevice_vote ACK
    # the loser is still connected: a NACK, not a lost connection
    assert_node_field "$lose" qdevice_state Connected
    show_server_view
    # the server's own view, through the real corosync-qnetd-tool
    assert_tool_vote "$win" ACK
    assert_tool_vote "$lose" NACK
    compare_tool_views "ffsplit2-$tb-split"

    must "heal" cluster heal
    wait_cluster wait-quorate 1,2 30
    wait_until "both nodes see members 1,2" 30 '[.node_status[].members == [1,2]] | all'
    wait_cluster wait-ack 1,2 30
    take_status
    assert_node_field 1,2 quorate true
    assert_node_field 1,2 members '[1,2]'
    assert_node_field 1,2 total_votes 3
    assert_node_field 1,2 qdevice_vote ACK
    assert_server_alive
}

sc_ffsplit2_lowest()  { ffsplit2_split lowest 1 2; }
sc_ffsplit2_highest() { ffsplit2_split highest 2 1; }

register_scenario ffsplit2-lowest sc_ffsplit2_lowest off \
    "2 nodes, ffsplit, tls off, tie-breaker lowest: split 1/2 -> node1 keeps quorum (ACK), node2 inquorate (not ACK); heal -> both ACK"
register_scenario ffsplit2-highest sc_ffsplit2_highest off \
    "2 nodes, ffsplit, tls off, tie-breaker highest: split 1/2 -> node2 keeps quorum (ACK), node1 inquorate (not ACK); heal -> both ACK"

# ---------------------------------------------------------------------------
# helpers shared by the scenarios below
# ---------------------------------------------------------------------------

# all_nodes N -> "1,2,...,N"
all_nodes() { seq -s, 1 "$1"; }

# check_healthy N EXPECTED_VOTES: every node quorate, sees all N members,
# counts EXPECTED_VOTES of EXPECTED_VOTES, and its qdevice is Connected with ACK
check_healthy() {
    local n=$1 ev=$2 all members
    all=$(all_nodes "$n"); members="[$all]"
    # votequorum counts a qdevice's ACK at its next poll: wait (bounded) for
    # every node to count it before the snapshot below
    wait_until "all nodes count $ev votes, the qdevice's included" 30 \
        "[.node_status[] | ((.total_votes | tostring) == \"$ev\" and .qdevice_flags == \"A,V,NMW\")] | all"
    take_status
    assert_node_field "$all" quorate true
    assert_node_field "$all" members "$members"
    assert_node_field "$all" expected_votes "$ev"
    assert_node_field "$all" total_votes "$ev"
    assert_node_field "$all" qdevice_state Connected
    assert_node_field "$all" qdevice_vote ACK
    assert_node_field "$all" qdevice_flags A,V,NMW
}

# heal_and_check N EXPECTED_VOTES: heal every split and wait (bounded) until
# all N nodes are quorate, see all members and vote ACK again
heal_and_check() {
    local n=$1 ev=$2 all
    all=$(all_nodes "$n")
    must "heal" cluster heal
    wait_cluster wait-quorate "$all" 30
    wait_until "all nodes see members $all" 30 "[.node_status[].members == [$all]] | all"
    wait_cluster wait-ack "$all" 30
    check_healthy "$n" "$ev"
    assert_server_alive
}

# check_partition NODES TOTAL_VOTES QUORATE(true|false): after a split, every
# node of the group sees exactly the group as members, counts TOTAL_VOTES and
# is (in)quorate; a quorate group votes ACK, an inquorate one votes anything
# but ACK while its qdevice is still Connected (a NACK, not a lost connection)
check_partition() {
    local nodes=$1 tv=$2 q=$3
    assert_node_field "$nodes" quorate "$q"
    assert_node_field "$nodes" members "[$nodes]"
    assert_node_field "$nodes" total_votes "$tv"
    assert_node_field "$nodes" qdevice_state Connected
    if [ "$q" = true ]; then
        assert_node_field "$nodes" qdevice_vote ACK
        assert_node_field "$nodes" qdevice_flags A,V,NMW
    else
        assert_node_field_not "$nodes" qdevice_vote ACK
        assert_node_field "$nodes" qdevice_flags A,NV,NMW
    fi
}

# ---------------------------------------------------------------------------
# 4-node ffsplit, split 1,2/3,4: a 50:50 split, the tie-breaker (lowest) wins
# ---------------------------------------------------------------------------
sc_ffsplit4_split() {
    cluster_up --nodes 4 --algorithm ffsplit --tls off --tie-breaker lowest
    check_healthy 4 5

    observe "split 1,2/3,4 (observe, settle 10s)" cluster split 1,2/3,4 --observe --settle 10 --max 60
    assert_summary 1,2 quorate_throughout yes
    assert_summary 1,2 final Yes
    assert_summary 3,4 final No

    take_status
    check_partition 1,2 3 true
    check_partition 3,4 2 false
    show_server_view

    heal_and_check 4 5
}
register_scenario ffsplit4-split sc_ffsplit4_split off \
    "4 nodes, ffsplit, tie-breaker lowest: split 1,2/3,4 -> 1,2 quorate throughout (ACK, 3/5), 3,4 inquorate (not ACK); heal -> all ACK"

# ---------------------------------------------------------------------------
# 4-node ffsplit with heuristics: a failing heuristics result beats the
# tie-breaker
# ---------------------------------------------------------------------------
# `--heuristics builtin` is `/usr/bin/test ! -e /etc/corosync/heuristics-fail`
# in mode sync: qdevice runs it when it connects and at every membership
# change, and sends the result with its membership list.
#
# Node1's failing result must reach the server *before* the split. Setting
# `cluster heuristics 1 fail` and splitting at once is order dependent, with
# the reference and (on purpose, same votes) with ours: in the 50:50
# comparison the triggering client's new result only counts when that client
# is the compared one; as a member of another client's partition its stored,
# previous result counts. If node1's membership list is the last one of the
# split to arrive, partition 1,2 is judged through node2 with node1's stale
# Pass, ties with 3,4 and wins by the tie-breaker (seen with the reference in
# 1 of 3 runs; ffsplit.rs test trigger_heuristics_count_only_for_the_compared_client).
# So node1's qdevice is restarted with the check failing: it reconnects,
# sends Fail with its membership list, and the server stores it.
#
# Then partition 1,2 scores 2 + 1 - 1 = 2 and 3,4 score 2 + 2 = 4, so 3,4
# win although the tie-breaker (lowest) points at 1,2. Checked against the
# reference. The heal is done with node1 still failing: a single partition
# holding every node gets ACK everywhere all the same.
sc_ffsplit4_heuristics() {
    cluster_up --nodes 4 --algorithm ffsplit --tls off --tie-breaker lowest --heuristics builtin
    check_healthy 4 5
    assert_node_field_match 1-4 heuristics '^Pass '

    must "node1 heuristics fail" cluster heuristics 1 fail
    must "stop qdevice on node1" cluster stop-qdevice 1
    must "start qdevice on node1" cluster start-qdevice 1
    wait_cluster wait-ack 1-4 30
    # a failing node in the one and only partition still gets ACK
    check_healthy 4 5
    assert_node_field_match 1 heuristics '^Fail '
    assert_node_field_match 2-4 heuristics '^Pass '

    observe "split 1,2/3,4 (observe, settle 10s)" cluster split 1,2/3,4 --observe --settle 10 --max 60
    assert_summary 3,4 quorate_throughout yes
    assert_summary 3,4 final Yes
    assert_summary 1,2 final No

    take_status
    assert_node_field_match 1 heuristics '^Fail '
    assert_node_field_match 2-4 heuristics '^Pass '
    check_partition 3,4 3 true
    check_partition 1,2 2 false
    show_server_view

    heal_and_check 4 5
    assert_node_field_match 1 heuristics '^Fail '
}
register_scenario ffsplit4-heuristics sc_ffsplit4_heuristics off \
    "4 nodes, ffsplit, heuristics (sync), tie-breaker lowest: node1 heuristics fail (qdevice restarted so the server has it), split 1,2/3,4 -> 3,4 win (ACK), 1,2 inquorate; heal -> all ACK"

# ---------------------------------------------------------------------------
# 4-node ffsplit: the arbitrator restarts during a split while the winning
# half cannot reach it yet
# ---------------------------------------------------------------------------
# Node1's heuristics fail (as in ffsplit4-heuristics), so after the split
# 3,4 hold the vote. Then 3,4 are cut off from the arbitrator and it is
# restarted at once (before dead-peer detection could move the vote): 1,2
# reconnect first, 3,4 only when restored.
#   * ours remembers the holder (state_dir) and holds the vote back from 1,2
#     for restart_vote_hold (30 s) while 3,4 are away: 1,2 never get quorum;
#     once 3,4 are back they get the vote again.
#   * the reference forgets: 1,2 are the only partition it sees and get the
#     vote (quorum) until 3,4 return and win on heuristics. That is the
#     failover this feature prevents; the scenario asserts each server's
#     own behaviour so that both runs show the difference.
sc_ffsplit4_restart() {
    cluster_up --nodes 4 --algorithm ffsplit --tls off --tie-breaker lowest --heuristics builtin
    check_healthy 4 5
    must "node1 heuristics fail" cluster heuristics 1 fail
    must "stop qdevice on node1" cluster stop-qdevice 1
    must "start qdevice on node1" cluster start-qdevice 1
    wait_cluster wait-ack 1-4 30

    observe "split 1,2/3,4 (observe, settle 10s)" cluster split 1,2/3,4 --observe --settle 10 --max 60
    assert_summary 3,4 final Yes
    assert_summary 1,2 final No

    must "isolate-qnetd 3,4" cluster isolate-qnetd 3,4
    restart_server || abort "restart of the $SERVER_KIND server failed"
    wait_until "nodes 1,2 reconnected to the restarted server" 30 \
        '[.node_status[] | select(.node <= 2) | .qdevice_state == "Connected"] | all'
    if [ "$SERVER_KIND" = ours ]; then
        holds_for "nodes 1,2 stay inquorate while 3,4 are away" 12 \
            '[.node_status[] | select(.node <= 2) | .quorate == false] | all'
    else
        wait_until "reference: nodes 1,2 get quorum (the vote moved)" 30 \
            '[.node_status[] | select(.node <= 2) | .quorate == true] | all'
    fi

    observe "restore-qnetd 3,4 (observe, settle 10s)" cluster restore-qnetd 3,4 --observe --settle 10 --max 60
    assert_summary 3,4 final Yes
    assert_summary 1,2 final No
    take_status
    check_partition 3,4 3 true
    check_partition 1,2 2 false
    show_server_view

    heal_and_check 4 5
}
register_scenario ffsplit4-restart sc_ffsplit4_restart off \
    "4 nodes, ffsplit, node1 heuristics fail, split 1,2/3,4 (3,4 win); 3,4 cut off from qnetd and qnetd restarted: ours keeps 1,2 inquorate until 3,4 are back (restart-safe vote), the reference gives 1,2 quorum; restore -> 3,4 win again"

# ---------------------------------------------------------------------------
# 3-node lms, split 1/2/3: three partitions of one, the tie-breaker wins
# ---------------------------------------------------------------------------
# votes left unset: qdevice uses N-1 = 2, so expected votes are 5 and node1
# keeps 3 of 5.
sc_lms3_split() {
    cluster_up --nodes 3 --algorithm lms --tls off --tie-breaker lowest
    check_healthy 3 5

    observe "split 1/2/3 (observe, settle 10s)" cluster split 1/2/3 --observe --settle 10 --max 60
    assert_summary 1 quorate_throughout yes
    assert_summary 1 final Yes
    assert_summary 2,3 final No

    take_status
    check_partition 1 3 true
    check_partition 2 1 false
    check_partition 3 1 false
    show_server_view

    heal_and_check 3 5
}
register_scenario lms3-split sc_lms3_split off \
    "3 nodes, lms (device votes 2), tie-breaker lowest: split 1/2/3 -> node1 quorate throughout (ACK, 3/5), nodes 2,3 inquorate (not ACK); heal -> all ACK"

# ---------------------------------------------------------------------------
# 2-node 2nodelms, split 1/2: the tie-breaker decides
# ---------------------------------------------------------------------------
# corosync-qdevice is started only once the 2-node membership has formed
# (`up --no-qdevice`, then `start-qdevice`). Started together with corosync
# (plain `up`), the reference can leave node2 at NACK for good: node2 sends
# its membership list for the joint ring first, the reference compares it
# with node1's stale single-node ring ("we are a new partition and another
# active partition exists. NACK") and never re-evaluates (its quirks 10, 26
# and 27, fixed on purpose in our 2nodelms, see algorithms/src/two_node_lms.rs).
# This scenario is about the split, so it starts from a formed membership.
sc_2nodelms_split() {
    cluster_up --nodes 2 --algorithm 2nodelms --tls off --tie-breaker lowest --no-qdevice
    must "start qdevice on nodes 1,2" cluster start-qdevice 1,2
    wait_cluster wait-ack 1,2 30
    check_healthy 2 3

    observe "split 1/2 (observe, settle 10s)" cluster split 1/2 --observe --settle 10 --max 60
    assert_summary 1 quorate_throughout yes
    assert_summary 1 final Yes
    assert_summary 2 final No

    take_status
    check_partition 1 2 true
    check_partition 2 1 false
    show_server_view

    heal_and_check 2 3
}
register_scenario 2nodelms-split sc_2nodelms_split off \
    "2 nodes, 2nodelms, tie-breaker lowest: split 1/2 -> node1 quorate throughout (ACK), node2 inquorate (not ACK); heal -> both ACK"

# ---------------------------------------------------------------------------
# 2-node ffsplit: node1 loses the arbitrator, then the cluster splits
# ---------------------------------------------------------------------------
# What the reference does (checked by hand, then pinned here):
#   * isolate-qnetd 1: quorum does not change. After the qdevice heartbeat
#     timeout (~11 s) node1's qdevice gives up the connection ("Connect
#     failed") and its vote (flags A,NV,NMW; votequorum on node1 counts 2/3,
#     node2 still 3/3 with ACK). The server drops node1.
#   * split 1/2: node2, the only node the server still sees, gets the vote
#     although the tie-breaker (lowest) would pick node1: node2 stays quorate
#     with 2/3, node1 drops to 1/3.
#   * restore-qnetd 1 + heal: node1 reconnects and both vote ACK again.
sc_ffsplit2_isolate() {
    cluster_up --nodes 2 --algorithm ffsplit --tls off --tie-breaker lowest
    check_healthy 2 3

    # The qdevice timeout is 10 s, so the only change (node1's qdevice flags)
    # comes after ~11 s: observe for a fixed 20 s (--settle = --max; the
    # harness then prints "still changing after 20s", which means nothing here).
    observe "isolate-qnetd 1 (observe 20s)" cluster isolate-qnetd 1 --observe --settle 20 --max 20
    assert_summary 1,2 quorate_throughout yes
    wait_until "node1 qdevice disconnected and not voting" 30 \
        '.node_status[] | select(.node == 1) | .qdevice_state != "Connected" and .qdevice_flags == "A,NV,NMW"'
    take_status
    assert_node_field 1,2 quorate true
    assert_node_field 1,2 members '[1,2]'
    assert_node_field 1 qnetd_isolated true
    assert_node_field_not 1 qdevice_state Connected
    assert_node_field_not 1 qdevice_vote ACK
    assert_node_field 1 qdevice_flags A,NV,NMW
    assert_node_field 1 total_votes 2
    assert_node_field 2 qdevice_state Connected
    assert_node_field 2 qdevice_vote ACK
    assert_node_field 2 qdevice_flags A,V,NMW
    assert_node_field 2 total_votes 3
    show_server_view

    observe "split 1/2 (observe, settle 10s)" cluster split 1/2 --observe --settle 10 --max 60
    assert_summary 2 quorate_throughout yes
    assert_summary 2 final Yes
    assert_summary 1 final No

    take_status
    check_partition 2 2 true
    assert_node_field 1 quorate false
    assert_node_field 1 members '[1]'
    assert_node_field 1 total_votes 1
    assert_node_field_not 1 qdevice_state Connected
    assert_node_field_not 1 qdevice_vote ACK
    assert_node_field 1 qdevice_flags A,NV,NMW
    show_server_view

    must "restore-qnetd 1" cluster restore-qnetd 1
    heal_and_check 2 3
}
register_scenario ffsplit2-isolate sc_ffsplit2_isolate off \
    "2 nodes, ffsplit, tie-breaker lowest: isolate-qnetd 1 -> quorum unchanged, node1 not voting; split 1/2 -> node2 (still connected) wins; restore + heal -> both ACK"

# ---------------------------------------------------------------------------
# TLS: 2-node ffsplit over STARTTLS with client certificates
# ---------------------------------------------------------------------------
# With our server, every certificate comes from `qnetd certs` (init, client)
# and the nodes import the bundle with the stock corosync-qdevice-net-certutil
# -i / -m (done by `cluster up --certs`). With the reference, `cluster up`
# makes them with its certutil scripts.
tls2_split() { # NODE_TLS (on|required)
    local tls=$1 certs=()
    [ -n "${SERVER_CERTS:-}" ] && certs=(--certs "$SERVER_CERTS")
    cluster_up --nodes 2 --algorithm ffsplit --tls "$tls" --tie-breaker lowest "${certs[@]}"
    take_status
    assert_node_field 1,2 quorate true
    assert_node_field 1,2 qdevice_state Connected
    assert_node_field 1,2 qdevice_vote ACK
    assert_node_field 1,2 tls_active true
    assert_node_field 1,2 client_cert_sent true

    observe "split 1/2 (observe, settle 12s)" cluster split 1/2 --observe --settle 12 --max 60
    assert_summary 1 quorate_throughout yes
    assert_summary 2 final No
    take_status
    assert_node_field 1 qdevice_vote ACK
    assert_node_field_not 2 qdevice_vote ACK
    assert_node_field 2 qdevice_state Connected
    assert_node_field 1,2 tls_active true
    assert_tool_vote 1 ACK
    assert_tool_vote 2 NACK
    # The reference cannot run with -s req here (see README), so the text
    # is compared for tls on only.
    [ "$tls" = on ] && compare_tool_views "tls2-on-split"

    must "heal" cluster heal
    wait_cluster wait-quorate 1,2 30
    wait_cluster wait-ack 1,2 30
    take_status
    assert_node_field 1,2 qdevice_vote ACK
    assert_node_field 1,2 tls_active true
}

scenario_tls2_on() { tls2_split on; }
scenario_tls2_required() { tls2_split required; }

register_scenario tls2-on scenario_tls2_on on \
    "2 nodes ffsplit over TLS (server -s on, node tls on, client certificates): ACK, split 1/2, heal"
register_scenario tls2-required scenario_tls2_required required \
    "2 nodes ffsplit, TLS mandatory (server -s required, node tls required): ACK, split 1/2, heal"
