//! The `dmarc-milter` binary: arguments, `--check-config`, the UNIX
//! socket's life, signals.

mod common;

use common::*;
use indymilter_test::TestConnection;
use std::{
    io::Read,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
};

const BIN: &str = env!("CARGO_BIN_EXE_dmarc-milter");

fn check_config(path: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(path)
        .arg("--check-config")
        .output()
        .expect("run dmarc-milter");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_config_accepts_the_sample() {
    let sample = repo().join("crates/dmarc-milter/dmarc-milter.toml");
    let (code, out) = check_config(&sample);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK"), "{out}");
}

#[test]
fn check_config_refuses_a_bad_value_with_exit_2() {
    let dir = TempDir::new("check");
    let path = dir.path().join("dmarc-milter.toml");
    std::fs::write(
        &path,
        "socket = \"inet:127.0.0.1:8895\"\n\n\n\n\n\ninvalid_from_disposition = \"rejekt\"\n",
    )
    .unwrap();
    let (code, out) = check_config(&path);
    assert_eq!(code, 2);
    assert_eq!(
        out.trim(),
        format!(
            "dmarc-milter: {} line 7: invalid value \"rejekt\" for invalid_from_disposition (expected reject, quarantine, accept or tempfail)",
            path.display()
        )
    );

    std::fs::write(&path, "public_suffix_list = \"/nonexistent/psl.dat\"\n").unwrap();
    let (code, out) = check_config(&path);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/psl.dat"), "{out}");

    let (code, out) = check_config(&dir.path().join("missing.toml"));
    assert_eq!(code, 2);
    assert!(out.contains("missing.toml: cannot read the file"), "{out}");
}

/// `--check-config` opens the report store: a file in a directory that
/// does not exist is refused with exit 2, a good one is created.
/// Issue 14 bug 1: `--check-config` reads the report store and never
/// creates or changes a file (run as root, it would leave files the
/// service user cannot write); a store it cannot read is a warning, not a
/// reason to refuse the configuration, unless `report_store_required`.
#[test]
fn check_config_reads_the_report_store_without_writing() {
    let dir = TempDir::new("check-store");
    let path = dir.path().join("dmarc-milter.toml");
    let store = |file: &Path, required: bool| {
        format!(
            "report_store = \"{}\"\nreport_org_name = \"Test\"\nreport_email = \"dmarc@mx.test.example\"\nreport_store_required = {required}\n",
            file.display()
        )
    };
    let missing_dir = dir.path().join("no/such/dir/r.db");
    std::fs::write(&path, store(&missing_dir, false)).unwrap();
    let (code, out) = check_config(&path);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("dmarc-milter: warning: report_store: "),
        "{out}"
    );
    assert!(out.contains("no/such/dir"), "{out}");
    std::fs::write(&path, store(&missing_dir, true)).unwrap();
    let (code, out) = check_config(&path);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("dmarc-milter: report_store: "), "{out}");

    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let db = dir.path().join("reports.db");
    std::fs::write(&path, store(&db, true)).unwrap();
    let before = listing();
    let (code, out) = check_config(&path);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("does not exist yet; it will be created at start"),
        "{out}"
    );
    assert_eq!(listing(), before, "nothing created");

    // An existing store, write-locked by another process: read all the
    // same, nothing created beside it.
    drop(dmarc_report::store::SqliteStore::open(&db).unwrap());
    let locker = rusqlite_lock(&db);
    let before = listing();
    let (code, out) = check_config(&path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("report_store is ready"), "{out}");
    assert_eq!(listing(), before);
    drop(locker);
}

/// Holds SQLite's write lock on `db` (the daemon runs as another
/// process).
fn rusqlite_lock(db: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(db).unwrap();
    connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
    connection
}

