//! Measures the report store and the report job (issue 16, BENCHMARKS.md):
//!
//! ```sh
//! # Store bytes per evaluation: normal mail, and hostile records at every cap.
//! cargo run --ignore-rust-version --release -p dmarc-report --example report-load -- bytes 20000
//! # Fill a store with N records of one domain (hostile: distinct IPs, one
//! # row each, every field at its cap; or `normal`: sixteen clients), then
//! # make its report in a process of its own and print its peak memory.
//! cargo run --ignore-rust-version --release -p dmarc-report --example report-load -- fill /tmp/r.db 100000 [normal]
//! cargo run --ignore-rust-version --release -p dmarc-report --example report-load -- report /tmp/r.db
//! ```

use dmarc_report::{
    aggregate::{ReportFormat, ReporterInfo},
    model::{
        ActionDisposition, AlignedWord, AlignmentWord, DiscoveryWord, DkimAuth, DkimWord,
        DmarcWord, EvaluationRecord, OverrideWord, PolicyOverride, PolicyWord, PublishedPolicy,
        ReportDestination, SpfAuth, SpfScopeWord, SpfWord,
    },
    run::{queue_aggregate_reports, AggregateSettings},
    store::{SqliteStore, Store},
};
use std::{net::IpAddr, path::Path, time::Instant};

const DAY: i64 = 1_721_001_600;

fn policy(
    domain: &str,
    rua: Vec<ReportDestination>,
    ruf: Vec<ReportDestination>,
) -> PublishedPolicy {
    PublishedPolicy {
        domain: domain.to_string(),
        discovery_method: DiscoveryWord::Psl,
        p: PolicyWord::Reject,
        sp: Some(PolicyWord::Quarantine),
        np: None,
        adkim: AlignmentWord::Relaxed,
        aspf: AlignmentWord::Relaxed,
        pct: 100,
        fo: "1".to_string(),
        testing: false,
        psd: false,
        rua,
        ruf,
    }
}

/// An ordinary message: the demo newsletter, passing.
fn normal(n: u32) -> EvaluationRecord {
    EvaluationRecord {
        time: DAY + i64::from(n % 86_000),
        source_ip: IpAddr::from([192, 0, 2, (n % 16) as u8 + 10]),
        header_from: "example.com".to_string(),
        envelope_from: Some("bounce.example.net".to_string()),
        envelope_to: Some("example.net".to_string()),
        policy: Some(policy(
            "example.com",
            vec![ReportDestination {
                uri: "mailto:dmarc-reports@example.com".to_string(),
                max_size: None,
            }],
            Vec::new(),
        )),
        dmarc: DmarcWord::Pass,
        disposition: ActionDisposition::Pass,
        dkim_aligned: AlignedWord::Pass,
        spf_aligned: AlignedWord::Fail,
        reasons: Vec::new(),
        spf: Some(SpfAuth {
            domain: "bounce.example.net".to_string(),
            scope: SpfScopeWord::MailFrom,
            result: SpfWord::Pass,
            human_result: None,
        }),
        dkim: vec![DkimAuth {
            domain: "example.com".to_string(),
            selector: "news2048".to_string(),
            result: DkimWord::Pass,
            human_result: None,
        }],
    }
}

