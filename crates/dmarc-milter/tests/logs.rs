//! What a postmaster reads (issue 15): the milter in-process, its lines
//! captured in the daemon's own format (`dmarc_milter::logging`) at
//! `debug`, on a current-thread runtime so that every line of the milter's
//! tasks is captured. Every line logged while a message is decided carries
//! its queue id; a temperror says why in the verdict line; DNS failures
//! past the threshold make one warning naming the resolver.

mod common;

use common::*;
use indymilter_test::Status;
use test_dns::{Fault, TestDns};

const AR: &str = "Authentication-Results";

/// The lines of `logs` that belong to the message with `queue_id`: from
/// its first line carrying the id to its verdict line.
fn lines_of<'a>(logs: &'a str, queue_id: &str) -> Vec<&'a str> {
    let needle = format!("queue_id={queue_id}");
    let lines: Vec<&str> = logs.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no line of {queue_id}: {logs}"));
    let last = lines
        .iter()
        .rposition(|l| l.contains(&needle))
        .unwrap_or(first);
    lines[first..=last].to_vec()
}

/// The decision trail (DNS questions, the record applied, alignment), the
/// deleted forged field and the verdict: each line has the queue id, and
/// no line of another message or of the connection comes between them.
#[tokio::test]
async fn every_line_of_a_message_carries_its_queue_id() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.subscriber());
    let milter = Milter::start("").await;
    let mail = Mail::example("newsletter.eml").prepend(AR, " mx.test.example; dmarc=pass");
    let mut conn = milter.connect("192.0.2.10", "mail.example.com").await;
    send_until_body(&mut conn, "bounce-123@bounce.example.net", None, &mail).await;
    let (_, status) = finish(&mut conn, &mail, "4QID1").await;
    assert_eq!(status, Status::Accept);
    send_until_body(&mut conn, "bounce-123@bounce.example.net", None, &mail).await;
    let (_, status) = finish(&mut conn, &mail, "4QID2").await;
    assert_eq!(status, Status::Accept);
    milter.stop().await.expect("clean stop");

    let logs = capture.text();
    let first = lines_of(&logs, "4QID1");
    assert!(
        first.iter().all(|l| l.contains("queue_id=4QID1")),
        "a line of the message without its queue id: {first:#?}"
    );
    let trail = first
        .iter()
        .filter(|l| l.starts_with("DEBUG dns: "))
        .count();
    assert!(trail >= 3, "the DNS questions of the trail: {first:#?}");
    assert!(
        first.contains(&" INFO verdict queue_id=4QID1 client=192.0.2.10 from=example.com spf=pass dkim=pass/example.com dmarc=pass disposition=accept arc=none"),
        "{first:#?}"
    );
    // After the actions were sent.
    assert_eq!(
        first.last().copied(),
        Some("DEBUG deleted incoming Authentication-Results claiming mx.test.example queue_id=4QID1 deleted=\"[1]\"")
    );
    // The second message's trail is answered from the cache, with its own
    // id.
    let second = lines_of(&logs, "4QID2");
    assert!(
        second.iter().all(|l| l.contains("queue_id=4QID2")),
        "{second:#?}"
    );
    assert!(second.iter().any(|l| l.contains("(cached)")), "{second:#?}");
}

/// A skipped message's reason is quoted (it has spaces).
#[tokio::test]
async fn a_skipped_messages_reason_is_quoted() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.subscriber());
    let milter = Milter::start("").await;
    let (_, status) = forged(
        &milter,
        "198.51.100.200",
        Some("ceo"),
        &Mail::example("forged.eml"),
    )
    .await;
    assert_eq!(status, Status::Accept);
    milter.stop().await.expect("clean stop");
    let logs = capture.text();
    assert!(
        logs.contains(" INFO not checked queue_id=4XTEST client=198.51.100.200 from=example.com skipped=\"authenticated submission\" disposition=accept"),
        "{logs}"
    );
}

/// `dmarc=temperror` says which question failed and how.
#[tokio::test]
async fn a_temperror_says_why_in_the_verdict_line() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.subscriber());
    let milter = Milter::start("").await;
    milter
        .dns
        .set_fault("_dmarc.example.com", None, Fault::ServFail);
    let (_, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert!(matches!(status, Status::Tempfail { .. }), "{status:?}");
    milter.stop().await.expect("clean stop");
    let logs = capture.text();
    let verdict = logs
        .lines()
        .find(|l| l.starts_with(" INFO verdict "))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        verdict.starts_with(" INFO verdict queue_id=4XTEST client=198.51.100.200 from=example.com spf=fail dkim=none dmarc=temperror dmarc_reason=\"servfail: _dmarc.example.com ("),
        "{verdict}"
    );
    assert!(
        verdict.ends_with(" disposition=tempfail arc=none"),
        "{verdict}"
    );
}

/// Half of the last 20 DNS questions failing makes a warning naming the
/// resolver, not one per failure.
#[tokio::test]
async fn dns_failures_past_the_threshold_warn_naming_the_resolver() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.subscriber());
    let dns = TestDns::start(&demo_zone()).await.expect("test DNS");
    let resolver = dns.addr();
    // 24 From domains whose DMARC record the server answers SERVFAIL.
    let domains: Vec<String> = (0..24).map(|i| format!("d{i}.example")).collect();
    for domain in &domains {
        dns.set_fault(&format!("_dmarc.{domain}"), None, Fault::ServFail);
    }
    let milter = Milter::start_with_dns(dns, "").await;
    let mut conn = milter.connect("192.0.2.10", "mail.example.com").await;
    for (i, domain) in domains.iter().enumerate() {
        let mail = Mail::parse(format!("From: a@{domain}\r\nSubject: {i}\r\n\r\nx\r\n").as_bytes());
        send_until_body(&mut conn, "bounce-123@bounce.example.net", None, &mail).await;
        let (_, status) = finish(&mut conn, &mail, &format!("4D{i}")).await;
        assert!(matches!(status, Status::Tempfail { .. }), "{status:?}");
    }
    milter.stop().await.expect("clean stop");
    let logs = capture.text();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("of the last 20 DNS questions"))
        .collect();
    assert!(!warnings.is_empty(), "{logs}");
    assert!(warnings.len() < 5, "rate-limited: {warnings:#?}");
    // The window fills at the 20th question: the first SPF answer, then
    // 19 failures; the line belongs to the message that crossed.
    let expected = format!(
        " WARN 19 of the last 20 DNS questions were answered SERVFAIL; resolver {resolver} queue_id=4D18 failures=19 window=20 not_logged=0"
    );
    assert_eq!(warnings[0], expected, "{warnings:#?}");
}
