//! An authoritative DNS server for tests: zone text in, 127.0.0.1 UDP+TCP
//! out, with fault switches.
//!
//! [`TestDns::start`] parses zone text (RFC 1035 §5, see
//! [`dmarc_verifier::dns::zone`]) and serves it on `127.0.0.1` over UDP and
//! TCP on one port, so that tests never touch the internet and never mock
//! the resolver. The server is built on hickory-server and answers from a
//! [`Zone`]: authoritatively (AA set), NXDOMAIN or NOERROR/NODATA, CNAME
//! chains in the answer section, and the zone's SOA in the authority
//! section of negative answers (RFC 2308 §3; a zone without SOA gets
//! negative answers without one, which resolvers do not know how long to
//! cache). Record TTLs are the zone's. Faults ([`Fault`]) make a name fail
//! the way real servers fail, and every question is logged
//! ([`TestDns::queries`]).
//!
//! The server runs on a thread of its own with its own current-thread Tokio
//! runtime: it answers whatever runtime the test uses, multi-thread or
//! current-thread, and dropping the [`TestDns`] stops it and frees the port
//! before `drop` returns.
//!
//! # Examples
//!
//! ```
//! use test_dns::{Fault, RecordType, TestDns};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), test_dns::Error> {
//! let dns = TestDns::start(
//!     "example.com. 300 IN SOA ns.example.com. hostmaster.example.com. 1 7200 900 1209600 60\n\
//!      _dmarc.example.com. 300 IN TXT \"v=DMARC1; p=reject\"\n",
//! )
//! .await?;
//! // Point a resolver at dns.addr() (UDP and TCP), then:
//! dns.set_fault("_dmarc.example.com", Some(RecordType::Txt), Fault::ServFail);
//! assert_eq!(dns.query_count("_dmarc.example.com"), 0);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod handler;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The zone types of `dmarc_verifier::dns::zone`, re-exported: the unit
/// tests of dmarc-verifier itself see a second copy of that crate, whose
/// types are not these, so they name them through `test_dns`.
pub use dmarc_verifier::dns::zone::{RecordData, RecordType, Zone, ZoneError, ZoneRecord};
use hickory_server::Server;
use tokio::sync::oneshot;

/// How many times [`TestDns::start`] looks for a port free for both UDP and
/// TCP.
const BIND_ATTEMPTS: usize = 32;
/// An idle TCP connection is closed after this long.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 64;
/// How long stopping waits for the server's tasks to end.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A way for the server to fail on a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Answer SERVFAIL (RFC 1035 §4.1.1 RCODE 2).
    ServFail,
    /// Answer REFUSED (RCODE 5).
    Refused,
    /// Answer NXDOMAIN even if the name exists (with the zone's SOA, as for
    /// a real NXDOMAIN).
    NxDomain,
    /// Never answer, so that the client times out. The question is still
    /// logged.
    Timeout,
    /// Answer normally after this delay, without holding up other
    /// questions, even on the same TCP connection.
    Delay(Duration),
    /// Over UDP, answer with TC (truncated) set and no records, so that the
    /// client retries over TCP (RFC 7766 §5); over TCP, answer normally.
    Truncate,
}

/// The transport a question came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// One question the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The name asked, lowercase, without the trailing dot (the root is
    /// `""`), in the zone's canonical text: a dot, a backslash or an octet
    /// that is not printable ASCII inside a label is escaped (`\.`, `\\`,
    /// `\DDD`; see `dmarc_verifier::dns::zone`).
    pub name: String,
    /// The type asked; `None` for a type the zone does not know (ANY, SRV,
    /// ...).
    pub rtype: Option<RecordType>,
    /// The transport the question came over.
    pub transport: Transport,
}

/// Why a server could not start.
#[derive(Debug)]
pub enum Error {
    /// No socket could be bound, or the server thread could not start.
    Io(io::Error),
    /// The zone text is invalid.
    Zone(ZoneError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "cannot start the test DNS server: {error}"),
            Error::Zone(error) => write!(f, "invalid zone for the test DNS server: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(error) => Some(error),
            Error::Zone(error) => Some(error),
        }
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error::Io(error)
    }
}

impl From<ZoneError> for Error {
    fn from(error: ZoneError) -> Self {
        Error::Zone(error)
    }
}

/// What the test and the server share: the zone, the faults and the log.
#[derive(Debug, Default)]
struct State {
    zone: RwLock<Arc<Zone>>,
    /// (name, type or all types) → fault.
    faults: Mutex<HashMap<(String, Option<RecordType>), Fault>>,
    queries: Mutex<Vec<Query>>,
}

