//! Header bombs against the library: messages built to cost time or memory
//! (100,000 header fields, a 10 MiB field, 1,000 DKIM signatures, 1,000
//! From mailboxes). Each must be refused or capped with a clear result, in
//! bounded time and memory, and must not change the verdict a forged
//! message gets (a bomb is not a way to turn reject into accept).
//!
//! Every bomb prints what it cost (`--nocapture` shows it): wall time,
//! the peak heap allocated above what was live before (a counting global
//! allocator; the input itself is allocated before), and the DNS questions
//! asked. The assertions on time and memory are generous: they turn a hang
//! or an unbounded allocation into a failure, they do not measure speed.

mod common;

use common::{config, envelope, zone};
use dmarc_verifier::{message::FromError, Disposition, DmarcResult, Verdict, Verifier};
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use test_dns::TestDns;

/// Counts live and peak heap bytes of the whole test process.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only
// counters are updated around it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One bomb at a time, so that the peak heap belongs to it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: usize = 1024 * 1024;

/// Hang detector: far above what any bomb should take.
const DEADLINE: Duration = Duration::from_secs(60);

/// The zone: example.com authorises 192.0.2.0/24 and publishes p=reject.
const ZONE: &str = "example.com. IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n\
                    _dmarc.example.com. IN TXT \"v=DMARC1; p=reject\"\n";

/// A forger: not in example.com's SPF record.
const FORGER_IP: &str = "198.51.100.7";

struct Cost {
    verdict: Verdict,
    elapsed: Duration,
    peak_heap: usize,
    dns_questions: usize,
}

/// Verifies `message` from the forger with MAIL FROM `ceo@example.com`,
/// on a fresh server and verifier (cold cache), measuring the cost.
async fn bomb(name: &str, message: Vec<u8>) -> Cost {
    let _serial = SERIAL.lock().await;
    let dns = TestDns::start(&zone(ZONE)).await.expect("test DNS server");
    let verifier = Arc::new(Verifier::new(config(&dns)).expect("verifier"));
    let input = message.len();
    let env = envelope(FORGER_IP, "ceo@example.com");
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let task = tokio::spawn({
        let verifier = Arc::clone(&verifier);
        async move { verifier.verify_with_draw(&env, &message, 0).await }
    });
    let verdict = tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap_or_else(|_| panic!("{name}: no verdict within {DEADLINE:?}"))
        .expect("verify task");
    let elapsed = start.elapsed();
    let peak_heap = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let dns_questions = dns.queries().len();
    println!(
        "bomb {name}: input {input} bytes, {elapsed:?}, peak heap {:.1} MiB above the input, {dns_questions} DNS questions, {} DKIM results, dmarc={} disposition={}, A-R {} bytes",
        peak_heap as f64 / MIB as f64,
        verdict.dkim.len(),
        verdict.dmarc.as_str(),
        verdict.disposition,
        verdict.authentication_results.len(),
    );
    // Unbounded-memory detector: a linear pass may copy the input a few
    // times; more than 16 copies plus 64 MiB is not a bounded parser.
    assert!(
        peak_heap < 16 * input + 64 * MIB,
        "{name}: peak heap {peak_heap} bytes for an input of {input}"
    );
    Cost {
        verdict,
        elapsed,
        peak_heap,
        dns_questions,
    }
}

const TAIL: &str = "To: rcpt@example.org\r\nSubject: bomb\r\nDate: Mon, 10 Jun 2024 06:13:20 +0000\r\nMessage-ID: <bomb@example.org>\r\n\r\nHello.\r\n";

fn message_with(head: &str) -> Vec<u8> {
    format!("{head}{TAIL}").into_bytes()
}