/// `dmarc-milter report` without reporting configured, or with a bad day,
/// says so and fails; with a store it prints what it did.
#[test]
fn report_command() {
    let dir = TempDir::new("report-cmd");
    let path = dir.path().join("dmarc-milter.toml");
    std::fs::write(&path, "log_level = \"warn\"\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg("report")
            .args(args)
            .output()
            .expect("run dmarc-milter report");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A configuration error, like every other: exit 2 (issue 14 bug 5).
    let (code, _, err) = run(&[]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "dmarc-milter report: reporting is not configured: set report_store"
    );

    std::fs::write(
        &path,
        format!(
            "log_level = \"warn\"\nreport_store = \"{}\"\nreport_org_name = \"Test\"\nreport_email = \"dmarc@mx.test.example\"\nreport_transport = \"dir:{}\"\n",
            dir.path().join("r.db").display(),
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["--day", "2026-02-30"]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "dmarc-milter report: \"2026-02-30\" is not a date (YYYY-MM-DD)"
    );
    let (code, out, err) = run(&["--day", "2026-11-21", "--no-deliver"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0 policy domains: 0 reports made"), "{out}");

    // Issue 14 bug 4: a day that has not ended (UTC) is refused; reporting
    // it would mark it done and lose the rest of its mail.
    let today = utc_date(std::time::SystemTime::now());
    for day in [today.as_str(), "2999-01-01"] {
        let (code, out, err) = run(&["--day", day, "--no-deliver"]);
        assert_eq!(code, 2, "{day}: {out}{err}");
        assert!(err.contains("has not ended yet"), "{err}");
        assert!(out.is_empty(), "{out}");
    }
}

/// `YYYY-MM-DD` of a time, in UTC.
fn utc_date(time: std::time::SystemTime) -> String {
    let days = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = i64::try_from(days).unwrap() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[test]
fn help_and_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("dmarc-milter {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--config <FILE>") && help.contains("--check-config"),
        "{help}"
    );
}

fn spawn(config: &Path) -> Child {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dmarc-milter")
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

fn stderr_of(mut child: Child) -> (i32, String) {
    let status = child.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    (status.code().unwrap_or(-1), err)
}

/// Collects a child's stderr as it is written.
fn collect_stderr(child: &mut Child) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (log, reader)
}

/// The daemon on a UNIX socket: a stale socket file is replaced, the mode
/// is applied, SIGHUP with a broken file keeps it running, SIGTERM stops it
/// with exit 0 and removes the socket.
#[tokio::test]
async fn unix_socket_daemon_lifecycle() {
    let dir = TempDir::new("daemon");
    let socket = dir.path().join("milter.sock");
    // A stale socket nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(std::fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_socket());

    let config = dir.path().join("dmarc-milter.toml");
    let psl = repo().join("crates/dmarc-verifier/data/public_suffix_list.dat");
    let text = format!(
        "socket = \"unix:{}\"\nsocket_mode = \"0600\"\nnameservers = [\"127.0.0.1:9\"]\npublic_suffix_list = \"{}\"\n",
        socket.display(),
        psl.display()
    );
    std::fs::write(&config, &text).unwrap();
    let mut child = spawn(&config);
    let (log, reader) = collect_stderr(&mut child);

    wait_until("the milter to listen", async || {
        tokio::net::UnixStream::connect(&socket).await.is_ok()
    })
    .await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let conn = TestConnection::configure()
        .open_unix(&socket)
        .await
        .expect("negotiate");
    conn.close().await.unwrap();

    // A second instance refuses to take over a live socket.
    let (code, err) = stderr_of(spawn(&config));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("another process is listening"), "{err}");

    // A broken configuration on reload is refused; the milter stays.
    std::fs::write(&config, format!("{text}dry_run = 1\n")).unwrap();
    signal(&child, libc::SIGHUP);
    wait_until("the reload to be refused", async || {
        log.lock().unwrap().contains("reload refused")
    })
    .await;
    let conn = TestConnection::configure()
        .open_unix(&socket)
        .await
        .expect("still serving");
    conn.close().await.unwrap();

    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let err = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!socket.exists(), "the socket file is removed at exit");
    assert!(
        err.contains("reload refused, keeping the running configuration")
            && err.contains("line 5: invalid value \"1\" for dry_run"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no ANSI colours when not a terminal: {err}"
    );
}

#[test]
fn refuses_to_remove_a_file_that_is_not_a_socket() {
    let dir = TempDir::new("notsock");
    let socket = dir.path().join("milter.sock");
    std::fs::write(&socket, "precious").unwrap();
    let config = dir.path().join("dmarc-milter.toml");
    std::fs::write(&config, format!("socket = \"unix:{}\"\n", socket.display())).unwrap();
    let (code, err) = stderr_of(spawn(&config));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is not a socket; refusing to remove it"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

/// A reload warns about each setting that needs a restart and differs from
/// what the process started with; after it is reverted, the next reload
/// is silent (issue 14, bug 5).
#[tokio::test]
async fn reload_warns_about_restart_only_settings_until_reverted() {
    let dir = TempDir::new("reload-revert");
    let socket = dir.path().join("milter.sock");
    let config = dir.path().join("dmarc-milter.toml");
    let psl = repo().join("crates/dmarc-verifier/data/public_suffix_list.dat");
    let text = format!(
        "socket = \"unix:{}\"\nnameservers = [\"127.0.0.1:9\"]\npublic_suffix_list = \"{}\"\n",
        socket.display(),
        psl.display()
    );
    std::fs::write(&config, format!("{text}socket_mode = \"0660\"\n")).unwrap();
    let mut child = spawn(&config);
    let (log, reader) = collect_stderr(&mut child);
    wait_until("the milter to listen", async || {
        tokio::net::UnixStream::connect(&socket).await.is_ok()
    })
    .await;
    let reloads = |log: &Arc<Mutex<String>>| {
        log.lock()
            .unwrap()
            .matches("configuration reloaded")
            .count()
    };

    std::fs::write(&config, format!("{text}socket_mode = \"0600\"\n")).unwrap();
    signal(&child, libc::SIGHUP);
    wait_until("the first reload", async || reloads(&log) == 1).await;
    std::fs::write(&config, format!("{text}socket_mode = \"0660\"\n")).unwrap();
    signal(&child, libc::SIGHUP);
    wait_until("the second reload", async || reloads(&log) == 2).await;

    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let err = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("takes effect at restart"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("socket_mode changed"), "{err}");
}

// --- Logs and metrics of the daemon (issue 15) --------------------------------

/// The base configuration of a daemon on a UNIX socket in `dir`, asking
/// `nameserver`.
fn daemon_config(dir: &Path, nameserver: &str, extra: &str) -> (PathBuf, PathBuf) {
    let socket = dir.join("milter.sock");
    let config = dir.join("dmarc-milter.toml");
    let psl = repo().join("crates/dmarc-verifier/data/public_suffix_list.dat");
    std::fs::write(
        &config,
        format!(
            "socket = \"unix:{}\"\nnameservers = [\"{nameserver}\"]\ndns_timeout = 0.5\ndns_attempts = 1\npublic_suffix_list = \"{}\"\n{extra}",
            socket.display(),
            psl.display()
        ),
    )
    .unwrap();
    (socket, config)
}

/// An MTA connection to the daemon, connected and greeted as Postfix does.
async fn mta(socket: &Path, client: &str, helo: &str) -> TestConnection {
    let mut conn = TestConnection::configure()
        .exact_leading_space(true)
        .open_unix(socket)
        .await
        .expect("negotiate");
    conn.macros(
        indymilter_test::MacroStage::Connect,
        [("j", MTA_NAME), ("{client_addr}", client)],
    )
    .await
    .unwrap();
    let ip: std::net::IpAddr = client.parse().unwrap();
    conn.connect(helo, (ip, 40000)).await.unwrap();
    conn.helo(helo).await.unwrap();
    conn
}

/// `log_level` applies on SIGHUP, without a restart and without the
/// warning of settings that need one.
#[tokio::test]
async fn sighup_changes_the_log_level() {
    let dir = TempDir::new("log-level");
    let (socket, config) = daemon_config(dir.path(), "127.0.0.1:9", "log_level = \"info\"\n");
    let mut child = spawn(&config);
    let (log, reader) = collect_stderr(&mut child);
    wait_until("the milter to listen", async || {
        tokio::net::UnixStream::connect(&socket).await.is_ok()
    })
    .await;
    // At info, a connection logs nothing (its debug line is off). MAIL is
    // answered after the connect callback ran.
    let mut conn = mta(&socket, "192.0.2.1", "first.example").await;
    assert_eq!(
        conn.mail(["<a@example.com>"]).await.unwrap(),
        indymilter_test::Status::Continue
    );
    conn.close().await.unwrap();

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("log_level = \"info\"", "log_level = \"debug\""),
    )
    .unwrap();
    signal(&child, libc::SIGHUP);
    wait_until("the reload", async || {
        log.lock().unwrap().contains("configuration reloaded")
    })
    .await;
    let conn = mta(&socket, "192.0.2.2", "second.example").await;
    wait_until("the debug line of the second connection", async || {
        log.lock().unwrap().contains("second.example")
    })
    .await;
    conn.close().await.unwrap();

    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let err = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains(" INFO log level changed log_level=debug"),
        "{err}"
    );
    assert!(
        !err.contains("first.example"),
        "the first connection was at info: {err}"
    );
    assert!(!err.contains("takes effect at restart"), "{err}");
}

/// Under systemd (standard error is the journal's stream, as
/// `JOURNAL_STREAM` says) lines start with their syslog priority and have
/// no time stamp; a resolver that does not answer is a warning at start,
/// not a refusal; `metrics_listen` serves `/metrics`.
#[tokio::test]
async fn journald_priorities_resolver_check_and_metrics() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = TempDir::new("journald");
    // A resolver that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (socket, config) = daemon_config(
        dir.path(),
        &silent.local_addr().unwrap().to_string(),
        "metrics_listen = \"127.0.0.1:0\"\n",
    );
    let (reader_end, writer_end) = std::io::pipe().unwrap();
    let stat = std::fs::File::from(std::os::fd::OwnedFd::from(writer_end.try_clone().unwrap()))
        .metadata()
        .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", format!("{}:{}", stat.dev(), stat.ino()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer_end))
        .spawn()
        .expect("spawn dmarc-milter");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        let mut reader_end = reader_end;
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader_end.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    wait_until("the resolver warning", async || {
        log.lock().unwrap().contains("the resolver does not answer")
    })
    .await;
    // Still serving.
    let conn = TestConnection::configure()
        .open_unix(&socket)
        .await
        .expect("serving");
    conn.close().await.unwrap();
    // The metrics, at the address the log gives.
    let addr: std::net::SocketAddr = {
        let text = log.lock().unwrap().clone();
        let line = text
            .lines()
            .find(|l| l.contains("metrics at http://"))
            .expect("metrics line");
        let rest = line.split("http://").nth(1).unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    };
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("\ndmarc_milter_connections_total 1\n"),
        "{response}"
    );

    signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    reader.join().unwrap();
    let err = log.lock().unwrap().clone();
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.contains(
            &format!(
                "<6> INFO dmarc-milter {} started",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        ),
        "{err}"
    );
    let warning = lines
        .iter()
        .find(|l| l.contains("the resolver does not answer"))
        .unwrap();
    assert!(
        warning.starts_with("<4> WARN the resolver does not answer (timeout) to a question for the root's name servers; resolver 127.0.0.1:"),
        "{warning}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with('<')),
        "every line has its priority: {err}"
    );
}

