//! zone-dns: serve an RFC 1035 zone file on 127.0.0.1 (UDP and TCP, one
//! port the kernel picks) with test-dns, until the process is stopped.
//!
//! ```text
//! cargo run --release --ignore-rust-version --example zone-dns -- \
//!     crates/dmarc-verifier/benches/data/bench.zone --port-file /tmp/zone-dns.port
//! ```
//!
//! It prints `listening on 127.0.0.1:PORT` on stdout once the server
//! answers, and writes `PORT` (and a newline) to `--port-file` if given, so a
//! script can wait for that file. `--delay MS` answers every name that owns
//! a record in the zone after that many milliseconds (a slow authoritative
//! server; names outside the zone answer at once). The benchmark scripts in
//! `bench/` point the milter and a local unbound at it.
//!
//! It runs until SIGTERM or SIGINT (Ctrl-C), which end it the default way:
//! there is nothing to flush, and the kernel frees the port.
//!
//! Exit status: 1 when the server cannot start, 2 for a zone file that does
//! not parse or a port file that cannot be written, with one line on
//! stderr: `zone-dns: <what is wrong>`.

use clap::Parser;
use dmarc_verifier::dns::zone::Zone;
use std::{collections::BTreeSet, path::PathBuf, process::ExitCode, time::Duration};
use test_dns::{Fault, TestDns};

/// Serve a zone file on 127.0.0.1 (UDP and TCP) until stopped.
#[derive(Debug, Parser)]
#[command(name = "zone-dns")]
struct Args {
    /// The zone file (RFC 1035 master file; the origin is the root unless
    /// it sets `$ORIGIN`).
    zone: PathBuf,
    /// Write the port the server listens on to this file once it is ready.
    #[arg(long, value_name = "FILE")]
    port_file: Option<PathBuf>,
    /// Answer every name of the zone after this many milliseconds.
    #[arg(long, value_name = "MS")]
    delay: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let zone = match Zone::from_file(&args.zone) {
        Ok(zone) => zone,
        Err(e) => {
            eprintln!("zone-dns: {e}");
            return ExitCode::from(2);
        }
    };
    // The owner names, collected before the server takes the zone.
    let names: BTreeSet<String> = zone.records().map(|r| r.name.clone()).collect();
    // One thread is plenty: test-dns answers on a thread of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zone-dns: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let dns = match TestDns::start_with_zone(zone).await {
            Ok(dns) => dns,
            Err(e) => {
                eprintln!("zone-dns: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(ms) = args.delay {
            for name in &names {
                dns.set_fault(name, None, Fault::Delay(Duration::from_millis(ms)));
            }
        }
        let addr = dns.addr();
        println!("listening on {addr}");
        if let Some(path) = &args.port_file {
            // Written whole to a temporary name, then renamed: a script
            // waiting for the file never reads half of it.
            let tmp = path.with_extension("tmp");
            let written = std::fs::write(&tmp, format!("{}\n", addr.port()))
                .and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = written {
                eprintln!("zone-dns: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
        // Serve until a signal ends the process.
        std::future::pending::<()>().await;
        drop(dns);
        ExitCode::SUCCESS
    })
}