/// The forged message is rejected whatever the bomb around it.
fn assert_rejected_for_example_com(name: &str, verdict: &Verdict) {
    assert_eq!(
        verdict.author_domains,
        Ok(vec!["example.com".to_string()]),
        "{name}"
    );
    assert_eq!(verdict.dmarc, DmarcResult::Fail, "{name}");
    assert_eq!(verdict.disposition, Disposition::Reject, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_header_fields() {
    let mut head = String::from("From: ceo@example.com\r\n");
    for i in 0..100_000 {
        head.push_str(&format!("X-Filler-{i}: value {i}\r\n"));
    }
    let cost = bomb("100,000 header fields", message_with(&head)).await;
    assert_rejected_for_example_com("100,000 header fields", &cost.verdict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_header_fields_before_from() {
    // The From field last: a parser that stops early would miss it.
    let mut head = String::new();
    for i in 0..100_000 {
        head.push_str(&format!("Received: from h{i}.example.net by mx\r\n"));
    }
    head.push_str("From: ceo@example.com\r\n");
    let cost = bomb("100,000 Received before From", message_with(&head)).await;
    assert_rejected_for_example_com("100,000 Received before From", &cost.verdict);
}

/// A 10 MiB unstructured field, folded every 76 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_header_field() {
    let mut head = String::from("From: ceo@example.com\r\nX-Big: start");
    let line = format!("\r\n {}", "y".repeat(74));
    while head.len() < 10 * MIB {
        head.push_str(&line);
    }
    head.push_str("\r\n");
    let cost = bomb("10 MiB X-Big field", message_with(&head)).await;
    assert_rejected_for_example_com("10 MiB X-Big field", &cost.verdict);
}

/// A 10 MiB From field: a display name of 10 MiB before the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_from_display_name() {
    let mut head = String::from("From: ");
    let word = format!("{}\r\n ", "n".repeat(74));
    while head.len() < 10 * MIB {
        head.push_str(&word);
    }
    head.push_str("<ceo@example.com>\r\n");
    let cost = bomb("10 MiB From display name", message_with(&head)).await;
    assert_rejected_for_example_com("10 MiB From display name", &cost.verdict);
}

/// A 10 MiB From field that never closes its comment: unparseable, so
/// permerror and the configured disposition (reject), never accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_unterminated_from_comment() {
    let mut head = String::from("From: ceo@example.com (");
    let word = format!("{}\r\n ", "(c".repeat(37));
    while head.len() < 10 * MIB {
        head.push_str(&word);
    }
    head.push_str("\r\n");
    let cost = bomb("10 MiB unterminated From comment", message_with(&head)).await;
    assert!(matches!(
        cost.verdict.author_domains,
        Err(FromError::Unparseable(_))
    ));
    assert_eq!(cost.verdict.dmarc, DmarcResult::PermError);
    assert_eq!(cost.verdict.disposition, Disposition::Reject);
}

/// 1,000 mailboxes of 1,000 domains: over `max_author_domains` (5), a
/// permerror with its own reason, not 1,000 policy look-ups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_from_mailboxes_of_distinct_domains() {
    let mailboxes: Vec<String> = (0..1000)
        .map(|i| format!("u{i} <u{i}@d{i}.example>"))
        .collect();
    let head = format!("From: ceo@example.com, {}\r\n", mailboxes.join(",\r\n "));
    let cost = bomb("1,000 From domains", message_with(&head)).await;
    assert_eq!(
        cost.verdict.author_domains,
        Err(FromError::TooManyDomains {
            count: 1001,
            cap: 5
        })
    );
    assert_eq!(cost.verdict.dmarc, DmarcResult::PermError);
    assert_ne!(cost.verdict.disposition, Disposition::Accept);
    assert!(
        cost.verdict
            .authentication_results
            .contains("too-many-from-domains"),
        "{}",
        cost.verdict.authentication_results
    );
    // SPF only: no DMARC record of any of the 1,001 domains is fetched.
    assert!(
        cost.dns_questions < 10,
        "{} DNS questions",
        cost.dns_questions
    );
}