/// A hostile message at every cap the milter keeps: 10 rua and 5 ruf of
/// the longest usable addresses, 5 signatures with 253-octet domains and
/// selectors, reasons of 256 characters; `distinct_policy` makes the
/// policy new for every message (an attacker changing its record).
fn fat(n: u32, distinct_policy: bool) -> EvaluationRecord {
    let label = |c: char| std::iter::repeat_n(c, 63).collect::<String>();
    let long_domain = format!(
        "{}.{}.{}.{}x.example",
        label('a'),
        label('b'),
        label('c'),
        &label('d')[..50]
    );
    let address = |i: usize| {
        let local: String = std::iter::repeat_n('l', 50).collect();
        let tag = if distinct_policy {
            format!("{n}")
        } else {
            String::new()
        };
        ReportDestination {
            uri: format!("mailto:{local}{i}{tag}@{}", &long_domain[..180]),
            max_size: Some(10 << 20),
        }
    };
    let text: String = std::iter::repeat_n('r', 256).collect();
    EvaluationRecord {
        time: DAY + i64::from(n % 86_000),
        source_ip: IpAddr::from([198, 51, 100, (n % 250) as u8]),
        header_from: "evil.example".to_string(),
        envelope_from: Some(long_domain.clone()),
        envelope_to: Some("example.net".to_string()),
        policy: Some(policy(
            "evil.example",
            (0..10).map(address).collect(),
            (10..15).map(address).collect(),
        )),
        dmarc: DmarcWord::Fail,
        disposition: ActionDisposition::None,
        dkim_aligned: AlignedWord::Fail,
        spf_aligned: AlignedWord::Fail,
        reasons: vec![PolicyOverride {
            kind: OverrideWord::LocalPolicy,
            comment: Some(text.clone()),
        }],
        spf: Some(SpfAuth {
            domain: long_domain.clone(),
            scope: SpfScopeWord::MailFrom,
            result: SpfWord::Fail,
            human_result: Some(text.clone()),
        }),
        dkim: (0..5)
            .map(|i| DkimAuth {
                domain: format!("{}{i}.example", &long_domain[..200]),
                selector: format!(
                    "{}.{}.{}.{}",
                    label('s'),
                    label('t'),
                    label('u'),
                    &label('v')[..60]
                ),
                result: DkimWord::Fail,
                human_result: Some(text.clone()),
            })
            .collect(),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Bytes the store grows by per record: the size after `n` more records
/// (WAL checkpointed into the file) minus the size before, over `n`.
fn bytes_per_record(make: impl Fn(u32) -> EvaluationRecord, n: u32) -> f64 {
    let dir = std::env::temp_dir().join(format!("report-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("r.db");
    let checkpoint = || {
        rusqlite::Connection::open(&path)
            .and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
            .expect("checkpoint");
    };
    let mut store = SqliteStore::open(&path).expect("store");
    let warm: Vec<EvaluationRecord> = (0..1_000).map(&make).collect();
    store.insert(&warm).expect("insert");
    checkpoint();
    let before = file_size(&path);
    for chunk in (1_000..1_000 + n).collect::<Vec<_>>().chunks(1_000) {
        let records: Vec<EvaluationRecord> = chunk.iter().map(|&i| make(i)).collect();
        store.insert(&records).expect("insert");
    }
    checkpoint();
    let after = file_size(&path);
    let _ = std::fs::remove_dir_all(&dir);
    (after.saturating_sub(before)) as f64 / f64::from(n)
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("bytes") => {
            let n: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
            println!(
                "normal mail:                    {:.0} bytes per evaluation",
                bytes_per_record(normal, n)
            );
            println!(
                "hostile, one policy:            {:.0} bytes per evaluation",
                bytes_per_record(|i| fat(i, false), n)
            );
            println!(
                "hostile, a new policy each:     {:.0} bytes per evaluation",
                bytes_per_record(|i| fat(i, true), n)
            );
            let record = fat(0, false).normalized();
            println!(
                "hostile record in memory (recorder queue): {} bytes",
                record.memory_size()
            );
            println!(
                "normal record in memory (recorder queue):  {} bytes",
                normal(0).normalized().memory_size()
            );
        }
        Some("fill") => {
            let path = Path::new(args.get(2).expect("a store path"));
            let n: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100_000);
            let normal_mail = args.get(4).is_some_and(|kind| kind == "normal");
            let mut store = SqliteStore::open(path).expect("store");
            for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
                let records: Vec<EvaluationRecord> = chunk
                    .iter()
                    .map(|&i| {
                        if normal_mail {
                            // Sixteen clients: sixteen rows.
                            EvaluationRecord {
                                time: DAY + i64::from(i % 86_000),
                                ..normal(i)
                            }
                        } else {
                            // One row per record: every client distinct.
                            EvaluationRecord {
                                source_ip: IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()),
                                ..fat(i, false)
                            }
                        }
                    })
                    .collect();
                store.insert(&records).expect("insert");
            }
            println!(
                "{n} records in {} ({} KiB)",
                path.display(),
                file_size(path) / 1024
            );
        }
        Some("report") => {
            let path = Path::new(args.get(2).expect("a store path"));
            let mut store = SqliteStore::open(path).expect("store");
            let before = peak_kib();
            let started = Instant::now();
            let reporter = ReporterInfo::new("Load", "mx.example.net", "dmarc@mx.example.net");
            let own = Vec::new();
            let group = |domain: &str| domain.to_string();
            let settings = AggregateSettings {
                reporter: &reporter,
                format: ReportFormat::Rfc9990,
                sender: "dmarc@mx.example.net",
                excluded: &|_| false,
                own_addresses: &own,
                max_rua: 10,
                max_per_destination_domain: 1_000,
                destination_group: &group,
            };
            let summary =
                queue_aggregate_reports(&mut store, &settings, DAY, DAY + 86_400, DAY + 86_400)
                    .expect("report");
            println!(
                "report job: {summary:?} in {:.1?}; peak RSS {} KiB before, {} KiB after",
                started.elapsed(),
                before,
                peak_kib()
            );
        }
        _ => eprintln!("usage: report-load bytes [N] | fill PATH [N] [normal] | report PATH"),
    }
}
