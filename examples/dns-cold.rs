//! dns-cold: the DNS cold path of the verifier under load (issue 5). A
//! zone on test-dns answers every name it holds after a fixed delay (a
//! slow authoritative server); a verifier with an empty cache then checks
//! one message alone (the critical path: the lookups that must happen one
//! after the other), and a second verifier with an empty cache checks N
//! copies of it at once. With identical questions coalesced and each
//! message's independent lookups in parallel, the N copies take about one
//! critical path, and the server sees about as many questions as for one.
//!
//! ```text
//! cargo run --release --ignore-rust-version --example dns-cold -- \
//!     --zone crates/dmarc-verifier/benches/data/bench.zone \
//!     --eml crates/dmarc-verifier/benches/data/rsa-4k.eml --messages 1000 --delay-ms 50
//! ```
//!
//! It prints, for one message and for N at once: the wall time, the
//! latency of the messages (p50, p99, max), the questions the server
//! received, the verdicts, and the growth of the process's peak resident
//! memory (VmHWM) while the N were in flight, divided by N. Then the same N
//! again with the cache warm (no DNS: CPU only). `--json` prints one JSON
//! object instead.
//!
//! Everything stays on 127.0.0.1. Exit status: 0 when every verdict is
//! DMARC pass, 1 otherwise or when the server cannot start, 2 for bad
//! arguments or unreadable files.

use clap::Parser;
use dmarc_verifier::{
    dns::zone::Zone, DnsConfig, Envelope, Nameservers, Verdict, Verifier, VerifierConfig,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};
use test_dns::{Fault, TestDns};

/// Measure the verifier's DNS cold path with many messages in flight.
#[derive(Debug, Parser)]
#[command(name = "dns-cold")]
struct Args {
    /// The zone served (RFC 1035 master file).
    #[arg(long, default_value = "crates/dmarc-verifier/benches/data/bench.zone")]
    zone: PathBuf,
    /// The message verified.
    #[arg(long, default_value = "crates/dmarc-verifier/benches/data/rsa-4k.eml")]
    eml: PathBuf,
    /// Messages in flight at once.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Delay of every answer for a name of the zone, in milliseconds.
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// SMTP client address.
    #[arg(long, default_value = "192.0.2.10")]
    client_ip: std::net::IpAddr,
    /// HELO name.
    #[arg(long, default_value = "mail.example.com")]
    helo: String,
    /// MAIL FROM address.
    #[arg(long, default_value = "news@example.com")]
    mail_from: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// What one batch of concurrent verifications measured.
struct Batch {
    wall: Duration,
    latencies: Vec<Duration>,
    questions: usize,
    /// DMARC result → count.
    results: BTreeMap<String, usize>,
    /// Growth of VmHWM during the batch, in KiB.
    hwm_growth_kib: Option<u64>,
}

impl Batch {
    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }

    fn json(&self, messages: usize) -> serde_json::Value {
        serde_json::json!({
            "messages": messages,
            "wall_ms": ms(self.wall),
            "latency_ms": {
                "p50": ms(self.percentile(0.5)),
                "p99": ms(self.percentile(0.99)),
                "max": ms(self.latencies.last().copied().unwrap_or_default()),
            },
            "dns_questions": self.questions,
            "dmarc": self.results,
            "hwm_growth_kib": self.hwm_growth_kib,
        })
    }

