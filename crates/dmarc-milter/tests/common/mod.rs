//! Shared set-up of the milter tests: the demo zone on a test DNS server,
//! the milter started in-process on 127.0.0.1:0, and an MTA side that
//! speaks the milter protocol (indymilter-test) the way Postfix does.

#![allow(dead_code)]

use dmarc_milter::{
    reload_channel, Config, Counters, Listeners, MetricsListener, MilterListener, Reloader,
};
use indymilter_test::{EomAction, EomActions, MacroStage, Status, TestConnection};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use test_dns::TestDns;
use tokio::{sync::oneshot, task::JoinHandle};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of `examples/data/`.
pub fn example(name: &str) -> Vec<u8> {
    let path = repo().join("examples/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The demo zone (examples/data/demo.zone).
pub fn demo_zone() -> String {
    String::from_utf8(example("demo.zone")).expect("utf-8 zone")
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "dmarc-milter-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The authserv-id the tests' MTA announces in macro `j`.
pub const MTA_NAME: &str = "mx.test.example";

/// The configuration every test starts from: the test DNS server only,
/// short timeouts, the bundled Public Suffix List; `extra` lines are added
/// (a key of the base set in `extra` replaces the base's).
pub fn config_text(dns: SocketAddr, extra: &str) -> String {
    let psl = repo().join("crates/dmarc-verifier/data/public_suffix_list.dat");
    let base = format!(
        "socket = \"inet:127.0.0.1:0\"\nnameservers = [\"{dns}\"]\ndns_timeout = 0.5\ndns_attempts = 1\npublic_suffix_list = \"{}\"\nshutdown_timeout = 10\n",
        psl.display()
    );
    let overridden = |line: &str| {
        line.split_once(" = ").is_some_and(|(key, _)| {
            extra
                .lines()
                .any(|extra_line| extra_line.trim_start().starts_with(&format!("{key} =")))
        })
    };
    let kept: String = base
        .lines()
        .filter(|line| !overridden(line))
        .map(|line| format!("{line}\n"))
        .collect();
    format!("{kept}{extra}\n")
}

/// A milter running in-process on 127.0.0.1:0.
pub struct Milter {
    pub addr: SocketAddr,
    pub dns: TestDns,
    pub reloader: Reloader,
    pub config_path: PathBuf,
    pub dir: TempDir,
    /// What the milter counts (every bound hit).
    pub counters: Arc<Counters>,
    /// Where `/metrics` is served (started with [`Milter::start_with_metrics`]).
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), dmarc_milter::Error>>>,
}

impl Milter {
    /// Starts the test DNS server with the demo zone and the milter with
    /// the base configuration plus `extra`.
    pub async fn start(extra: &str) -> Milter {
        let dns = TestDns::start(&demo_zone()).await.expect("test DNS");
        Milter::start_with_dns(dns, extra).await
    }

    pub async fn start_with_dns(dns: TestDns, extra: &str) -> Milter {
        Milter::start_serving(dns, extra, false).await
    }

    /// [`Milter::start_with_dns`] serving the metrics on 127.0.0.1 (a port
    /// the kernel picks, in `metrics_addr`).
    pub async fn start_with_metrics(dns: TestDns, extra: &str) -> Milter {
        Milter::start_serving(dns, extra, true).await
    }

    async fn start_serving(dns: TestDns, extra: &str, metrics: bool) -> Milter {
        let dir = TempDir::new("milter");
        let config_path = dir.path().join("dmarc-milter.toml");
        std::fs::write(&config_path, config_text(dns.addr(), extra)).expect("write config");
        let config = Config::from_file(&config_path).expect("config");
        let listener = MilterListener::bind(&config.socket, config.socket_mode)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("tcp address");
        let metrics = if metrics {
            let listener = MetricsListener::bind("127.0.0.1:0".parse().expect("address"))
                .await
                .expect("bind metrics");
            Some(listener)
        } else {
            None
        };
        let metrics_addr = metrics
            .as_ref()
            .map(|listener| listener.local_addr().expect("metrics address"));
        let (reloader, reloads) = reload_channel();
        let (tx, rx) = oneshot::channel::<()>();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(dmarc_milter::serve(
            Listeners {
                milter: listener,
                metrics,
            },
            config,
            reloads,
            async move {
                let _ = rx.await;
            },
            Arc::clone(&counters),
        ));
        Milter {
            addr,
            dns,
            reloader,
            config_path,
            dir,
            counters,
            metrics_addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Opens an MTA connection: negotiates and sends the connect-stage
    /// macros and CONNECT, HELO as Postfix does.
    pub async fn connect(&self, client: &str, helo: &str) -> TestConnection {
        self.connect_named(client, helo, helo).await
    }

    /// [`Milter::connect`] with the client's host name as the MTA gives it
    /// at CONNECT (Postfix: the verified name, or `unknown`).
    pub async fn connect_named(&self, client: &str, name: &str, helo: &str) -> TestConnection {
        let mut conn = TestConnection::configure()
            .exact_leading_space(true)
            .open_tcp(self.addr)
            .await
            .expect("open milter connection");
        conn.macros(
            MacroStage::Connect,
            [
                ("j", MTA_NAME),
                ("{daemon_name}", "smtpd"),
                ("{client_addr}", client),
            ],
        )
        .await
        .expect("macros");
        let ip: std::net::IpAddr = client.parse().expect("client ip");
        let status = conn.connect(name, (ip, 40000)).await.expect("connect");
        assert_eq!(status, Status::Noreply);
        assert_eq!(conn.helo(helo).await.expect("helo"), Status::Noreply);
        conn
    }

    /// Starts shutting down (what SIGTERM does).
    pub fn shutdown(&mut self) {
        drop(self.shutdown.take());
    }

    /// Shuts down and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), dmarc_milter::Error> {
        self.shutdown();
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("run returns after shutdown")
            .expect("run task")
    }

    /// Rewrites the configuration file (base plus `extra`).
    pub fn rewrite_config(&self, extra: &str) {
        std::fs::write(&self.config_path, config_text(self.dns.addr(), extra))
            .expect("write config");
    }
}

/// A message split the way an MTA sends it to a milter: each header field
/// as (name, everything after the colon, continuation lines joined with
/// LF), and the body in CRLF.
pub struct Mail {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Mail {
    pub fn parse(raw: &[u8]) -> Mail {
        let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split('\n') {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push('\n');
                    value.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        // Postfix removes Return-Path on arrival; the demo files keep it
        // to document the envelope.
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("return-path"));
        Mail {
            headers,
            body: body.replace('\n', "\r\n").into_bytes(),
        }
    }

    pub fn example(name: &str) -> Mail {
        Mail::parse(&example(name))
    }

    /// Adds a header field at the top.
    pub fn prepend(mut self, name: &str, value: &str) -> Mail {
        self.headers
            .insert(0, (name.to_string(), value.to_string()));
        self
    }

    /// Adds a header field after the first `after` fields.
    pub fn insert(mut self, after: usize, name: &str, value: &str) -> Mail {
        self.headers
            .insert(after, (name.to_string(), value.to_string()));
        self
    }
}

/// Sends MAIL, RCPT, the header and (when not skipped) the body, ending at
/// the header: the message is then in flight.
pub async fn send_until_body(
    conn: &mut TestConnection,
    mail_from: &str,
    auth_user: Option<&str>,
    mail: &Mail,
) {
    if let Some(user) = auth_user {
        conn.macros(MacroStage::Mail, [("{auth_authen}", user)])
            .await
            .expect("macros");
    }
    let status = conn.mail([format!("<{mail_from}>")]).await.expect("mail");
    assert_eq!(status, Status::Continue);
    let status = conn.rcpt(["<rcpt@example.net>"]).await.expect("rcpt");
    assert_eq!(status, Status::Noreply);
    for (name, value) in &mail.headers {
        let status = conn
            .header(name.as_str(), value.as_str())
            .await
            .expect("header");
        assert_eq!(status, Status::Noreply);
    }
}

/// Sends the body and the end of message with queue id `queue_id`.
pub async fn finish(
    conn: &mut TestConnection,
    mail: &Mail,
    queue_id: &str,
) -> (EomActions, Status) {
    if !mail.body.is_empty() {
        let status = conn.body(mail.body.clone()).await.expect("body");
        assert_eq!(status, Status::Noreply);
    }
    conn.macros(MacroStage::Eom, [("i", queue_id)])
        .await
        .expect("macros");
    conn.eom().await.expect("eom")
}

/// One whole message on `conn`.
pub async fn send(
    conn: &mut TestConnection,
    mail_from: &str,
    auth_user: Option<&str>,
    mail: &Mail,
) -> (EomActions, Status) {
    send_until_body(conn, mail_from, auth_user, mail).await;
    finish(conn, mail, "4XTEST").await
}

/// The demo newsletter's sender: a client in example.com's SPF, an ESP
/// bounce address.
pub async fn newsletter(milter: &Milter, mail: &Mail) -> (Vec<EomAction>, Status) {
    let mut conn = milter.connect("192.0.2.10", "mail.example.com").await;
    let (actions, status) = send(&mut conn, "bounce-123@bounce.example.net", None, mail).await;
    (actions.actions, status)
}

/// A forger outside example.com's SPF, MAIL FROM `ceo@example.com`.
pub async fn forged(
    milter: &Milter,
    client: &str,
    auth: Option<&str>,
    mail: &Mail,
) -> (Vec<EomAction>, Status) {
    let mut conn = milter.connect(client, "unknown.example.net").await;
    let (actions, status) = send(&mut conn, "ceo@example.com", auth, mail).await;
    (actions.actions, status)
}

/// Polls `probe` until it returns true, for at most 30 s.
pub async fn wait_until(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The reply text of a reject or tempfail.
pub fn reply_text(status: &Status) -> String {
    match status {
        Status::Reject { message: Some(m) } | Status::Tempfail { message: Some(m) } => {
            m.to_string_lossy().into_owned()
        }
        other => panic!("expected a reply with text, got {other:?}"),
    }
}

/// Collects what the milter logs, in the daemon's own format
/// (`dmarc_milter::logging`), without time stamps.
#[derive(Clone, Default)]
pub struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// A subscriber writing here: text (logfmt), everything from `debug`
    /// but the resolver's internals (as `log_level = "debug"`).
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        self.subscriber_with(dmarc_milter::logging::LogFormat::Text, None)
    }

    /// A subscriber writing here in `format`, at `debug` or as the
    /// `RUST_LOG` directives `rust_log` say.
    pub fn subscriber_with(
        &self,
        format: dmarc_milter::logging::LogFormat,
        rust_log: Option<&str>,
    ) -> impl tracing::Subscriber + Send + Sync {
        use tracing_subscriber::layer::SubscriberExt as _;
        let capture = self.clone();
        let filter = dmarc_milter::logging::filter(dmarc_milter::config::LogLevel::Debug, rust_log)
            .expect("filter");
        tracing_subscriber::registry().with(filter).with(
            dmarc_milter::logging::LogLayer::new(format, move || capture.clone()).timestamps(false),
        )
    }
}

/// `promtool` when installed; `None` (with a loud message) when it is not
/// and `DMARC_PROMTOOL` is not `require` (CI sets it; the Debian package
/// `prometheus` has promtool).
pub fn promtool() -> Option<&'static str> {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("promtool");
    }
    assert_ne!(
        std::env::var("DMARC_PROMTOOL").as_deref(),
        Ok("require"),
        "promtool is required (DMARC_PROMTOOL=require): apt-get install prometheus"
    );
    eprintln!(
        "SKIPPED: promtool not installed (apt-get install prometheus); the promtool checks did not run"
    );
    None
}

/// The metric names `contrib/`'s dashboard and alerts use
/// (`dmarc_milter_...`).
pub fn contrib_metric_names() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for file in [
        "contrib/grafana/dmarc-milter.json",
        "contrib/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect("contrib file");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("dmarc_milter_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

/// An RSA-2048 key made by openssl in `dir` (PEM, mode 0600) for
/// `[arc_seal]`, and its DKIM key record as zone-file TXT text.
pub fn openssl_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("arc.key");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl is needed for the sealing tests");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::set_permissions(
        &key,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .expect("openssl");
    assert!(der.status.success());
    let record = format!("v=DKIM1; k=rsa; p={}", {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(der.stdout)
    });
    let text = record
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    (key, text)
}
