//! What the server answers, asked by the resolver mail-auth uses and by raw
//! DNS messages.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::{resolver, response_code, tcp_exchange, udp_exchange, EXAMPLE_ZONE};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType as WireType};
use test_dns::{Fault, Query, RecordType, TestDns, Transport, Zone};

const RESOLVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The TXT strings of every TXT record in the answer section.
fn txt_strings(records: &[Record]) -> Vec<Vec<Vec<u8>>> {
    records
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
            _ => None,
        })
        .collect()
}

/// Each record as `<name> <ttl> <type>` followed by its data.
fn show(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|record| {
            format!(
                "{} {} {} {}",
                record.name,
                record.ttl,
                record.record_type(),
                record.data
            )
        })
        .collect()
}

#[tokio::test]
async fn a_and_aaaa_records_with_their_ttl() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let resolver = resolver(&dns, RESOLVER_TIMEOUT);

    let lookup = resolver.ipv4_lookup("HOST.example.com.").await.unwrap();
    let addresses: Vec<Ipv4Addr> = lookup
        .answers()
        .iter()
        .filter_map(|record| match record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(addresses, [Ipv4Addr::new(192, 0, 2, 1)]);

    let response = udp_exchange(dns.addr(), "host.example.com.", WireType::AAAA).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    assert_eq!(
        show(&response.answers),
        ["host.example.com. 300 AAAA 2001:db8::1"]
    );
    let RData::AAAA(address) = &response.answers[0].data else {
        panic!("not AAAA");
    };
    assert_eq!(address.0, "2001:db8::1".parse::<Ipv6Addr>().unwrap());
}

#[tokio::test]
async fn txt_with_several_strings_round_trips() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let resolver = resolver(&dns, RESOLVER_TIMEOUT);

    let lookup = resolver.txt_lookup("multi.example.com.").await.unwrap();
    assert_eq!(
        txt_strings(lookup.answers()),
        [vec![
            b"v=spf1 ".to_vec(),
            b"ip4:192.0.2.0/24 ".to_vec(),
            b"-all".to_vec()
        ]]
    );

    let lookup = resolver.txt_lookup("_dmarc.example.com.").await.unwrap();
    assert_eq!(
        txt_strings(lookup.answers()),
        [vec![
            b"v=DMARC1; p=reject; rua=mailto:dmarc@example.com".to_vec()
        ]]
    );
}

#[tokio::test]
async fn long_txt_is_split_into_255_octet_strings_over_udp_and_tcp() {
    let key = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA".repeat(14); // 616 octets
    let zone = format!("sel._domainkey.example.com. TXT \"v=DKIM1; k=rsa; p={key}\"\n");
    let dns = TestDns::start(&zone).await.unwrap();
    let expected = format!("v=DKIM1; k=rsa; p={key}").into_bytes();

    // UDP with EDNS: the resolver advertises a large enough payload.
    let lookup = resolver(&dns, RESOLVER_TIMEOUT)
        .txt_lookup("sel._domainkey.example.com.")
        .await
        .unwrap();
    let strings = txt_strings(lookup.answers());
    assert_eq!(strings.len(), 1);
    let lengths: Vec<usize> = strings[0].iter().map(Vec::len).collect();
    assert_eq!(lengths, [255, 255, expected.len() - 510]);
    assert_eq!(strings[0].concat(), expected);

    let response = tcp_exchange(dns.addr(), "sel._domainkey.example.com.", WireType::TXT).await;
    assert_eq!(txt_strings(&response.answers), strings);
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_the_soa() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let resolver = resolver(&dns, RESOLVER_TIMEOUT);

    // (name, type, response code): the name does not exist; it exists
    // without that type; it is an empty non-terminal (RFC 8020).
    let cases = [
        ("nowhere.example.com.", ResponseCode::NXDomain),
        ("x.nowhere.example.com.", ResponseCode::NXDomain),
        ("host.example.com.", ResponseCode::NoError),
        ("b.example.com.", ResponseCode::NoError),
    ];
    for (name, code) in cases {
        let error = resolver.txt_lookup(name).await.unwrap_err();
        assert_eq!(response_code(&error), Some(code), "{name}: {error}");

        let response = udp_exchange(dns.addr(), name, WireType::TXT).await;
        assert_eq!(response.metadata.response_code, code, "{name}");
        assert!(response.metadata.authoritative, "{name}");
        assert!(response.answers.is_empty(), "{name}");
        // RFC 2308 §3: the SOA, with the TTL min(SOA TTL, MINIMUM) = 60.
        assert_eq!(
            show(&response.authorities),
            ["example.com. 60 SOA ns.example.com. hostmaster.example.com. 2024010101 7200 900 1209600 60"],
            "{name}"
        );
    }
}

