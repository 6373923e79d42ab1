//! Starting and stopping servers.

mod common;

use std::error::Error as _;

use common::{tcp_exchange, udp_exchange, EXAMPLE_ZONE};
use hickory_proto::rr::RecordType as WireType;
use test_dns::{Error, TestDns};

#[tokio::test]
async fn udp_and_tcp_share_one_port_on_loopback() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    assert!(dns.addr().ip().is_loopback());
    assert_ne!(dns.addr().port(), 0);
    let udp = udp_exchange(dns.addr(), "host.example.com.", WireType::A).await;
    let tcp = tcp_exchange(dns.addr(), "host.example.com.", WireType::A).await;
    assert_eq!(udp.answers, tcp.answers);
}

#[tokio::test]
async fn servers_run_side_by_side() {
    let first = TestDns::start("a.example. A 192.0.2.1\n").await.unwrap();
    let second = TestDns::start("a.example. A 192.0.2.2\n").await.unwrap();
    assert_ne!(first.addr(), second.addr());
    let one = udp_exchange(first.addr(), "a.example.", WireType::A).await;
    let two = udp_exchange(second.addr(), "a.example.", WireType::A).await;
    assert_ne!(one.answers, two.answers);
}

#[tokio::test]
async fn drop_frees_the_port() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let addr = dns.addr();
    // Leave a TCP connection open: dropping the server closes it too.
    let mut client = common::TcpClient::connect(addr).await;
    client.send(1, "host.example.com.", WireType::A).await;
    client.receive().await;
    udp_exchange(addr, "host.example.com.", WireType::A).await;

    drop(dns);

    std::net::UdpSocket::bind(addr).expect("UDP port still bound");
    std::net::TcpListener::bind(addr).expect("TCP port still bound");
}

#[tokio::test]
async fn an_invalid_zone_is_an_error_with_its_line() {
    let error = TestDns::start("a.example. A 192.0.2.1\nb.example. SPF x\n")
        .await
        .unwrap_err();
    let Error::Zone(zone_error) = &error else {
        panic!("expected a zone error, got {error:?}");
    };
    assert_eq!(zone_error.line, 2);
    assert_eq!(
        error.to_string(),
        "invalid zone for the test DNS server: zone line 2: unknown record type \"SPF\""
    );
    assert_eq!(
        error.source().map(ToString::to_string),
        Some("zone line 2: unknown record type \"SPF\"".to_owned())
    );
}
