//! Library benchmarks (issue 5): the whole verification of signed messages
//! with a warm DNS cache, the parsers and the header formatter, and in the
//! same run the crypto floor (one RSA-2048 verify plus SHA-256 of the
//! body), so the ratio can be read off.
//!
//! Run: `cargo bench --ignore-rust-version -p dmarc-verifier --bench verify`
//! The last lines print each whole-verification time as a multiple of the
//! floor measured in the same run, and what a 2-instance ARC chain adds.
//!
//! `rsa-4k-arc2` is `rsa-4k.eml` sealed twice (RSA-2048 keys made at
//! start, by our `ArcSealer`): its ARC check costs two seal verifies and
//! the newest AMS (mail-auth), the older AMS and its body hash (ours), on
//! top of what `rsa-4k` costs. A message without ARC fields pays one pass
//! over its header names.

use aws_lc_rs::{
    digest::{digest, SHA256},
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeyPair, KeySize},
    signature::{KeyPair as _, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256},
};
use criterion::{criterion_group, criterion_main, Criterion};
use dmarc_verifier::{
    arc::{ArcResult, ArcSealer},
    auth_results::{self, AuthResults},
    message::author_domains,
    record::DmarcRecord,
    DkimCheck, DkimResult, DnsConfig, Envelope, Nameservers, SpfCheck, SpfResult, SpfScope,
    Verifier, VerifierConfig,
};
use std::{
    hint::black_box,
    path::PathBuf,
    time::{Duration, Instant},
};
use test_dns::TestDns;

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The body of a message (after the first empty line).
fn body(raw: &[u8]) -> &[u8] {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw, |i| &raw[i + 4..])
}

/// A new RSA-2048 sealer for `domain` (selector `arc`) and its key
/// record line for the zone.
fn sealer(domain: &str) -> (ArcSealer, String) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("key");
    let pkcs8 = pair.as_der().expect("PKCS #8");
    let text = b64.encode(pkcs8.as_ref());
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64"))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let spki = pair.public_key().as_der().expect("SPKI");
    let record = format!("v=DKIM1; k=rsa; p={}", b64.encode(spki.as_ref()));
    let strings: Vec<String> = record
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).expect("ascii")))
        .collect();
    (
        ArcSealer::from_pem(domain, "arc", &pem).expect("sealer"),
        format!("arc._domainkey.{domain}. IN TXT {}\n", strings.join(" ")),
    )
}