    fn print(&self, label: &str, messages: usize) {
        println!(
            "{label}: {messages} message(s) in {:.1} ms; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} DNS question(s); dmarc {:?}",
            ms(self.wall),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.questions,
            self.results,
        );
        if let Some(kib) = self.hwm_growth_kib {
            println!(
                "  peak RSS growth {kib} KiB: {:.1} KiB per message in flight",
                kib as f64 / messages as f64
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// VmHWM of this process in KiB, from /proc/self/status.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn verifier(dns: &TestDns) -> Result<Arc<Verifier>, dmarc_verifier::Error> {
    let config = VerifierConfig {
        authserv_id: "mx.bench".into(),
        pct_draw: Some(0),
        dns: DnsConfig {
            nameservers: Nameservers::Explicit(vec![dns.addr()]),
            ..DnsConfig::default()
        },
        ..VerifierConfig::default()
    };
    Verifier::new(config).map(Arc::new)
}

/// Verifies `n` copies of the message at once and measures.
async fn batch(
    dns: &TestDns,
    verifier: &Arc<Verifier>,
    envelope: &Arc<Envelope>,
    message: &Arc<Vec<u8>>,
    n: usize,
) -> Batch {
    dns.clear_queries();
    let hwm_before = vm_hwm_kib();
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (verifier, envelope, message) = (
                Arc::clone(verifier),
                Arc::clone(envelope),
                Arc::clone(message),
            );
            tokio::spawn(async move {
                let begun = Instant::now();
                let verdict: Verdict = verifier.verify(&envelope, &message).await;
                (begun.elapsed(), verdict.dmarc.as_str().to_string())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    let mut results = BTreeMap::new();
    for task in tasks {
        match task.await {
            Ok((latency, dmarc)) => {
                latencies.push(latency);
                *results.entry(dmarc).or_default() += 1;
            }
            Err(e) => *results.entry(format!("task failed: {e}")).or_default() += 1,
        }
    }
    let wall = start.elapsed();
    latencies.sort();
    Batch {
        wall,
        latencies,
        questions: dns.queries().len(),
        results,
        hwm_growth_kib: hwm_before
            .zip(vm_hwm_kib())
            .map(|(before, after)| after.saturating_sub(before)),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let zone = match Zone::from_file(&args.zone) {
        Ok(zone) => zone,
        Err(e) => {
            eprintln!("dns-cold: {e}");
            return ExitCode::from(2);
        }
    };
    let message = match std::fs::read(&args.eml) {
        Ok(raw) => Arc::new(raw),
        Err(e) => {
            eprintln!("dns-cold: {}: {e}", args.eml.display());
            return ExitCode::from(2);
        }
    };
    let names: BTreeSet<String> = zone.records().map(|r| r.name.clone()).collect();
    let envelope = Arc::new(Envelope::new(
        args.client_ip,
        args.helo.as_str(),
        args.mail_from.as_str(),
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dns-cold: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let dns = match TestDns::start_with_zone(zone).await {
            Ok(dns) => dns,
            Err(e) => {
                eprintln!("dns-cold: {e}");
                return ExitCode::FAILURE;
            }
        };
        let delay = Duration::from_millis(args.delay_ms);
        for name in &names {
            dns.set_fault(name, None, Fault::Delay(delay));
        }
        let (one_verifier, many_verifier) = match (verifier(&dns), verifier(&dns)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("dns-cold: {e}");
                return ExitCode::FAILURE;
            }
        };
        let one = batch(&dns, &one_verifier, &envelope, &message, 1).await;
        let many = batch(&dns, &many_verifier, &envelope, &message, args.messages).await;
        let warm = batch(&dns, &many_verifier, &envelope, &message, args.messages).await;
        let ratio = many.wall.as_secs_f64() / one.wall.as_secs_f64();
        // The CPU work of N verifications is there cold or warm: what the
        // cold run adds over the warm one is waiting for DNS, to compare
        // with one critical path.
        let dns_wait = many.wall.saturating_sub(warm.wall);
        let dns_wait_paths = dns_wait.as_secs_f64() / one.wall.as_secs_f64();
        if args.json {
            let summary = serde_json::json!({
                "zone": args.zone,
                "eml": args.eml,
                "delay_ms": args.delay_ms,
                "cold_one": one.json(1),
                "cold_many": many.json(args.messages),
                "warm_many": warm.json(args.messages),
                "cold_many_wall_over_cold_one": ratio,
                "dns_wait_ms": ms(dns_wait),
                "dns_wait_over_cold_one": dns_wait_paths,
            });
            println!("{summary}");
        } else {
            println!(
                "DNS cold path: every answer for a name of {} delayed {} ms",
                args.zone.display(),
                args.delay_ms
            );
            one.print("cold, alone", 1);
            many.print("cold, at once", args.messages);
            warm.print("warm, at once", args.messages);
            println!(
                "{} cold messages at once took {ratio:.2}× one cold message; without the CPU time of the warm run, {:.1} ms of DNS wait = {dns_wait_paths:.2} critical paths",
                args.messages,
                ms(dns_wait)
            );
        }
        let all_pass = [&one, &many, &warm]
            .iter()
            .all(|b| b.results.keys().all(|k| k == "pass"));
        if all_pass {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}
