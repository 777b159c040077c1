//! Protobuf definitions of qnetd's admin API, generated with prost from
//! `proto/qnetd/*.proto` at build time (protox: no system `protoc`).
//!
//! [`status`] is the status model: the admin socket's `protobuf` request
//! returns a [`status::ServerStatus`] encoded with this schema, and the `json`
//! request the same message as JSON (serde, same field names).
//!
//! [`state`] is the decision snapshot the server keeps in its state
//! directory so that a restart keeps each cluster's vote where it was.

/// The status model (`qnetd/status.proto`).
pub mod status {
    include!(concat!(env!("OUT_DIR"), "/qnetd.status.rs"));
}

/// The decision snapshot (`qnetd/state.proto`).
pub mod state {
    include!(concat!(env!("OUT_DIR"), "/qnetd.state.rs"));
}

pub use prost::Message;

#[cfg(test)]
mod tests {
    use super::status::*;
    use prost::Message;

    #[test]
    fn status_round_trips_through_protobuf() {
        let st = ServerStatus {
            version: "0.1.0".into(),
            port: 5403,
            tls: "on".into(),
            clusters: vec![ClusterStatus {
                name: "web".into(),
                nodes: vec![NodeStatus {
                    node_id: 1,
                    config_version: Some(7),
                    last_vote: Some("ack".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = st.encode_to_vec();
        assert_eq!(ServerStatus::decode(bytes.as_slice()).unwrap(), st);
    }
}
