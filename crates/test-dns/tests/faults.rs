//! Fault switches: how a name fails, seen from the resolver mail-auth uses
//! and from raw DNS messages.

mod common;

use std::time::{Duration, Instant};

use common::{resolver, response_code, udp_exchange, TcpClient, EXAMPLE_ZONE};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType as WireType;
use test_dns::{Fault, RecordType, TestDns, Transport};

const RESOLVER_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn servfail_refused_and_forced_nxdomain() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let resolver = resolver(&dns, RESOLVER_TIMEOUT);
    let cases = [
        (Fault::ServFail, ResponseCode::ServFail),
        (Fault::Refused, ResponseCode::Refused),
        (Fault::NxDomain, ResponseCode::NXDomain),
    ];
    for (fault, code) in cases {
        dns.set_fault("_DMARC.example.com.", None, fault);

        let error = resolver
            .txt_lookup("_dmarc.example.com.")
            .await
            .unwrap_err();
        assert_eq!(response_code(&error), Some(code), "{fault:?}: {error}");

        let response = udp_exchange(dns.addr(), "_dmarc.example.com.", WireType::TXT).await;
        assert_eq!(response.metadata.response_code, code, "{fault:?}");
        assert!(response.answers.is_empty(), "{fault:?}");
    }

    // A forced NXDOMAIN looks like a real one: authoritative, with the SOA.
    let response = udp_exchange(dns.addr(), "_dmarc.example.com.", WireType::TXT).await;
    assert!(response.metadata.authoritative);
    assert_eq!(response.authorities.len(), 1);

    // Other names are not affected.
    assert!(resolver.txt_lookup("multi.example.com.").await.is_ok());

    dns.clear_fault("_dmarc.example.com");
    assert!(resolver.txt_lookup("_dmarc.example.com.").await.is_ok());
}

#[tokio::test]
async fn a_fault_for_one_type_wins_over_one_for_all_types() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    dns.set_fault("host.example.com", None, Fault::Refused);
    dns.set_fault("host.example.com", Some(RecordType::A), Fault::ServFail);

    let cases = [
        (WireType::A, ResponseCode::ServFail),
        (WireType::AAAA, ResponseCode::Refused),
        (WireType::SRV, ResponseCode::Refused),
    ];
    for (rtype, code) in cases {
        let response = udp_exchange(dns.addr(), "host.example.com.", rtype).await;
        assert_eq!(response.metadata.response_code, code, "{rtype}");
    }

    dns.clear_faults();
    let response = udp_exchange(dns.addr(), "host.example.com.", WireType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(response.answers.len(), 1);
}

#[tokio::test]
async fn timeout_never_answers() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    dns.set_fault("_dmarc.example.com", Some(RecordType::Txt), Fault::Timeout);
    let resolver = resolver(&dns, Duration::from_millis(200));

    let started = Instant::now();
    let result = resolver.txt_lookup("_dmarc.example.com.").await;
    assert!(result.is_err(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The question arrived; it was just not answered.
    assert!(dns.query_count("_dmarc.example.com") >= 1);

    // The server is not stuck: other names still get answers.
    assert!(resolver.txt_lookup("multi.example.com.").await.is_ok());
}

#[tokio::test]
async fn truncate_sends_the_client_to_tcp() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    dns.set_fault("_dmarc.example.com", None, Fault::Truncate);

    let response = udp_exchange(dns.addr(), "_dmarc.example.com.", WireType::TXT).await;
    assert!(response.metadata.truncation);
    assert!(response.answers.is_empty());
    dns.clear_queries();

    let lookup = resolver(&dns, RESOLVER_TIMEOUT)
        .txt_lookup("_dmarc.example.com.")
        .await
        .unwrap();
    assert_eq!(lookup.answers().len(), 1);
    let transports: Vec<Transport> = dns.queries().iter().map(|query| query.transport).collect();
    assert_eq!(transports, [Transport::Udp, Transport::Tcp]);
}

#[tokio::test]
async fn delayed_answers_do_not_hold_up_other_questions() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    dns.set_fault(
        "_dmarc.example.com",
        None,
        Fault::Delay(Duration::from_millis(300)),
    );

    // On one TCP connection, the question asked second is answered first.
    let mut client = TcpClient::connect(dns.addr()).await;
    client.send(1, "_dmarc.example.com.", WireType::TXT).await;
    client.send(2, "multi.example.com.", WireType::TXT).await;
    let first = client.receive().await;
    let second = client.receive().await;
    assert_eq!(first.metadata.id, 2);
    assert_eq!(second.metadata.id, 1);
    assert_eq!(second.answers.len(), 1);
}

#[tokio::test]
async fn delayed_answers_are_concurrent() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let delay = Duration::from_millis(300);
    dns.set_fault("_dmarc.example.com", None, Fault::Delay(delay));
    dns.set_fault("multi.example.com", None, Fault::Delay(delay));
    let resolver = resolver(&dns, RESOLVER_TIMEOUT);

    let started = Instant::now();
    let (dmarc, multi) = tokio::join!(
        resolver.txt_lookup("_dmarc.example.com."),
        resolver.txt_lookup("multi.example.com.")
    );
    let elapsed = started.elapsed();
    assert_eq!(dmarc.unwrap().answers().len(), 1);
    assert_eq!(multi.unwrap().answers().len(), 1);
    assert!(elapsed >= delay, "took {elapsed:?}");
    // One after the other would take twice the delay.
    assert!(elapsed < 2 * delay, "took {elapsed:?}");
}