/// `fields` on top of `message`.
fn sealed(fields: &[(String, String)], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(message);
    out
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    _dns: TestDns,
    verifier: Verifier,
    /// The same, with `trail: false` (as the milter runs it).
    quiet: Verifier,
    envelope: Envelope,
    /// `rsa-4k.eml` with a 2-instance ARC chain.
    arc2: Vec<u8>,
    /// A third sealer, for the sealing bench.
    sealer: ArcSealer,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (list, list_key) = sealer("lists.example.org");
    let (forwarder, forwarder_key) = sealer("forwarder.example.net");
    let (ours, _) = sealer("mx.bench");
    let zone = format!(
        "{}\n{list_key}{forwarder_key}",
        String::from_utf8(data("bench.zone")).expect("zone")
    );
    let dns = runtime.block_on(TestDns::start(&zone)).expect("dns");
    let config = VerifierConfig {
        authserv_id: "mx.bench".into(),
        pct_draw: Some(0),
        dns: DnsConfig {
            nameservers: Nameservers::Explicit(vec![dns.addr()]),
            ..DnsConfig::default()
        },
        ..VerifierConfig::default()
    };
    let quiet = Verifier::new(VerifierConfig {
        trail: false,
        ..config.clone()
    })
    .expect("verifier");
    let verifier = Verifier::new(config).expect("verifier");
    let envelope = Envelope::new(
        "192.0.2.10".parse().expect("ip"),
        "mail.example.com",
        "news@example.com",
    );
    // rsa-4k sealed by the list, then by a forwarder.
    let original = data("rsa-4k.eml");
    let arc2 = runtime.block_on(async {
        let first = verifier.verify(&envelope, &original).await;
        let once = sealed(
            &list
                .seal(&verifier, &original, &first)
                .await
                .expect("seal 1"),
            &original,
        );
        let second = verifier.verify(&envelope, &once).await;
        sealed(
            &forwarder
                .seal(&verifier, &once, &second)
                .await
                .expect("seal 2"),
            &once,
        )
    });
    Setup {
        runtime,
        _dns: dns,
        verifier,
        quiet,
        envelope,
        arc2,
        sealer: ours,
    }
}

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
    let s = setup();
    let messages = [
        ("rsa-4k", data("rsa-4k.eml")),
        ("rsa-4k-arc2", s.arc2.clone()),
        ("rsa-100k", data("rsa-100k.eml")),
        ("ed25519-4k", data("ed25519-4k.eml")),
    ];
    let arc = s
        .runtime
        .block_on(s.verifier.verify(&s.envelope, &s.arc2))
        .arc;
    assert_eq!(
        (arc.result, arc.chain.len(), arc.oldest_pass),
        (ArcResult::Pass, 2, Some(0))
    );
    // Warm the cache and check the fixtures still verify.
    for (name, raw) in &messages {
        let verdict = s.runtime.block_on(s.verifier.verify(&s.envelope, raw));
        assert_eq!(
            verdict.dmarc.as_str(),
            "pass",
            "{name}: {}",
            verdict.authentication_results
        );
        assert_eq!(verdict.dkim[0].result, DkimResult::Pass, "{name}");
        let quiet = s.runtime.block_on(s.quiet.verify(&s.envelope, raw));
        assert_eq!(quiet.dmarc.as_str(), "pass", "{name}");
        assert!(quiet.trail.is_empty());
    }

    let mut group = c.benchmark_group("verify-warm-cache");
    for (name, raw) in &messages {
        group.bench_function(*name, |b| {
            b.iter(|| {
                s.runtime
                    .block_on(s.verifier.verify(&s.envelope, black_box(raw)))
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("verify-warm-cache-no-trail");
    for (name, raw) in &messages {
        group.bench_function(*name, |b| {
            b.iter(|| {
                s.runtime
                    .block_on(s.quiet.verify(&s.envelope, black_box(raw)))
            })
        });
    }
    group.finish();

    // The floor, with the crypto library mail-auth uses (aws-lc): one
    // RSA-2048 verify of a signature over a header-sized input, and SHA-256
    // of each body.
    let key = KeyPair::generate(KeySize::Rsa2048).expect("key");
    let input = [b'h'; 512];
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        &input,
        &mut signature,
    )
    .expect("sign");
    let public = UnparsedPublicKey::new(
        &RSA_PKCS1_2048_8192_SHA256,
        key.public_key().as_ref().to_vec(),
    );
    let mut group = c.benchmark_group("floor");
    group.bench_function("rsa-2048-verify", |b| {
        b.iter(|| public.verify(black_box(&input), black_box(&signature)))
    });
    for (name, raw) in &messages {
        let body = body(raw);
        group.bench_function(format!("sha256-body-{name}"), |b| {
            b.iter(|| digest(&SHA256, black_box(body)))
        });
    }
    group.finish();

    // Our seal (RSA-2048) on rsa-4k-arc2: the chain validated again from
    // the cache, two RSA signatures.
    let verdict = s.runtime.block_on(s.quiet.verify(&s.envelope, &s.arc2));
    c.bench_function("arc-seal-rsa-2048/rsa-4k-arc2", |b| {
        b.iter(|| {
            s.runtime
                .block_on(s.sealer.seal(&s.quiet, black_box(&s.arc2), &verdict))
                .expect("sealed")
        })
    });

    let record = "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; fo=1:d; rua=mailto:dmarc@example.com!10m, mailto:agg@example.net; ruf=mailto:f@example.com; ri=3600";
    c.bench_function("parse-record", |b| {
        b.iter(|| DmarcRecord::parse(black_box(record)))
    });
    let from = b"\"Example News (weekly)\" <news@example.com>".as_slice();
    c.bench_function("from-extraction", |b| {
        b.iter(|| author_domains(black_box(&[from]), 5))
    });
    let spf = SpfCheck {
        result: SpfResult::Pass,
        domain: "bounce.example.net".into(),
        scope: SpfScope::MailFrom,
        reason: None,
        record: None,
    };
    let dkim = DkimCheck {
        result: DkimResult::Pass,
        domain: "example.com".into(),
        selector: "bench2048".into(),
        algorithm: "rsa-sha256".into(),
        key_bits: Some(2048),
        b_prefix: "J/tLyxAx".into(),
        reason: None,
        body_hash: Some(true),
    };
    c.bench_function("format-authentication-results", |b| {
        b.iter(|| {
            let mut ar = AuthResults::new("mx.example.net");
            ar.push(auth_results::spf_resinfo(black_box(&spf)));
            ar.push(auth_results::dkim_resinfo(black_box(&dkim)));
            ar.value()
        })
    });

    // The ratios, measured now in this process (criterion's own estimates
    // are above; these means use a fixed 2 s budget each).
    let budget = Duration::from_secs(2);
    let rsa_verify = mean(budget, || {
        black_box(public.verify(&input, &signature).is_ok());
    });
    println!();
    println!("ratio to the floor (one RSA-2048 verify {rsa_verify:?} + SHA-256 of the body):");
    let mut no_arc = Duration::ZERO;
    for (name, raw) in &messages {
        let body = body(raw);
        let hash = mean(budget, || {
            black_box(digest(&SHA256, body));
        });
        let floor = if name.starts_with("rsa") {
            rsa_verify + hash
        } else {
            hash
        };
        if *name == "rsa-4k-arc2" {
            let whole = mean(budget, || {
                black_box(s.runtime.block_on(s.quiet.verify(&s.envelope, raw)));
            });
            let extra = whole.saturating_sub(no_arc);
            println!(
                "  {:<20} whole {whole:>10.1?}  the 2-instance chain adds {extra:.1?} = {:.1} RSA-2048 verifies (no trail)",
                name,
                extra.as_secs_f64() / rsa_verify.as_secs_f64()
            );
            continue;
        }
        for (label, verifier) in [("", &s.verifier), (" no trail", &s.quiet)] {
            let whole = mean(budget, || {
                black_box(s.runtime.block_on(verifier.verify(&s.envelope, raw)));
            });
            if *name == "rsa-4k" && !label.is_empty() {
                no_arc = whole;
            }
            println!(
                "  {:<20} whole {whole:>10.1?}  floor {floor:>10.1?}  ratio {:.2}{}",
                format!("{name}{label}"),
                whole.as_secs_f64() / floor.as_secs_f64(),
                if name.starts_with("rsa") {
                    ""
                } else {
                    "  (floor: body hash only; Ed25519 verify not counted)"
                }
            );
        }
    }
}

criterion_group! {
    name = verify;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(verify);
