//! Integration tests of the resource bounds: connection limits in total and
//! per source address, the pre-INIT deadline, and clients that never read.
//! Each checks that a healthy cluster next to the offender keeps its votes.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use qnetd_core::config::{Settings, TlsMode};
use qnetd_core::wire::{Message, Preinit, RingId, TieBreaker, Vote};
use qnetd_tools::client::Client;

fn plain(settings: Settings) -> Settings {
    Settings {
        tls: TlsMode::Off,
        ..settings
    }
}

fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test]
async fn per_address_limit_refuses_only_that_address() {
    let srv = TestServer::start_with(plain(Settings {
        max_clients_per_address: 3,
        ..Settings::default()
    }))
    .await;
    // The healthy pair takes two slots of 127.0.0.1.
    let (mut a1, _a2) = healthy_pair(srv.addr, "per-addr-bystander").await;
    let _third = Client::connect_from(srv.addr, lo(1)).await.unwrap();
    let mut fourth = Client::connect_from(srv.addr, lo(1)).await.unwrap();
    fourth
        .expect_closed()
        .await
        .expect("4th connection from 127.0.0.1 is closed");
    wait_log(&["connection refused", "127.0.0.1 already has 3 connections"]).await;
    let metrics = scrape(srv.ctx.metrics_addr.expect("metrics on")).await;
    assert!(
        metrics.contains("qnetd_connections_refused_total{reason=\"per_address\"}"),
        "refusal counted:\n{metrics}"
    );
    // Another source address is still admitted and served.
    let mut other = Client::connect_from(srv.addr, lo(2)).await.unwrap();
    other
        .send(&Message::Preinit(Preinit {
            seq: Some(1),
            cluster_name: Some(b"other".to_vec()),
        }))
        .await
        .unwrap();
    assert!(matches!(
        other.recv().await.unwrap(),
        Message::PreinitReply(_)
    ));
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn total_limit_refuses_new_connections_and_frees_slots() {
    let srv = TestServer::start_with(plain(Settings {
        max_clients: 3,
        ..Settings::default()
    }))
    .await;
    let (mut a1, _a2) = healthy_pair(srv.addr, "total-bystander").await;
    let third = Client::connect_from(srv.addr, lo(3)).await.unwrap();
    let mut fourth = Client::connect_from(srv.addr, lo(4)).await.unwrap();
    fourth
        .expect_closed()
        .await
        .expect("connection above -m is closed");
    wait_log(&["connection refused", "already has 3 connections"]).await;
    // A closed connection frees its slot (bounded wait for the server to see it).
    drop(third);
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut c = Client::connect_from(srv.addr, lo(5)).await.unwrap();
        c.send(&Message::Preinit(Preinit {
            seq: Some(1),
            cluster_name: Some(b"late".to_vec()),
        }))
        .await
        .unwrap();
        if matches!(c.recv().await, Ok(Message::PreinitReply(_))) {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "a freed slot admits a new client");
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn connections_that_do_not_complete_init_are_closed_at_the_deadline() {
    let srv = TestServer::start_with(plain(Settings {
        init_timeout: 300,
        ..Settings::default()
    }))
    .await;
    let (mut a1, _a2) = healthy_pair(srv.addr, "deadline-bystander").await;
    // Silent socket.
    let mut idle = Client::connect(srv.addr).await.unwrap();
    // PREINIT but never INIT.
    let mut half = Client::connect(srv.addr).await.unwrap();
    half.send(&Message::Preinit(Preinit {
        seq: Some(1),
        cluster_name: Some(b"half".to_vec()),
    }))
    .await
    .unwrap();
    assert!(matches!(
        half.recv().await.unwrap(),
        Message::PreinitReply(_)
    ));
    // A byte at a time, never a whole message.
    let mut trickle = Client::connect(srv.addr).await.unwrap();
    trickle.send_raw(&[0x00]).await.unwrap();
    for c in [&mut idle, &mut half, &mut trickle] {
        c.expect_closed()
            .await
            .expect("closed at the INIT deadline");
    }
    wait_log(&["handshake deadline", "within 300 ms"]).await;
    // The pair completed INIT long ago and stays (the deadline is over for it).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}

#[tokio::test]
async fn client_that_never_reads_is_dropped_and_others_keep_votes() {
    let srv = TestServer::start_with(plain(Settings {
        max_client_send_buffers: 2,
        ..Settings::default()
    }))
    .await;
    let (mut a1, _a2) = healthy_pair(srv.addr, "reader-bystander").await;
    // A node that joins, then floods echo requests and never reads a reply:
    // its replies fill the socket buffers, then its bounded send queue.
    let ring = RingId::new(1, 8);
    let mut stuck = ffsplit_node(
        srv.addr,
        "stuck",
        1,
        &[1, 2],
        ring,
        &[1, 2],
        TieBreaker::Lowest,
    )
    .await;
    assert_eq!(stuck.vote, Some(Vote::Ack));
    let mut echoes = Vec::new();
    for seq in 0..20_000u32 {
        qnetd_core::wire::try_encode(
            &Message::EchoRequest(qnetd_core::wire::Echo { seq: Some(seq) }),
            &mut echoes,
        )
        .unwrap();
    }
    // Bounded: the server must drop us before we could write all of it, or
    // the write completes and we wait for the drop below.
    let _ = tokio::time::timeout(Duration::from_secs(10), stuck.c.send_raw(&echoes)).await;
    wait_log(&["disconnecting client", "send queue full"]).await;
    assert_unharmed(&mut a1).await;
    srv.stop().await;
}
