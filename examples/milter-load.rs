//! milter-load: a milter load generator, speaking the MTA side of the milter
//! protocol (version 6, as Postfix does) to any milter: ours, OpenDKIM,
//! OpenDMARC, or an empty one.
//!
//! ```text
//! cargo run --release --ignore-rust-version --example milter-load -- \
//!     --milter inet:127.0.0.1:8895 --eml crates/dmarc-verifier/benches/data/rsa-4k.eml \
//!     --connections 8 --messages 500 --client-ip 192.0.2.10 --helo mail.example.com \
//!     --mail-from news@example.com
//! ```
//!
//! N connections run concurrently, each a milter session of M messages
//! (`--session-per-message` opens a new session for every message, as
//! Postfix does for one message per SMTP session). It sends Postfix-like
//! macros, headers as Postfix passes them (name and value, continuation lines
//! joined with LF and leading white space kept when the milter asks for it),
//! honours the steps the milter negotiates away (SMFIP_NO*) and the steps it
//! does not answer (SMFIP_NR_*), and reports messages/s, latency (p50, p99,
//! max, from MAIL to the final reply of end-of-message), the final replies and
//! modifications received, and its own CPU use.

use clap::Parser;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "milter-load",
    about = "Load-test a milter over the milter protocol (MTA side)."
)]
struct Args {
    /// The milter: inet:HOST:PORT or unix:PATH.
    #[arg(long)]
    milter: String,
    /// The message to send (an .eml file).
    #[arg(long)]
    eml: PathBuf,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Messages per connection.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// A new milter session (connect, negotiate) for every message.
    #[arg(long)]
    session_per_message: bool,
    /// SMTP client address passed in the connect step.
    #[arg(long, default_value = "192.0.2.10")]
    client_ip: std::net::IpAddr,
    /// HELO name.
    #[arg(long, default_value = "mail.example.com")]
    helo: String,
    /// MAIL FROM address ("" for the null sender).
    #[arg(long, default_value = "news@example.com")]
    mail_from: String,
    /// RCPT TO address.
    #[arg(long, default_value = "rcpt@example.org")]
    rcpt: String,
    /// Macro j (the MTA's host name).
    #[arg(long, default_value = "mx.example.net")]
    mta_name: String,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

// Commands (MTA → milter) and replies (milter → MTA), milter protocol v6.
const SMFIC_OPTNEG: u8 = b'O';
const SMFIC_MACRO: u8 = b'D';
const SMFIC_CONNECT: u8 = b'C';
const SMFIC_HELO: u8 = b'H';
const SMFIC_MAIL: u8 = b'M';
const SMFIC_RCPT: u8 = b'R';
const SMFIC_DATA: u8 = b'T';
const SMFIC_HEADER: u8 = b'L';
const SMFIC_EOH: u8 = b'N';
const SMFIC_BODY: u8 = b'B';
const SMFIC_BODYEOB: u8 = b'E';
const SMFIC_ABORT: u8 = b'A';
const SMFIC_QUIT: u8 = b'Q';

const SMFIP_NOCONNECT: u32 = 0x1;
const SMFIP_NOHELO: u32 = 0x2;
const SMFIP_NOMAIL: u32 = 0x4;
const SMFIP_NORCPT: u32 = 0x8;
const SMFIP_NOBODY: u32 = 0x10;
const SMFIP_NOHDRS: u32 = 0x20;
const SMFIP_NOEOH: u32 = 0x40;
const SMFIP_NR_HDR: u32 = 0x80;
const SMFIP_NODATA: u32 = 0x200;
const SMFIP_NR_CONN: u32 = 0x1000;
const SMFIP_NR_HELO: u32 = 0x2000;
const SMFIP_NR_MAIL: u32 = 0x4000;
const SMFIP_NR_RCPT: u32 = 0x8000;
const SMFIP_NR_DATA: u32 = 0x10000;
const SMFIP_NR_EOH: u32 = 0x40000;
const SMFIP_NR_BODY: u32 = 0x80000;
const SMFIP_HDR_LEADSPC: u32 = 0x100000;
/// Every protocol flag we can honour.
const MTA_PROTOCOL: u32 = 0x1F_FFFF;
/// Every action we accept (add/change headers, body, recipients, quarantine, ...).
const MTA_ACTIONS: u32 = 0x1FF;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A parsed message: headers (name, raw value after the colon) and body.
struct Message {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_message(raw: &[u8]) -> Result<Message, Error> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (head, body) = text
        .split_once("\n\n")
        .ok_or("the message has no empty line after its headers")?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            // Postfix joins continuation lines with LF, keeping the white space.
            let last = headers
                .last_mut()
                .ok_or("a continuation line before the first header")?;
            last.1.push('\n');
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').ok_or("a header line without ':'")?;
            headers.push((name.to_string(), value.to_string()));
        }
    }
    if headers.is_empty() {
        return Err("the message has no headers".into());
    }
    let body = body.replace('\n', "\r\n").into_bytes();
    Ok(Message { headers, body })
}

