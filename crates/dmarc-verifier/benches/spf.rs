//! SPF benchmarks (issue 12): our engine (`dmarc_verifier::spf`) and
//! mail-auth 0.15.1's `check_host`, on the same DNS answers from a warm
//! in-memory cache, so that the figures are CPU only.
//!
//! Two policies, from a synthetic zone (`benches/data/spf.zone`):
//! - `layered`: `ip4`, `ip6`, `a`, `mx` (two exchanges), `include:` two
//!   levels deep, then `redirect=`; the client passes in the redirect
//!   target, after every other term was evaluated;
//! - `esp`: the common ESP pattern, `include:` of an
//!   `spf.protection.outlook.com`-shaped record (with its own include),
//!   then of an `_spf.google.com`-shaped chain (three netblock records);
//!   the client is in the last netblock record.
//!
//! Both engines get their answers from a map behind a read lock: ours
//! through `SpfLookup` (answers as `Arc` slices, the shape of the shared
//! cache), mail-auth's through its `DnsCache` (parsed records, which it
//! does not parse again). Each runs inside `block_on` of a current-thread
//! Tokio runtime, as in the milter.
//!
//! Run: `cargo bench --ignore-rust-version -p dmarc-verifier --bench spf`
//! The last lines print both means, measured again in this process, and
//! their ratio. `bench/callgrind-spf.sh` counts instructions per check.

mod spf_common;

use criterion::{criterion_group, criterion_main, Criterion};
use spf_common::{scenarios, Setup};
use std::{
    hint::black_box,
    time::{Duration, Instant},
};

/// Mean time of `f` over enough iterations to take about `budget`.
fn mean(budget: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget || n < 10 {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn benches(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("spf-warm-cache");
    for scenario in &scenarios() {
        group.bench_function(format!("ours/{}", scenario.name), |b| {
            b.iter(|| setup.ours(black_box(scenario)))
        });
        group.bench_function(format!("mail-auth/{}", scenario.name), |b| {
            b.iter(|| setup.mail_auth(black_box(scenario)))
        });
    }
    group.finish();

    // Both again in this process, 2 s each, and the ratio.
    let budget = Duration::from_secs(2);
    println!();
    println!("SPF check_host, warm cache (mean of {budget:?} each):");
    for scenario in &scenarios() {
        let ours = mean(budget, || {
            black_box(setup.ours(scenario));
        });
        let theirs = mean(budget, || {
            black_box(setup.mail_auth(scenario));
        });
        println!(
            "  {:<8} ours {ours:>9.2?}  mail-auth {theirs:>9.2?}  ours/mail-auth {:.2}",
            scenario.name,
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
}

criterion_group! {
    name = spf;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(spf);