/// `RUST_LOG=debug` shows our debug lines (the decision trail), not the
/// resolver library's, unless a directive names it; a resolver that
/// answers makes no warning at start.
#[tokio::test]
async fn rust_log_debug_keeps_the_resolvers_internals_out() {
    let dns = test_dns::TestDns::start(&demo_zone())
        .await
        .expect("test DNS");
    for (rust_log, hickory_shown) in [("debug", false), ("debug,hickory_proto=debug", true)] {
        let dir = TempDir::new("rust-log");
        let (socket, config) = daemon_config(dir.path(), &dns.addr().to_string(), "");
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dmarc-milter");
        let (log, reader) = collect_stderr(&mut child);
        wait_until("the resolver check", async || {
            log.lock().unwrap().contains("the resolver answers")
        })
        .await;
        let mut conn = mta(&socket, "192.0.2.10", "mail.example.com").await;
        let (_, status) = send(
            &mut conn,
            "bounce-123@bounce.example.net",
            None,
            &Mail::example("newsletter.eml"),
        )
        .await;
        assert_eq!(status, indymilter_test::Status::Accept);
        conn.close().await.unwrap();
        wait_until("the verdict line", async || {
            log.lock().unwrap().contains("INFO verdict queue_id=4XTEST")
        })
        .await;
        signal(&child, libc::SIGTERM);
        assert_eq!(child.wait().unwrap().code(), Some(0));
        reader.join().unwrap();
        let err = log.lock().unwrap().clone();
        assert!(err.contains("DEBUG dns: TXT _dmarc.example.com"), "{err}");
        assert!(!err.contains("WARN"), "{err}");
        assert_eq!(
            err.contains("hickory"),
            hickory_shown,
            "RUST_LOG={rust_log}: {err}"
        );
    }
}