/// 1,000 mailboxes of one domain: one Author Domain, evaluated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_from_mailboxes_of_one_domain() {
    let mailboxes: Vec<String> = (0..1000).map(|i| format!("u{i}@example.com")).collect();
    let head = format!("From: {}\r\n", mailboxes.join(",\r\n "));
    let cost = bomb("1,000 From mailboxes, one domain", message_with(&head)).await;
    assert_rejected_for_example_com("1,000 From mailboxes, one domain", &cost.verdict);
}

/// The relaxed SHA-256 body hash of the bombs' body (`Hello.` CRLF):
/// mail-auth looks a signature's key up only when its body hash matches.
const BODY_HASH: &str = "yZQq1c8wjBl0fZ4Wc/oraMCAG1mZJv5v/hlvyFy+t6A=";

/// `count` DKIM-Signature fields of example.com, each with its own
/// selector (none of which has a key), each with the right body hash.
fn dkim_bomb(count: usize) -> Vec<u8> {
    let mut head = String::new();
    for i in 0..count {
        head.push_str(&format!(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s{i};\r\n\th=from:to:subject; bh={BODY_HASH};\r\n\tb=dGhpcyBpcyBub3QgYSBzaWduYXR1cmUgYnV0IGl0IGlzIGJhc2U2NA==\r\n"
        ));
    }
    head.push_str("From: ceo@example.com\r\n");
    message_with(&head)
}

/// 1,000 signatures with example.com's real key (s2048, so one key
/// look-up, cached) and the right body hash, each covering 1,000
/// Received fields: a million header fields to canonicalize and hash, and
/// 1,000 RSA verifications that fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_dkim_signatures_each_hashing_a_thousand_fields() {
    let h = vec!["received"; 1000].join(":");
    let mut head = String::new();
    for _ in 0..1000 {
        head.push_str(&format!(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s2048;\r\n\th={h}:from;\r\n\tbh={BODY_HASH};\r\n\tb=dGhpcyBpcyBub3QgYSBzaWduYXR1cmUgYnV0IGl0IGlzIGJhc2U2NA==\r\n"
        ));
    }
    for i in 0..1000 {
        head.push_str(&format!("Received: from h{i}.example.net by mx\r\n"));
    }
    head.push_str("From: ceo@example.com\r\n");
    let cost = bomb(
        "1,000 signatures x 1,000 hashed fields",
        message_with(&head),
    )
    .await;
    assert_rejected_for_example_com("1,000 signatures x 1,000 hashed fields", &cost.verdict);
    // Five checked (max_dkim_signatures) and one summary.
    assert_eq!(cost.verdict.dkim.len(), 6);
}

/// 1,000 DKIM signatures: the message is still rejected, in bounded time
/// and memory. (How many of them are checked, and so how many DNS
/// questions one message can cause, is `dkim_signatures_checked_are_capped`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_dkim_signatures() {
    let cost = bomb("1,000 DKIM signatures", dkim_bomb(1000)).await;
    assert_rejected_for_example_com("1,000 DKIM signatures", &cost.verdict);
    assert!(cost
        .verdict
        .dkim
        .iter()
        .all(|d| d.result != dmarc_verifier::DkimResult::Pass));
    let _ = (cost.elapsed, cost.peak_heap);
}

/// Every DKIM signature used to be checked, each with its own key look-up:
/// one message with 1,000 signatures of distinct selectors made the
/// verifier ask 1,000 DNS questions and write 1,000 `dkim=` results into
/// the Authentication-Results header (121 KB, over Postfix's
/// `header_size_limit`). Now at most `max_dkim_signatures` (5) are checked
/// and the rest get one summary result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signatures_checked_are_capped() {
    let cost = bomb("1,000 DKIM signatures (cap)", dkim_bomb(1000)).await;
    assert!(
        cost.dns_questions <= 5 + 4,
        "{} DNS questions for one message",
        cost.dns_questions
    );
    assert_eq!(cost.verdict.dkim.len(), 6, "{:?}", cost.verdict.dkim);
    let summary = cost.verdict.dkim.last().unwrap();
    assert_eq!(summary.result, dmarc_verifier::DkimResult::Policy);
    assert_eq!(
        summary.reason.as_deref(),
        Some("995 more signatures not checked (limit 5)")
    );
    assert!(
        cost.verdict.authentication_results.len() < 2_000,
        "{} bytes of Authentication-Results",
        cost.verdict.authentication_results.len()
    );
    assert_rejected_for_example_com("1,000 DKIM signatures (cap)", &cost.verdict);
}