struct Conn<S> {
    reader: BufReader<tokio::io::ReadHalf<S>>,
    writer: BufWriter<tokio::io::WriteHalf<S>>,
    protocol: u32,
}

/// Replies to one message.
#[derive(Default)]
struct Outcome {
    final_reply: String,
    modifications: Vec<String>,
}

impl<S: AsyncRead + AsyncWrite> Conn<S> {
    async fn send(&mut self, command: u8, data: &[u8]) -> Result<(), Error> {
        let len = u32::try_from(data.len() + 1)?;
        self.writer.write_all(&len.to_be_bytes()).await?;
        self.writer.write_all(&[command]).await?;
        self.writer.write_all(data).await?;
        Ok(())
    }

    async fn read(&mut self) -> Result<(u8, Vec<u8>), Error> {
        self.writer.flush().await?;
        let mut len = [0u8; 4];
        self.reader.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > 1 << 20 {
            return Err(format!("bad reply length {len}").into());
        }
        let mut packet = vec![0u8; len];
        self.reader.read_exact(&mut packet).await?;
        let data = packet.split_off(1);
        Ok((packet[0], data))
    }

    /// Sends a command and, unless the milter negotiated no reply for it,
    /// reads replies until a final one. Modifications and progress are only
    /// legal at end of message, where they are collected.
    async fn step(
        &mut self,
        command: u8,
        data: &[u8],
        no_reply: u32,
    ) -> Result<Option<Outcome>, Error> {
        self.send(command, data).await?;
        if self.protocol & no_reply != 0 {
            return Ok(None);
        }
        let mut outcome = Outcome::default();
        loop {
            let (code, payload) = self.read().await?;
            match code {
                b'c' => outcome.final_reply = "continue".into(),
                b'a' => outcome.final_reply = "accept".into(),
                b'r' => outcome.final_reply = "reject".into(),
                b't' => outcome.final_reply = "tempfail".into(),
                b'd' => outcome.final_reply = "discard".into(),
                b's' => outcome.final_reply = "skip".into(),
                b'y' => {
                    let text = String::from_utf8_lossy(&payload);
                    let code = text.get(..3).unwrap_or("???").to_string();
                    outcome.final_reply = format!("replycode {code}");
                }
                b'p' => continue,
                b'h' => {
                    outcome.modifications.push("add header".into());
                    continue;
                }
                b'i' => {
                    outcome.modifications.push("insert header".into());
                    continue;
                }
                b'm' => {
                    outcome.modifications.push("change header".into());
                    continue;
                }
                b'q' => {
                    outcome.modifications.push("quarantine".into());
                    continue;
                }
                b'b' | b'+' | b'-' | b'2' | b'e' => {
                    outcome
                        .modifications
                        .push(format!("action '{}'", code as char));
                    continue;
                }
                other => return Err(format!("unexpected reply '{}'", other as char).into()),
            }
            return Ok(Some(outcome));
        }
    }
}

fn macros(stage: u8, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut data = vec![stage];
    for (name, value) in pairs {
        data.extend_from_slice(name.as_bytes());
        data.push(0);
        data.extend_from_slice(value.as_bytes());
        data.push(0);
    }
    data
}

fn cstr(parts: &[&[u8]]) -> Vec<u8> {
    let mut data = Vec::new();
    for part in parts {
        data.extend_from_slice(part);
        data.push(0);
    }
    data
}

/// Opens a session: connects, negotiates, sends CONNECT and HELO.
async fn open<S: AsyncRead + AsyncWrite>(stream: S, args: &Args) -> Result<Conn<S>, Error> {
    let (r, w) = tokio::io::split(stream);
    let mut conn = Conn {
        reader: BufReader::new(r),
        writer: BufWriter::new(w),
        protocol: 0,
    };
    let mut optneg = Vec::new();
    optneg.extend_from_slice(&6u32.to_be_bytes());
    optneg.extend_from_slice(&MTA_ACTIONS.to_be_bytes());
    optneg.extend_from_slice(&MTA_PROTOCOL.to_be_bytes());
    conn.send(SMFIC_OPTNEG, &optneg).await?;
    let (code, data) = conn.read().await?;
    if code != SMFIC_OPTNEG || data.len() < 12 {
        return Err("the milter did not negotiate".into());
    }
    conn.protocol = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);

    let ip = args.client_ip.to_string();
    conn.send(
        SMFIC_MACRO,
        &macros(
            SMFIC_CONNECT,
            &[
                ("j", &args.mta_name),
                ("{daemon_name}", "smtpd"),
                ("{client_addr}", &ip),
                ("{client_name}", "unknown"),
                ("_", "unknown [client]"),
            ],
        ),
    )
    .await?;
    if conn.protocol & SMFIP_NOCONNECT == 0 {
        let family = if args.client_ip.is_ipv4() { b'4' } else { b'6' };
        let mut data = cstr(&[b"unknown"]);
        data.push(family);
        data.extend_from_slice(&25u16.to_be_bytes());
        data.extend_from_slice(ip.as_bytes());
        data.push(0);
        expect_continue(conn.step(SMFIC_CONNECT, &data, SMFIP_NR_CONN).await?)?;
    }
    if conn.protocol & SMFIP_NOHELO == 0 {
        expect_continue(
            conn.step(SMFIC_HELO, &cstr(&[args.helo.as_bytes()]), SMFIP_NR_HELO)
                .await?,
        )?;
    }
    Ok(conn)
}