#[tokio::test]
async fn negative_answer_of_a_zone_without_soa_has_no_authority() {
    let dns = TestDns::start("host.example.com. A 192.0.2.1\n")
        .await
        .unwrap();
    let response = udp_exchange(dns.addr(), "nowhere.example.com.", WireType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert!(response.authorities.is_empty());
}

#[tokio::test]
async fn cname_chain_is_in_the_answer_section() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();

    let lookup = resolver(&dns, RESOLVER_TIMEOUT)
        .ipv4_lookup("alias.example.com.")
        .await
        .unwrap();
    let addresses: Vec<Ipv4Addr> = lookup
        .answers()
        .iter()
        .filter_map(|record| match record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(addresses, [Ipv4Addr::new(192, 0, 2, 1)]);

    let response = udp_exchange(dns.addr(), "alias.example.com.", WireType::A).await;
    assert_eq!(
        show(&response.answers),
        [
            "alias.example.com. 300 CNAME www.example.com.",
            "www.example.com. 300 CNAME host.example.com.",
            "host.example.com. 3600 A 192.0.2.1",
        ]
    );

    // RFC 6604 §2.1: NXDOMAIN is about the end of the chain.
    let response = udp_exchange(dns.addr(), "dangling.example.com.", WireType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        show(&response.answers),
        ["dangling.example.com. 300 CNAME nowhere.example.com."]
    );
    assert_eq!(response.authorities.len(), 1);
}

#[tokio::test]
async fn types_the_zone_does_not_know() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let cases = [
        ("host.example.com.", ResponseCode::NoError, 0),
        ("www.example.com.", ResponseCode::NoError, 1),
        ("nowhere.example.com.", ResponseCode::NXDomain, 0),
    ];
    for (name, code, answers) in cases {
        let response = udp_exchange(dns.addr(), name, WireType::SRV).await;
        assert_eq!(response.metadata.response_code, code, "{name}");
        assert_eq!(response.answers.len(), answers, "{name}");
    }
    assert_eq!(
        dns.queries()[0],
        Query {
            name: "host.example.com".into(),
            rtype: None,
            transport: Transport::Udp,
        }
    );
}

#[tokio::test]
async fn set_zone_replaces_the_answers() {
    let dns = TestDns::start("host.example.com. A 192.0.2.1\n")
        .await
        .unwrap();
    let first = udp_exchange(dns.addr(), "host.example.com.", WireType::A).await;
    assert_eq!(show(&first.answers), ["host.example.com. 3600 A 192.0.2.1"]);

    dns.set_zone(Zone::parse("host.example.com. 60 A 192.0.2.2\n", None).unwrap());
    let second = udp_exchange(dns.addr(), "host.example.com.", WireType::A).await;
    assert_eq!(show(&second.answers), ["host.example.com. 60 A 192.0.2.2"]);

    dns.set_zone(Zone::default());
    let third = udp_exchange(dns.addr(), "host.example.com.", WireType::A).await;
    assert_eq!(third.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn start_with_zone_serves_inserted_records() {
    let mut zone = Zone::default();
    zone.insert(test_dns::ZoneRecord {
        name: "Inserted.Example.COM.".into(),
        ttl: 5,
        data: test_dns::RecordData::Txt(vec![b"one".to_vec(), Vec::new(), b"three".to_vec()]),
    });
    let dns = TestDns::start_with_zone(zone).await.unwrap();
    let response = tcp_exchange(dns.addr(), "inserted.example.com.", WireType::TXT).await;
    assert_eq!(
        txt_strings(&response.answers),
        [vec![b"one".to_vec(), Vec::new(), b"three".to_vec()]]
    );
}

#[tokio::test]
async fn query_log_records_name_type_and_transport() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    udp_exchange(dns.addr(), "_DMARC.Example.com.", WireType::TXT).await;
    tcp_exchange(dns.addr(), "host.example.com.", WireType::A).await;
    udp_exchange(dns.addr(), "host.example.com.", WireType::AAAA).await;

    assert_eq!(
        dns.queries(),
        [
            Query {
                name: "_dmarc.example.com".into(),
                rtype: Some(RecordType::Txt),
                transport: Transport::Udp,
            },
            Query {
                name: "host.example.com".into(),
                rtype: Some(RecordType::A),
                transport: Transport::Tcp,
            },
            Query {
                name: "host.example.com".into(),
                rtype: Some(RecordType::Aaaa),
                transport: Transport::Udp,
            },
        ]
    );
    assert_eq!(dns.query_count("HOST.example.com."), 2);
    assert_eq!(dns.query_count("_dmarc.example.com"), 1);
    assert_eq!(dns.query_count("nowhere.example.com"), 0);

    dns.clear_queries();
    assert!(dns.queries().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_a_multi_thread_runtime() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let lookup = resolver(&dns, RESOLVER_TIMEOUT)
        .txt_lookup("_dmarc.example.com.")
        .await
        .unwrap();
    assert_eq!(txt_strings(lookup.answers()).len(), 1);
}

#[tokio::test]
async fn answers_while_the_test_blocks_its_runtime() {
    // A current-thread runtime blocked by synchronous code still gets its
    // answer: the server has a thread and a runtime of its own.
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(common::ANSWER_TIMEOUT))
        .unwrap();
    socket
        .send_to(
            &common::query(7, "host.example.com.", WireType::A, false),
            dns.addr(),
        )
        .unwrap();
    let mut buffer = [0; 512];
    let len = socket.recv(&mut buffer).unwrap();
    let response = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(response.metadata.id, 7);
    assert_eq!(
        show(&response.answers),
        ["host.example.com. 3600 A 192.0.2.1"]
    );
}

#[tokio::test]
async fn classes_other_than_in_are_refused() {
    let dns = TestDns::start(EXAMPLE_ZONE).await.unwrap();
    let mut query = hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("version.bind.").unwrap(),
        WireType::TXT,
    );
    query.set_query_class(hickory_proto::rr::DNSClass::CH);
    let mut message = Message::query();
    message.add_query(query);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&message.to_vec().unwrap(), dns.addr())
        .await
        .unwrap();
    let mut buffer = [0; 512];
    let len = tokio::time::timeout(common::ANSWER_TIMEOUT, socket.recv(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let response = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::Refused);
}