/// The cap must not let junk signatures push the author's own signature out:
/// 20 signatures of another domain stacked above example.com's valid one
/// still leave DMARC passing, because signatures of the Author Domain's
/// Organizational Domain are checked first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_signatures_check_the_author_domains_first() {
    let mut raw = Vec::new();
    for i in 0..20 {
        raw.extend_from_slice(format!(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=attacker.example; s=j{i};\r\n\th=from; bh={BODY_HASH};\r\n\tb=dGhpcyBpcyBub3QgYSBzaWduYXR1cmUgYnV0IGl0IGlzIGJhc2U2NA==\r\n"
        ).as_bytes());
    }
    raw.extend_from_slice(&common::data("dkim-pass-rsa.eml"));
    let cost = bomb("20 foreign signatures above the author's", raw).await;
    assert_eq!(
        cost.verdict.dmarc,
        DmarcResult::Pass,
        "{:?}",
        cost.verdict.dkim
    );
    assert_eq!(cost.verdict.disposition, Disposition::Accept);
    // Checked in header order: four foreign ones (no key record at
    // attacker.example: permerror, RFC 6376 §6.1.2, before the body hash),
    // then the author's.
    let shown: Vec<(&str, &str, &str)> = cost
        .verdict
        .dkim
        .iter()
        .map(|d| (d.domain.as_str(), d.selector.as_str(), d.result.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            ("attacker.example", "j0", "permerror"),
            ("attacker.example", "j1", "permerror"),
            ("attacker.example", "j2", "permerror"),
            ("attacker.example", "j3", "permerror"),
            ("example.com", "s2048", "pass"),
            ("", "", "policy"),
        ]
    );
}

/// A label of `n` distinct non-ASCII characters (punycode's worst case:
/// each code point is a separate round of the encoder).
fn non_ascii_label(n: usize) -> String {
    (0..n)
        .filter_map(|i| char::from_u32(0x4e00 + u32::try_from(i % 20_000).unwrap_or(0)))
        .collect()
}

/// A From domain of 100,000 non-ASCII characters: IDNA conversion must
/// refuse it (a label is at most 63 octets) without quadratic work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_character_idn_from_domain() {
    let head = format!("From: ceo@{}.example\r\n", non_ascii_label(100_000));
    let cost = bomb("100,000-character IDN From domain", message_with(&head)).await;
    assert!(matches!(
        cost.verdict.author_domains,
        Err(FromError::Unparseable(_))
    ));
    assert_eq!(cost.verdict.disposition, Disposition::Reject);
}

/// An incoming Authentication-Results whose authserv-id is 100,000
/// non-ASCII characters: checking whether it claims ours is bounded.
#[test]
fn hundred_thousand_character_idn_authserv_id() {
    let value = format!("{}; dmarc=pass", non_ascii_label(100_000));
    let broken = non_ascii_label(100_000);
    let start = Instant::now();
    assert!(!dmarc_verifier::auth_results::claims_authserv_id(
        &value,
        "mx.example.net"
    ));
    assert!(!dmarc_verifier::auth_results::claims_authserv_id(
        &broken,
        "mx.example.net"
    ));
    let took = start.elapsed();
    println!("bomb 100,000-character IDN authserv-id: {took:?}");
    assert!(took < DEADLINE, "{took:?}");
}