impl State {
    fn zone(&self) -> Arc<Zone> {
        Arc::clone(&self.zone.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The fault for a question: the one set for its type, else the one
    /// set for all types.
    fn fault(&self, name: &str, rtype: Option<RecordType>) -> Option<Fault> {
        let faults = lock(&self.faults);
        rtype
            .and_then(|rtype| faults.get(&(name.to_owned(), Some(rtype))))
            .or_else(|| faults.get(&(name.to_owned(), None)))
            .copied()
    }

    fn log(&self, query: Query) {
        lock(&self.queries).push(query);
    }
}

/// A lock that a panicking holder did not make unusable: the data (a map, a
/// log) stays consistent whatever panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A name as the server logs and matches it: the zone's canonical text
/// (lowercase, no trailing dot, escapes decoded and written canonically).
fn normalize_name(name: &str) -> String {
    dmarc_verifier::dns::zone::normalize_name(name)
}

/// An authoritative DNS server on 127.0.0.1, UDP and TCP on one port,
/// answering from a [`Zone`]. Dropping it stops the server.
#[derive(Debug)]
pub struct TestDns {
    addr: SocketAddr,
    state: Arc<State>,
    /// Dropping it tells the server thread to stop.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestDns {
    /// Starts a server answering from `zone_text` (origin: root). Must be
    /// called inside a tokio runtime (multi-thread or current-thread both
    /// must work).
    ///
    /// The server is ready when this returns: its sockets are bound and
    /// registered.
    ///
    /// # Errors
    ///
    /// [`Error::Zone`] when the zone text is invalid, [`Error::Io`] when no
    /// port can be bound or the server cannot start.
    pub async fn start(zone_text: &str) -> Result<TestDns, Error> {
        let zone = Zone::parse(zone_text, None)?;
        TestDns::start_with_zone(zone).await
    }

    /// Starts a server answering from `zone`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when no port can be bound or the server cannot start.
    pub async fn start_with_zone(zone: Zone) -> Result<TestDns, Error> {
        let (udp, tcp) = bind_udp_and_tcp()?;
        let addr = udp.local_addr()?;
        let state = Arc::new(State {
            zone: RwLock::new(Arc::new(zone)),
            ..State::default()
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let handler = handler::Handler::new(Arc::clone(&state));
        let thread = std::thread::Builder::new()
            .name(format!("test-dns {addr}"))
            .spawn(move || serve(udp, tcp, handler, ready_tx, stop_rx))?;
        let mut dns = TestDns {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.await {
            Ok(Ok(())) => Ok(dns),
            Ok(Err(error)) => {
                dns.stop();
                Err(Error::Io(error))
            }
            Err(_) => {
                dns.stop();
                Err(Error::Io(io::Error::other(
                    "the DNS server thread ended before it was ready",
                )))
            }
        }
    }

    /// The address the server listens on: 127.0.0.1, the same port for UDP
    /// and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Fault switch for a name (case-insensitive, trailing dot ignored),
    /// for one type or all types (None).
    ///
    /// A fault set for the asked type wins over one set for all types.
    /// Faults apply to the name asked, not to the targets of CNAMEs in the
    /// answer. Setting a fault again for the same name and type replaces
    /// it.
    pub fn set_fault(&self, name: &str, rtype: Option<RecordType>, fault: Fault) {
        lock(&self.state.faults).insert((normalize_name(name), rtype), fault);
    }

    /// Clears the faults of a name (case-insensitive, trailing dot
    /// ignored), for every type.
    pub fn clear_fault(&self, name: &str) {
        let name = normalize_name(name);
        lock(&self.state.faults).retain(|(faulty, _), _| *faulty != name);
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Replace the served zone at runtime.
    ///
    /// Questions received from then on are answered from `zone`; faults and
    /// the query log are kept.
    pub fn set_zone(&self, zone: Zone) {
        *self
            .state
            .zone
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(zone);
    }

    /// Every question received, in order: (lowercase name without trailing
    /// dot, type, transport Udp/Tcp).
    ///
    /// A question is logged when it arrives, before any fault applies.
    pub fn queries(&self) -> Vec<Query> {
        lock(&self.state.queries).clone()
    }

    /// How many questions were received for `name` (case-insensitive,
    /// trailing dot ignored), of any type, over either transport.
    pub fn query_count(&self, name: &str) -> usize {
        let name = normalize_name(name);
        lock(&self.state.queries)
            .iter()
            .filter(|query| query.name == name)
            .count()
    }

    /// Empties the query log.
    pub fn clear_queries(&self) {
        lock(&self.state.queries).clear();
    }

    /// Tells the server thread to stop and waits until it has: its tasks
    /// are gone and its sockets closed.
    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread was already reported there.
            let _ = thread.join();
        }
    }
}

impl Drop for TestDns {
    /// Stops the server and waits for its thread to end (a few
    /// milliseconds), so the port is free when `drop` returns.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds a UDP socket on 127.0.0.1 with a port the kernel picks, and a TCP
/// listener on the same port; retries when TCP has that port taken.
fn bind_udp_and_tcp() -> io::Result<(UdpSocket, TcpListener)> {
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        match TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((udp, tcp));
            }
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")))
}

/// The server thread: runs hickory-server on its own current-thread
/// runtime until told to stop, then shuts it down, which drops every task
/// and closes the sockets.
fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    handler: handler::Handler,
    ready: oneshot::Sender<io::Result<()>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    runtime.block_on(async move {
        let sockets = tokio::net::UdpSocket::from_std(udp)
            .and_then(|udp| Ok((udp, tokio::net::TcpListener::from_std(tcp)?)));
        let (udp, tcp) = match sockets {
            Ok(sockets) => sockets,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        if ready.send(Ok(())).is_err() {
            return;
        }
        // A message or a dropped sender: stop either way.
        let _ = stop.await;
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, server.shutdown_gracefully()).await;
    });
    // Drops the tasks still there (delayed answers, open connections).
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
}
