//! Shared set-up of the fuzz targets that need DNS or a running milter.
//!
//! Each is built once per fuzzing process, lazily, in a global with its own
//! Tokio runtime: the test DNS server (`test-dns`, 127.0.0.1 only) answering
//! from `crates/dmarc-verifier/tests/data/signed.zone` plus the SPF and
//! DMARC records of [`EXTRA_ZONE`], a verifier asking only it, and (for the
//! milter target) the milter started in-process with `dmarc_milter::run`
//! on 127.0.0.1:0. Nothing leaves the machine.
//!
//! libfuzzer-sys installs a panic hook that aborts the process, so a panic
//! in any thread (a milter session task included, which Tokio would
//! otherwise swallow) is reported as a crash with its input.

use dmarc_milter::{reload_channel, Config, MilterListener, Reloader};
use dmarc_verifier::{DnsConfig, Envelope, Nameservers, Verifier, VerifierConfig};
use std::{path::PathBuf, sync::OnceLock, time::Duration};
use test_dns::TestDns;
use tokio::runtime::Runtime;

/// The repository root (this crate lives in `fuzz/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// SPF and DMARC records added to the DKIM keys of `signed.zone`, so that
/// every branch of discovery and policy can be reached: reject, quarantine
/// with `pct`, `sp`/`np`, an organizational-domain fallback, a broken
/// record, `rua` only, CNAMEs and an SPF record with `include`, `a`, `mx`,
/// `exists` and macros.
pub const EXTRA_ZONE: &str = r#"
example.com.              IN TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all"
_dmarc.example.com.       IN TXT "v=DMARC1; p=reject; sp=quarantine; np=reject; pct=50; rua=mailto:d@example.com; adkim=s; aspf=r; fo=1:d:s; ri=3600"
mail.example.com.         IN A 192.0.2.10
example.com.              IN MX 10 mail.example.com.
sub.example.com.          IN TXT "v=spf1 a mx exists:%{i}.%{l}._spf.example.com ~all"
_spf.example.net.         IN TXT "v=spf1 ip6:2001:db8::/32 ?all"
example.net.              IN TXT "v=spf1 redirect=example.com"
_dmarc.example.net.       IN TXT "v=DMARC1; p=quarantine; t=y; sp=none"
example.org.              IN SOA ns1.example.org. hostmaster.example.org. 1 3600 900 604800 300
example.org.              IN TXT "v=spf1 -all"
_dmarc.example.org.       IN TXT "v=DMARC1; p=bogus; rua=mailto:x@example.org,https://bad"
broken.example.org.       IN TXT "v=spf1 include:broken.example.org"
_dmarc.broken.example.org. IN TXT "v=DMARC1 p=none"
alias.example.org.        IN CNAME example.com.
_dmarc.alias.example.org. IN CNAME _dmarc.example.com.
"#;

/// The authserv-id of the fuzzed verifier and milter.
pub const AUTHSERV_ID: &str = "mx.fuzz.example";

/// The zone text served to every target.
pub fn zone_text() -> String {
    let path = repo().join("crates/dmarc-verifier/tests/data/signed.zone");
    let keys = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fuzz set-up: {}: {e}", path.display()));
    format!("{keys}\n{EXTRA_ZONE}\n")
}

fn psl_path() -> PathBuf {
    repo().join("crates/dmarc-verifier/data/public_suffix_list.dat")
}

/// The runtime and DNS server of one fuzzing process.
pub struct Dns {
    /// Runs the milter, the verifier's resolver and each input.
    pub rt: Runtime,
    /// Kept alive for the whole process.
    pub server: TestDns,
}

fn start_dns() -> Dns {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("fuzz set-up: runtime");
    let server = rt
        .block_on(TestDns::start(&zone_text()))
        .expect("fuzz set-up: test DNS server");
    Dns { rt, server }
}

/// The verifier of the `verify` target and its fixed envelope.
pub struct VerifyWorld {
    /// Runtime and DNS server.
    pub dns: Dns,
    /// Asks only the test server; fixed authserv-id.
    pub verifier: Verifier,
    /// `192.0.2.10`, HELO `mail.example.com`, MAIL FROM `bounce@example.com`.
    pub envelope: Envelope,
}

