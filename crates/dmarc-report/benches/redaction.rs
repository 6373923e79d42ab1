//! Redaction throughput (issue 16, BENCHMARKS.md): the failure-report
//! builder on the header sections it is given (at most 64 KiB), ordinary
//! and hostile.
//!
//! ```sh
//! cargo bench --ignore-rust-version -p dmarc-report --bench redaction
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dmarc_report::redact::{Mode, Redactor};

/// An ordinary header section (about 2 KiB, a dozen addresses).
fn ordinary() -> Vec<u8> {
    let mut text = String::new();
    for hop in 0..6 {
        text.push_str(&format!(
            "Received: from mail{hop}.example.com (mail{hop}.example.com [192.0.2.{hop}])\r\n\tby mx.example.net (Postfix) with ESMTPS id 4XyZ{hop}\r\n\tfor <reader@example.net>; Mon, 10 Jun 2024 06:13:24 +0000\r\n"
        ));
    }
    text.push_str("From: \"Example News\" <news@example.com>\r\nTo: reader@example.net, \"Other Reader\" <other@example.org>\r\nReply-To: list-bounces+reader=example.net@lists.example.com\r\nSubject: June edition\r\n");
    text.into_bytes()
}

/// 64 KiB of distinct addresses: the worst the cap lets through.
fn hostile() -> Vec<u8> {
    let mut text = Vec::new();
    let mut n = 0;
    while text.len() < 64 * 1024 {
        text.extend_from_slice(
            format!("X-A: \"u {n}\"@example.net (c{n}) v{n}+t={n}@x.example\r\n").as_bytes(),
        );
        n += 1;
    }
    text.truncate(64 * 1024);
    text
}

fn redaction(c: &mut Criterion) {
    let mut group = c.benchmark_group("redaction");
    for (name, input) in [("ordinary-2k", ordinary()), ("hostile-64k", hostile())] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| Redactor::new(true).redact(input, Mode::Text))
        });
    }
    group.finish();
}

criterion_group!(benches, redaction);
criterion_main!(benches);
