//! Clients for the test-dns integration tests: the resolver mail-auth uses,
//! and raw DNS messages over UDP and TCP for what a resolver hides (flags,
//! sections, transports).

#![allow(dead_code)] // Each test file uses part of it.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::net::{DnsError, NetError};
use mail_auth::hickory_resolver::TokioResolver;
use test_dns::TestDns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The zone most tests serve.
pub const EXAMPLE_ZONE: &str = include_str!("../data/example.zone");

/// Bound on waiting for an answer that must come.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A resolver that asks only `dns`, over UDP with TCP fallback, once per
/// question, without cache or hosts file.
pub fn resolver(dns: &TestDns, timeout: Duration) -> TokioResolver {
    let mut server = NameServerConfig::udp_and_tcp(dns.addr().ip());
    for connection in &mut server.connections {
        connection.port = dns.addr().port();
    }
    let mut options = ResolverOpts::default();
    options.timeout = timeout;
    options.attempts = 1;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![server]),
        TokioRuntimeProvider::default(),
    )
    .with_options(options)
    .build()
    .unwrap()
}

/// The response code a failed lookup reports, if it reports one.
pub fn response_code(error: &NetError) -> Option<ResponseCode> {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => Some(no_records.response_code),
        NetError::Dns(DnsError::ResponseCode(code)) => Some(*code),
        _ => None,
    }
}

/// A query message for `name` and `rtype`, with EDNS (payload 1232) when
/// `edns` is set.
///
/// `name` is read as zone text reads it (RFC 1035 §5.1 escapes, `\DDD`
/// in decimal); hickory's `Name::from_ascii` reads `\DDD` as octal.
pub fn query(id: u16, name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
    let labels = dmarc_verifier::dns::zone::name_labels(name).unwrap();
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(Name::from_labels(labels).unwrap(), rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.set_edns(opt);
    }
    message.to_vec().unwrap()
}

/// Sends one query over UDP and returns the response.
pub async fn udp_exchange(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&query(1, name, rtype, true), addr)
        .await
        .unwrap();
    let mut buffer = vec![0; 65_535];
    let (len, _) = tokio::time::timeout(ANSWER_TIMEOUT, socket.recv_from(&mut buffer))
        .await
        .expect("no UDP answer")
        .unwrap();
    Message::from_vec(&buffer[..len]).unwrap()
}

/// A TCP connection to the server, carrying length-prefixed messages
/// (RFC 1035 §4.2.2).
pub struct TcpClient(tokio::net::TcpStream);

impl TcpClient {
    pub async fn connect(addr: SocketAddr) -> TcpClient {
        TcpClient(tokio::net::TcpStream::connect(addr).await.unwrap())
    }

    pub async fn send(&mut self, id: u16, name: &str, rtype: RecordType) {
        let message = query(id, name, rtype, false);
        let len = u16::try_from(message.len()).unwrap();
        self.0.write_all(&len.to_be_bytes()).await.unwrap();
        self.0.write_all(&message).await.unwrap();
    }

    pub async fn receive(&mut self) -> Message {
        let read = async {
            let len = self.0.read_u16().await.unwrap();
            let mut buffer = vec![0; usize::from(len)];
            self.0.read_exact(&mut buffer).await.unwrap();
            Message::from_vec(&buffer).unwrap()
        };
        tokio::time::timeout(ANSWER_TIMEOUT, read)
            .await
            .expect("no TCP answer")
    }
}

/// Sends one query over a new TCP connection and returns the response.
pub async fn tcp_exchange(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut client = TcpClient::connect(addr).await;
    client.send(1, name, rtype).await;
    client.receive().await
}