/// The verifier world, built on first use.
pub fn verify_world() -> &'static VerifyWorld {
    static WORLD: OnceLock<VerifyWorld> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dns = start_dns();
        let config = VerifierConfig {
            authserv_id: AUTHSERV_ID.to_string(),
            psl_path: Some(psl_path()),
            dns: DnsConfig {
                nameservers: Nameservers::Explicit(vec![dns.server.addr()]),
                timeout: Duration::from_millis(500),
                attempts: 1,
                ..DnsConfig::default()
            },
            shadow_discovery: true,
            ..VerifierConfig::default()
        };
        let verifier = dns
            .rt
            .block_on(async { Verifier::new(config) })
            .expect("fuzz set-up: verifier");
        VerifyWorld {
            dns,
            verifier,
            envelope: Envelope::new(
                "192.0.2.10".parse().expect("literal address"),
                "mail.example.com",
                "bounce@example.com",
            ),
        }
    })
}

/// A milter running in-process for the `milter_session` target.
pub struct MilterWorld {
    /// Runtime and DNS server.
    pub dns: Dns,
    /// Where the milter listens: a UNIX socket in a directory of this
    /// process under the temporary directory. (Over TCP, indymilter-test's
    /// client writes each packet in several pieces without TCP_NODELAY, and
    /// Nagle's algorithm with delayed ACKs costs it 40 ms a round trip:
    /// 8 inputs a second instead of hundreds.)
    pub socket: PathBuf,
    /// Kept so the reload task lives as long as the milter.
    pub reloader: Reloader,
}

/// The most connections the fuzzed milter serves at once. Small on
/// purpose: a session that outlives its connection holds a permit, and the
/// health check after each input then cannot connect once they are all
/// held, which turns a leak into a reported hang.
pub const FUZZ_MAX_CONNECTIONS: usize = 4;

/// The milter world, built on first use.
pub fn milter_world() -> &'static MilterWorld {
    static WORLD: OnceLock<MilterWorld> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dns = start_dns();
        // ignore_hosts = []: the fuzzer's clients (loopback or not) are
        // checked, not skipped. No authserv_id: macro j is used, as with
        // Postfix, so fuzzed host names reach the authserv-id checks.
        let dir = std::env::temp_dir().join(format!("dmarc-fuzz-milter-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fuzz set-up: socket directory");
        let socket = dir.join("milter.sock");
        let text = format!(
            "socket = \"unix:{}\"\n\
             nameservers = [\"{}\"]\n\
             dns_timeout = 0.5\n\
             dns_attempts = 1\n\
             public_suffix_list = \"{}\"\n\
             max_connections = {FUZZ_MAX_CONNECTIONS}\n\
             max_message_size = \"64k\"\n\
             ignore_hosts = []\n\
             shutdown_timeout = 1\n",
            socket.display(),
            dns.server.addr(),
            psl_path().display()
        );
        let config = Config::parse(&text, "fuzz").expect("fuzz set-up: milter configuration");
        let (reloader, reloads) = reload_channel();
        dns.rt.block_on(async {
            let listener = MilterListener::bind(&config.socket, config.socket_mode)
                .await
                .expect("fuzz set-up: bind");
            tokio::spawn(async move {
                let result =
                    dmarc_milter::run(listener, config, reloads, std::future::pending::<()>())
                        .await;
                panic!("the milter stopped by itself: {result:?}");
            });
        });
        MilterWorld {
            dns,
            socket,
            reloader,
        }
    })
}

/// The ARC sealers of the `arc` target: `arc.example` (trusted) and
/// `fwd.example`, Ed25519 keys made from fixed seeds, so the zone is the
/// same in every run (their seals, with the time in `t=`, are not).
const ARC_SEEDS: [(&str, [u8; 32]); 2] = [("arc.example", [7; 32]), ("fwd.example", [9; 32])];

