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