fn expect_continue(outcome: Option<Outcome>) -> Result<(), Error> {
    match outcome {
        None => Ok(()),
        Some(o) if o.final_reply == "continue" => Ok(()),
        Some(o) => Err(format!(
            "the milter answered {} before end of message",
            o.final_reply
        )
        .into()),
    }
}

/// One transaction; returns the end-of-message outcome.
async fn transaction<S: AsyncRead + AsyncWrite>(
    conn: &mut Conn<S>,
    args: &Args,
    message: &Message,
    queue_id: &str,
) -> Result<Outcome, Error> {
    let mail = format!("<{}>", args.mail_from);
    conn.send(
        SMFIC_MACRO,
        &macros(
            SMFIC_MAIL,
            &[("i", queue_id), ("{mail_addr}", &args.mail_from)],
        ),
    )
    .await?;
    if conn.protocol & SMFIP_NOMAIL == 0 {
        if let Some(o) = conn
            .step(SMFIC_MAIL, &cstr(&[mail.as_bytes()]), SMFIP_NR_MAIL)
            .await?
        {
            if o.final_reply != "continue" {
                return Ok(o);
            }
        }
    }
    let rcpt = format!("<{}>", args.rcpt);
    if conn.protocol & SMFIP_NORCPT == 0 {
        conn.send(
            SMFIC_MACRO,
            &macros(SMFIC_RCPT, &[("{rcpt_addr}", &args.rcpt)]),
        )
        .await?;
        if let Some(o) = conn
            .step(SMFIC_RCPT, &cstr(&[rcpt.as_bytes()]), SMFIP_NR_RCPT)
            .await?
        {
            if o.final_reply != "continue" {
                return Ok(o);
            }
        }
    }
    if conn.protocol & SMFIP_NODATA == 0 {
        expect_continue(conn.step(SMFIC_DATA, &[], SMFIP_NR_DATA).await?)?;
    }
    if conn.protocol & SMFIP_NOHDRS == 0 {
        let lead = conn.protocol & SMFIP_HDR_LEADSPC != 0;
        for (name, value) in &message.headers {
            let value = if lead {
                value.as_str()
            } else {
                value.trim_start_matches([' ', '\t'])
            };
            if let Some(o) = conn
                .step(
                    SMFIC_HEADER,
                    &cstr(&[name.as_bytes(), value.as_bytes()]),
                    SMFIP_NR_HDR,
                )
                .await?
            {
                if o.final_reply != "continue" {
                    return Ok(o);
                }
            }
        }
    }
    if conn.protocol & SMFIP_NOEOH == 0 {
        expect_continue(conn.step(SMFIC_EOH, &[], SMFIP_NR_EOH).await?)?;
    }
    if conn.protocol & SMFIP_NOBODY == 0 {
        for chunk in message.body.chunks(65535) {
            if let Some(o) = conn.step(SMFIC_BODY, chunk, SMFIP_NR_BODY).await? {
                if o.final_reply != "continue" && o.final_reply != "skip" {
                    return Ok(o);
                }
                if o.final_reply == "skip" {
                    break;
                }
            }
        }
    }
    conn.send(SMFIC_MACRO, &macros(SMFIC_BODYEOB, &[("i", queue_id)]))
        .await?;
    conn.step(SMFIC_BODYEOB, &[], 0)
        .await?
        .ok_or_else(|| "no reply to end of message".into())
}

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    replies: BTreeMap<String, u64>,
    errors: Vec<String>,
}

async fn worker(id: usize, args: Arc<Args>, message: Arc<Message>) -> Stats {
    let mut stats = Stats::default();
    let mut sent = 0;
    while sent < args.messages {
        let batch = if args.session_per_message {
            1
        } else {
            args.messages - sent
        };
        if let Err(e) = session(id, sent, batch, &args, &message, &mut stats).await {
            stats.errors.push(e.to_string());
            return stats;
        }
        sent += batch;
    }
    stats
}