/// RFC 1035 §5.1 escapes in zone text give labels holding spaces, dots or
/// any octet (RFC 2181 §11); the server answers them by their octets, over
/// UDP and TCP, and logs and matches faults by the zone's canonical text.
#[tokio::test]
async fn names_with_escaped_octets() {
    let dns = TestDns::start(
        "macro%percent\\032\\032space%20url-space.example.com. A 192.0.2.1\n\
         a\\.b.example.com. TXT dotted\n\
         caf\\195\\169.example.com. CNAME a\\.b.example.com.\n",
    )
    .await
    .unwrap();
    let labels =
        |record: &Record| -> Vec<Vec<u8>> { record.name.iter().map(<[u8]>::to_vec).collect() };

    let spaced = "macro%percent\\032\\032space%20url-space.example.com.";
    for response in [
        udp_exchange(dns.addr(), spaced, WireType::A).await,
        tcp_exchange(dns.addr(), spaced, WireType::A).await,
    ] {
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert_eq!(response.answers.len(), 1);
        assert_eq!(
            labels(&response.answers[0]),
            [
                b"macro%percent  space%20url-space".to_vec(),
                b"example".to_vec(),
                b"com".to_vec()
            ]
        );
    }

    // A label holding a dot is one label: a.b.example.com does not exist.
    let dotted = udp_exchange(dns.addr(), "a\\.b.example.com.", WireType::TXT).await;
    assert_eq!(txt_strings(&dotted.answers), [vec![b"dotted".to_vec()]]);
    assert_eq!(labels(&dotted.answers[0])[0], b"a.b");
    let split = udp_exchange(dns.addr(), "a.b.example.com.", WireType::TXT).await;
    assert_eq!(split.metadata.response_code, ResponseCode::NXDomain);

    // Octets above 127, and a CNAME to a label holding a dot.
    let cafe = udp_exchange(dns.addr(), "caf\\195\\169.example.com.", WireType::TXT).await;
    assert_eq!(labels(&cafe.answers[0])[0], [b'c', b'a', b'f', 0xc3, 0xa9]);
    assert_eq!(txt_strings(&cafe.answers), [vec![b"dotted".to_vec()]]);

    let logged: Vec<String> = dns.queries().into_iter().map(|query| query.name).collect();
    assert_eq!(
        logged,
        [
            "macro%percent\\032\\032space%20url-space.example.com",
            "macro%percent\\032\\032space%20url-space.example.com",
            "a\\.b.example.com",
            "a.b.example.com",
            "caf\\195\\169.example.com",
        ]
    );
    // Counted and faulted by name, raw spaces or escapes alike.
    assert_eq!(
        dns.query_count("macro%percent  space%20url-space.example.com"),
        2
    );
    dns.set_fault(
        "MACRO%PERCENT\\ \\ SPACE%20URL-SPACE.example.com",
        None,
        Fault::ServFail,
    );
    let failed = udp_exchange(dns.addr(), spaced, WireType::A).await;
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
}
