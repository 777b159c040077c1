//! ffsplit's per-client data as decisions read it: which clients the
//! algorithm tracks, their lists interned when they arrive, and the views
//! of a decision.

use super::decision::{Trigger, View};
use super::Ffsplit;
use crate::nodeset::SetId;
use crate::{ClientInfo, Ctx, NodeId, NodeInfo};

impl Ffsplit {
    /// Makes the per-client table match the cluster's clients.
    pub(super) fn sync_clients(&mut self, ctx: &Ctx<'_>) {
        if self.clients.len() == ctx.clients.len() && self.clients.keys().eq(ctx.clients.keys()) {
            return;
        }
        let gone: Vec<NodeId> = self
            .clients
            .keys()
            .filter(|id| !ctx.clients.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.forget(id);
        }
        for id in ctx.clients.keys() {
            self.clients.entry(*id).or_default();
        }
    }

    /// Drops a client's data and its lists.
    pub(super) fn forget(&mut self, node: NodeId) {
        if let Some(data) = self.clients.remove(&node) {
            for id in [data.config, data.membership].into_iter().flatten() {
                self.sets.release(id);
            }
        }
    }

    /// Stores (interned) the config list (`membership` false) or the
    /// membership list the cluster is about to store for `node`; returns
    /// its id.
    pub(super) fn store_list(
        &mut self,
        node: NodeId,
        membership: bool,
        nodes: &[NodeInfo],
    ) -> SetId {
        let id = self.sets.intern(nodes);
        let data = self.clients.entry(node).or_default();
        let slot = if membership {
            &mut data.membership
        } else {
            &mut data.config
        };
        if let Some(old) = slot.replace(id) {
            self.sets.release(old);
        }
        id
    }

    /// The stored view of a client.
    pub(super) fn stored_view<'a>(&self, info: &'a ClientInfo) -> View<'a> {
        let data = self.clients.get(&info.node_id);
        View {
            node: info.node_id,
            ring: info.ring,
            config: info.config_nodes(),
            membership: info.membership_nodes(),
            config_set: data.and_then(|d| d.config),
            membership_set: data.and_then(|d| d.membership),
            heuristics: info.heuristics,
        }
    }

    /// The views taking part in a decision, in ascending node-id order:
    /// every client of the cluster except a leaving trigger, the trigger (if
    /// any) with the event's data.
    pub(super) fn participant_views<'a>(
        &self,
        ctx: &Ctx<'a>,
        trigger: Option<&Trigger<'a>>,
    ) -> Vec<View<'a>> {
        let mut views = Vec::with_capacity(ctx.clients.len());
        // Both tables are by node id and hold the same clients (see
        // `sync_clients`): walk them side by side.
        let mut data = self.clients.iter().peekable();
        for (id, info) in ctx.clients.iter() {
            match trigger {
                Some(t) if t.view.node == *id => {
                    if !t.leaving {
                        views.push(t.view);
                    }
                }
                _ => {
                    while data.next_if(|(d, _)| *d < id).is_some() {}
                    let lists = data.peek().filter(|(d, _)| *d == id).map(|(_, d)| d);
                    views.push(View {
                        node: info.node_id,
                        ring: info.ring,
                        config: info.config_nodes(),
                        membership: info.membership_nodes(),
                        config_set: lists.and_then(|d| d.config),
                        membership_set: lists.and_then(|d| d.membership),
                        heuristics: info.heuristics,
                    });
                }
            }
        }
        views
    }
}