async fn session(
    id: usize,
    first: usize,
    count: usize,
    args: &Args,
    message: &Message,
    stats: &mut Stats,
) -> Result<(), Error> {
    if let Some(addr) = args.milter.strip_prefix("inet:") {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        run_session(
            open(stream, args).await?,
            id,
            first,
            count,
            args,
            message,
            stats,
        )
        .await
    } else if let Some(path) = args.milter.strip_prefix("unix:") {
        let stream = tokio::net::UnixStream::connect(path).await?;
        run_session(
            open(stream, args).await?,
            id,
            first,
            count,
            args,
            message,
            stats,
        )
        .await
    } else {
        Err("--milter must be inet:HOST:PORT or unix:PATH".into())
    }
}

async fn run_session<S: AsyncRead + AsyncWrite>(
    mut conn: Conn<S>,
    id: usize,
    first: usize,
    count: usize,
    args: &Args,
    message: &Message,
    stats: &mut Stats,
) -> Result<(), Error> {
    for n in first..first + count {
        let queue_id = format!("L{id:04X}{n:06X}");
        let start = Instant::now();
        let outcome = transaction(&mut conn, args, message, &queue_id).await?;
        stats.latencies.push(start.elapsed());
        let mut key = outcome.final_reply.clone();
        if !outcome.modifications.is_empty() {
            key.push_str(&format!(" + {}", outcome.modifications.join(", ")));
        }
        *stats.replies.entry(key).or_default() += 1;
        // Postfix aborts the milter transaction before the next one.
        conn.send(SMFIC_ABORT, &[]).await?;
    }
    conn.send(SMFIC_QUIT, &[]).await?;
    conn.writer.flush().await?;
    Ok(())
}

/// CPU time (user + system) of this process, from /proc/self/stat.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 per second on Linux.
    Some(Duration::from_millis((utime + stime) * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let args = Args::parse();
    let raw = match std::fs::read(&args.eml) {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("milter-load: {}: {e}", args.eml.display());
            return ExitCode::from(2);
        }
    };
    let message = match parse_message(&raw) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("milter-load: {}: {e}", args.eml.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("milter-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let args = Arc::new(args);
    let cpu_before = cpu_time();
    let start = Instant::now();
    let mut all = Stats::default();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..args.connections)
            .map(|id| tokio::spawn(worker(id, args.clone(), message.clone())))
            .collect();
        for task in tasks {
            match task.await {
                Ok(stats) => {
                    all.latencies.extend(stats.latencies);
                    for (k, v) in stats.replies {
                        *all.replies.entry(k).or_default() += v;
                    }
                    all.errors.extend(stats.errors);
                }
                Err(e) => all.errors.push(e.to_string()),
            }
        }
    });
    let wall = start.elapsed();
    let cpu = cpu_before.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    all.latencies.sort();
    let done = all.latencies.len();
    let rate = done as f64 / wall.as_secs_f64();
    let (p50, p99, max) = (
        percentile(&all.latencies, 0.5),
        percentile(&all.latencies, 0.99),
        all.latencies.last().copied().unwrap_or_default(),
    );
    let cpu_share = cpu.map(|c| c.as_secs_f64() / wall.as_secs_f64() * 100.0);
    if args.json {
        let replies: serde_json::Map<String, serde_json::Value> = all
            .replies
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .collect();
        let summary = serde_json::json!({
            "milter": args.milter,
            "connections": args.connections,
            "messages_per_connection": args.messages,
            "session_per_message": args.session_per_message,
            "messages": done,
            "seconds": wall.as_secs_f64(),
            "messages_per_second": rate,
            "latency_us": {"p50": p50.as_micros() as u64, "p99": p99.as_micros() as u64, "max": max.as_micros() as u64},
            "replies": replies,
            "generator_cpu_percent_of_one_core": cpu_share,
            "errors": all.errors,
        });
        println!("{summary}");
    } else {
        println!(
            "milter {} — {} connections × {} messages{}",
            args.milter,
            args.connections,
            args.messages,
            if args.session_per_message {
                " (one session per message)"
            } else {
                ""
            }
        );
        println!(
            "  {done} messages in {:.2} s: {rate:.0} messages/s",
            wall.as_secs_f64()
        );
        println!("  latency p50 {p50:.2?}  p99 {p99:.2?}  max {max:.2?}");
        for (reply, count) in &all.replies {
            println!("  {count:>8} × {reply}");
        }
        if let Some(share) = cpu_share {
            println!("  generator CPU: {share:.0}% of one core");
        }
        for error in all.errors.iter().take(5) {
            println!("  error: {error}");
        }
    }
    if all.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