/// The verifier and the sealed message of the `arc` target.
pub struct ArcWorld {
    /// Runtime and DNS server (the keys of `ARC_SEEDS` added to the zone).
    pub dns: Dns,
    /// Trusts `arc.example` as a sealer.
    pub verifier: Verifier,
    /// The relay's envelope: 198.51.100.7, `list-bounces@fwd.example`.
    pub envelope: Envelope,
    /// A message from example.com (`p=reject`) whose DKIM signature passed
    /// at arc.example, which then changed the body (a list footer) and
    /// sealed i=1 recording dmarc=pass; fwd.example sealed i=2. It fails
    /// DMARC here, and the trusted sealer's override applies.
    pub base: Vec<u8>,
    /// The sealer of `fwd.example` (`s=s`), to seal fuzzed messages.
    pub sealer: dmarc_verifier::arc::ArcSealer,
}

/// `label` PEM of `der`.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The ARC world, built on first use.
pub fn arc_world() -> &'static ArcWorld {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    use base64::Engine;
    static WORLD: OnceLock<ArcWorld> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut zone = zone_text();
        let mut sealers = Vec::new();
        for (domain, seed) in ARC_SEEDS {
            let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("fuzz set-up: key");
            let public = base64::engine::general_purpose::STANDARD.encode(pair.public_key().as_ref());
            zone.push_str(&format!(
                "s._domainkey.{domain}. IN TXT \"v=DKIM1; k=ed25519; p={public}\"\n"
            ));
            let pkcs8 = pair.to_pkcs8().expect("fuzz set-up: PKCS #8");
            sealers.push(
                dmarc_verifier::arc::ArcSealer::from_pem(domain, "s", &pem("PRIVATE KEY", pkcs8.as_ref()))
                    .expect("fuzz set-up: sealer"),
            );
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("fuzz set-up: runtime");
        let server = rt
            .block_on(TestDns::start(&zone))
            .expect("fuzz set-up: test DNS server");
        let dns = Dns { rt, server };
        let config = VerifierConfig {
            authserv_id: AUTHSERV_ID.to_string(),
            psl_path: Some(psl_path()),
            pct_draw: Some(0),
            dns: DnsConfig {
                nameservers: Nameservers::Explicit(vec![dns.server.addr()]),
                timeout: Duration::from_millis(500),
                attempts: 1,
                ..DnsConfig::default()
            },
            overrides: dmarc_verifier::OverrideConfig {
                trusted_arc_sealers: vec!["arc.example".to_string()],
                ..dmarc_verifier::OverrideConfig::default()
            },
            ..VerifierConfig::default()
        };
        let envelope = Envelope::new(
            "198.51.100.7".parse().expect("literal address"),
            "mail.fwd.example",
            "list-bounces@fwd.example",
        );
        let original = std::fs::read(repo().join("crates/dmarc-verifier/tests/data/dkim-pass-rsa.eml"))
            .expect("fuzz set-up: dkim-pass-rsa.eml");
        let (verifier, base) = dns.rt.block_on(async {
            let verifier = Verifier::new(config).expect("fuzz set-up: verifier");
            let [list, forwarder] = &sealers[..] else {
                panic!("fuzz set-up: two sealers");
            };
            let saw = verifier.verify(&envelope, &original).await;
            assert_eq!(saw.dmarc, dmarc_verifier::DmarcResult::Pass, "fuzz set-up: the original passes");
            let mut changed = original.clone();
            changed.extend_from_slice(b"--\r\nthe list's footer\r\n");
            let once = sealed(&list.seal(&verifier, &changed, &saw).await.expect("fuzz set-up: seal 1"), &changed);
            let verdict = verifier.verify(&envelope, &once).await;
            let twice = sealed(&forwarder.seal(&verifier, &once, &verdict).await.expect("fuzz set-up: seal 2"), &once);
            let check = verifier.verify(&envelope, &twice).await;
            assert_eq!(
                check.override_reason,
                Some(dmarc_verifier::OverrideReason::TrustedForwarder),
                "fuzz set-up: the base message gets the override: {:?}",
                check.trail
            );
            (verifier, twice)
        });
        let sealer = sealers.pop().expect("fuzz set-up: fwd.example's sealer");
        ArcWorld {
            dns,
            verifier,
            envelope,
            base,
            sealer,
        }
    })
}

/// `fields` (ARC-Seal first) on top of `message`.
pub fn sealed(fields: &[(String, String)], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 2048);
    for (name, value) in fields {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(message);
    out
}
