//! The split-brain check of the mass-split workload: from the recorded vote
//! timelines of one cluster's nodes, find every instant at which two nodes
//! holding ACK reported different memberships (so two partitions had the
//! arbitrator's vote at once). Pure.

use super::node::{held, Event, View};

/// A double ACK: at `t_ns`, nodes of different memberships held ACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoubleAck {
    pub t_ns: u64,
    /// (node index in the cluster, its view) of every ACK holder then.
    pub holders: Vec<(usize, View)>,
}

/// Checks the timelines (one per node, each in time order) from `from_ns`
/// on. A node's state at `from_ns` is its last event at or before it.
pub fn double_acks(timelines: &[Vec<Event>], from_ns: u64) -> Vec<DoubleAck> {
    let mut state: Vec<(u8, View)> = timelines
        .iter()
        .map(|t| {
            t.iter()
                .rev()
                .find(|e| e.t_ns <= from_ns)
                .map(|e| (e.vote, e.view))
                .unwrap_or((held::DISCONNECTED, View::Whole))
        })
        .collect();
    let mut events: Vec<(u64, usize, u8, View)> = timelines
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.iter()
                .filter(|e| e.t_ns > from_ns)
                .map(move |e| (e.t_ns, i, e.vote, e.view))
        })
        .collect();
    events.sort_by_key(|e| (e.0, e.1));
    let mut found = Vec::new();
    let check = |state: &[(u8, View)], t_ns: u64, found: &mut Vec<DoubleAck>| {
        let holders: Vec<(usize, View)> = state
            .iter()
            .enumerate()
            .filter(|(_, s)| s.0 == held::ACK)
            .map(|(i, s)| (i, s.1))
            .collect();
        if holders.windows(2).any(|w| w[0].1 != w[1].1) {
            found.push(DoubleAck { t_ns, holders });
        }
    };
    check(&state, from_ns, &mut found);
    let mut i = 0;
    while i < events.len() {
        let t = events[i].0;
        while i < events.len() && events[i].0 == t {
            let (_, n, v, view) = events[i];
            state[n] = (v, view);
            i += 1;
        }
        check(&state, t, &mut found);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t_ns: u64, vote: u8, view: View) -> Event {
        Event {
            t_ns,
            vote,
            view,
            generation: 1,
        }
    }

    #[test]
    fn clean_split_has_no_double_ack() {
        // Both ACK before the split; node 2 loses it before node 1 gets it.
        let n1 = vec![
            ev(1, held::ACK, View::Whole),
            ev(10, held::NONE, View::Low),
            ev(30, held::ACK, View::Low),
        ];
        let n2 = vec![
            ev(2, held::ACK, View::Whole),
            ev(11, held::NONE, View::High),
            ev(20, held::NACK, View::High),
        ];
        assert!(double_acks(&[n1, n2], 5).is_empty());
    }

    #[test]
    fn overlapping_acks_of_two_partitions_are_found() {
        let n1 = vec![ev(1, held::ACK, View::Whole), ev(10, held::ACK, View::Low)];
        let n2 = vec![ev(2, held::ACK, View::Whole), ev(11, held::ACK, View::High)];
        let d = double_acks(&[n1, n2], 5);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].t_ns, 10, "old-membership ACK next to a new one");
        assert_eq!(d[1].holders, vec![(0, View::Low), (1, View::High)]);
    }

    #[test]
    fn state_before_the_start_counts() {
        // Node 2 still holds its old ACK while node 1 already has a new one.
        let n1 = vec![ev(1, held::NONE, View::Low), ev(10, held::ACK, View::Low)];
        let n2 = vec![ev(2, held::ACK, View::Whole)];
        let d = double_acks(&[n1, n2], 5);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].t_ns, 10);
    }

    #[test]
    fn empty_input() {
        assert!(double_acks(&[], 0).is_empty());
        assert!(double_acks(&[vec![], vec![]], 0).is_empty());
    }
}
