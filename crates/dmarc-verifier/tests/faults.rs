//! Fault injection through test-dns: every lookup kind timing out or failing,
//! truncated answers, oversized and many-string TXT records, CNAME chains and
//! loops, SPF lookup-limit exhaustion. Each gives the documented result and
//! disposition, and never hangs: every check runs under a generous deadline
//! that turns a hang into a failure (this is not a performance assertion).

mod common;

use common::{data, envelope, explain, message, setup, zone};
use dmarc_verifier::{
    dns::zone::RecordType, DiscoveryMethod, Disposition, DkimResult, DmarcResult, Envelope,
    SpfResult, Verdict, Verifier,
};
use std::time::Duration;
use test_dns::{Fault, Transport};

const BASE: &str = r#"
example.com. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. IN TXT "v=DMARC1; p=reject; sp=quarantine; np=reject"
example.net. IN TXT "v=spf1 -all"
"#;

/// Runs one check; a hang beyond 20 s (50 times the resolver timeout) fails.
async fn check(verifier: &Verifier, env: &Envelope, raw: &[u8]) -> Verdict {
    tokio::time::timeout(Duration::from_secs(20), verifier.verify(env, raw))
        .await
        .expect("the verifier hung on a DNS fault")
}

#[tokio::test]
async fn each_lookup_kind_timing_out_is_a_temperror() {
    // SPF record.
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    dns.set_fault("example.com", Some(RecordType::Txt), Fault::Timeout);
    let v = check(
        &verifier,
        &envelope("192.0.2.5", "a@example.com"),
        &message("a@example.com"),
    )
    .await;
    assert_eq!(v.spf.result, SpfResult::TempError, "{}", explain(&v));
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::TempError, Disposition::Tempfail)
    );

    // DKIM key of an aligned signature.
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    dns.set_fault("s2048._domainkey.example.com", None, Fault::Timeout);
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "x@example.net"),
        &data("dkim-pass-rsa.eml"),
    )
    .await;
    assert_eq!(v.dkim[0].result, DkimResult::TempError, "{}", explain(&v));
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::TempError, Disposition::Tempfail)
    );
    assert!(v.authentication_results.contains("reason=dkim-temperror"));

    // DMARC record.
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    dns.set_fault("_dmarc.example.com", Some(RecordType::Txt), Fault::Timeout);
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "a@example.com"),
        &message("a@example.com"),
    )
    .await;
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::TempError, Disposition::Tempfail),
        "{}",
        explain(&v)
    );

    // The existence check behind np (RFC 8020), under RFC 9989 discovery.
    let (dns, verifier) = setup(&zone(BASE), |c| c.discovery = DiscoveryMethod::TreeWalk).await;
    dns.set_fault("nope.example.com", Some(RecordType::A), Fault::Timeout);
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "a@nope.example.com"),
        &message("a@nope.example.com"),
    )
    .await;
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::TempError, Disposition::Tempfail),
        "{}",
        explain(&v)
    );
    // Under RFC 7489 (PSL) discovery np is no tag at all: sp applies, the
    // existence of the Author Domain does not matter and is not asked.
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    dns.set_fault("nope.example.com", Some(RecordType::A), Fault::Timeout);
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "a@nope.example.com"),
        &message("a@nope.example.com"),
    )
    .await;
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::Fail, Disposition::Quarantine),
        "{}",
        explain(&v)
    );
    assert!(
        v.authentication_results
            .contains("(p=reject sp=quarantine dis=quarantine)"),
        "{}",
        v.authentication_results
    );
}

#[tokio::test]
async fn servfail_and_refused_are_temperrors() {
    for fault in [Fault::ServFail, Fault::Refused] {
        let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
        dns.set_fault("_dmarc.example.com", None, fault);
        let v = check(
            &verifier,
            &envelope("203.0.113.9", "a@example.com"),
            &message("a@example.com"),
        )
        .await;
        assert_eq!(
            v.dmarc,
            DmarcResult::TempError,
            "{fault:?}\n{}",
            explain(&v)
        );
        // A passing SPF does not help: without the record nothing is known.
        let v = check(
            &verifier,
            &envelope("192.0.2.5", "a@example.com"),
            &message("a@example.com"),
        )
        .await;
        assert_eq!(v.dmarc, DmarcResult::TempError, "{fault:?}");
    }
}

#[tokio::test]
async fn a_dns_failure_on_a_passing_message_still_passes() {
    // The np existence check fails, but SPF passes aligned: pass.
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    dns.set_fault("mail.example.com", Some(RecordType::A), Fault::ServFail);
    let z = zone(&format!(
        "{BASE}\nmail.example.com. IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\""
    ));
    dns.set_zone(dmarc_verifier::dns::zone::Zone::parse(&z, None).unwrap());
    let v = check(
        &verifier,
        &envelope("192.0.2.5", "a@mail.example.com"),
        &message("a@mail.example.com"),
    )
    .await;
    assert_eq!(v.dmarc, DmarcResult::Pass, "{}", explain(&v));
    assert_eq!(v.disposition, Disposition::Accept);
}

#[tokio::test]
async fn truncated_udp_answers_are_fetched_over_tcp() {
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    dns.set_fault("_dmarc.example.com", None, Fault::Truncate);
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "a@example.com"),
        &message("a@example.com"),
    )
    .await;
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::Fail, Disposition::Reject),
        "{}",
        explain(&v)
    );
    let transports: Vec<Transport> = dns
        .queries()
        .into_iter()
        .filter(|q| q.name == "_dmarc.example.com")
        .map(|q| q.transport)
        .collect();
    assert_eq!(transports, [Transport::Udp, Transport::Tcp]);
}

#[tokio::test]
async fn oversized_and_many_string_txt_records() {
    // A 3 KiB DMARC record in 255-byte strings (padded with unknown tags),
    // and an SPF record split into 40 strings.
    let padding: String = (0..120).map(|i| format!("; x{i}=padding")).collect();
    let dmarc = format!("v=DMARC1; p=quarantine{padding}");
    let dmarc_strings: Vec<String> = dmarc
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    let spf = "v=spf1 ip4:192.0.2.0/24 -all";
    let spf_strings: Vec<String> = spf
        .chars()
        .collect::<Vec<_>>()
        .chunks(1)
        .take(40)
        .map(|c| format!("\"{}\"", c.iter().collect::<String>()))
        .collect();
    let rest: String = spf.chars().skip(40).collect();
    let z = zone(&format!(
        "example.org. IN TXT ( {} \"{rest}\" )\n_dmarc.example.org. IN TXT ( {} )",
        spf_strings.join(" "),
        dmarc_strings.join(" ")
    ));
    let (_dns, verifier) = setup(&z, |_| {}).await;
    let v = check(
        &verifier,
        &envelope("192.0.2.5", "a@example.org"),
        &message("a@example.org"),
    )
    .await;
    assert_eq!(v.spf.result, SpfResult::Pass, "{}", explain(&v));
    assert_eq!(v.dmarc, DmarcResult::Pass);
    let record = v.decisive_evaluation().unwrap().record.clone().unwrap();
    assert_eq!(record.raw(), dmarc);
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "a@example.org"),
        &message("a@example.org"),
    )
    .await;
    assert_eq!(v.disposition, Disposition::Quarantine);
}

#[tokio::test]
async fn cname_chains_are_followed_and_loops_end() {
    let z = zone(
        r#"example.org. IN TXT "v=spf1 -all"
_dmarc.example.org. IN CNAME policy.example.net.
policy.example.net. IN CNAME policy2.example.net.
policy2.example.net. IN TXT "v=DMARC1; p=reject"
loop.example.org. IN TXT "v=spf1 -all"
_dmarc.loop.example.org. IN CNAME a.loop.example.org.
a.loop.example.org. IN CNAME _dmarc.loop.example.org."#,
    );
    let (_dns, verifier) = setup(&z, |_| {}).await;
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "a@example.org"),
        &message("a@example.org"),
    )
    .await;
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::Fail, Disposition::Reject),
        "{}",
        explain(&v)
    );
    // A loop is no record at that name; the organizational domain's applies.
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "a@loop.example.org"),
        &message("a@loop.example.org"),
    )
    .await;
    assert_eq!(
        v.decisive_evaluation().unwrap().policy_domain.as_deref(),
        Some("example.org"),
        "{}",
        explain(&v)
    );
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::Fail, Disposition::Reject)
    );
}

#[tokio::test]
async fn spf_lookup_limit_exhaustion_is_permerror() {
    // RFC 7208 §4.6.4: more than 10 DNS-querying terms is a permerror.
    let includes: String = (0..12)
        .map(|i| format!(" include:i{i}.example.org"))
        .collect();
    let mut extra = format!("example.org. IN TXT \"v=spf1{includes} -all\"\n_dmarc.example.org. IN TXT \"v=DMARC1; p=reject\"\n");
    for i in 0..12 {
        extra.push_str(&format!(
            "i{i}.example.org. IN TXT \"v=spf1 ip4:198.51.100.{i} -all\"\n"
        ));
    }
    let (_dns, verifier) = setup(&zone(&extra), |_| {}).await;
    let v = check(
        &verifier,
        &envelope("203.0.113.9", "a@example.org"),
        &message("a@example.org"),
    )
    .await;
    assert_eq!(v.spf.result, SpfResult::PermError, "{}", explain(&v));
    assert_eq!(
        (v.dmarc, v.disposition),
        (DmarcResult::Fail, Disposition::Reject)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_share_one_query_per_name() {
    // 20 messages from the same sender arrive together while DNS is slow:
    // the SPF record, the DKIM key and the DMARC record are each asked once.
    let (dns, verifier) = setup(&zone(BASE), |_| {}).await;
    for name in [
        "example.com",
        "s2048._domainkey.example.com",
        "_dmarc.example.com",
    ] {
        dns.set_fault(name, None, Fault::Delay(Duration::from_millis(150)));
    }
    let verifier = std::sync::Arc::new(verifier);
    let raw = data("dkim-pass-rsa.eml");
    let env = envelope("192.0.2.5", "user@example.com");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (verifier, env, raw) = (verifier.clone(), env.clone(), raw.clone());
            tokio::spawn(async move { check(&verifier, &env, &raw).await })
        })
        .collect();
    for task in tasks {
        let v = task.await.expect("task");
        assert_eq!(v.dmarc, DmarcResult::Pass, "{}", explain(&v));
    }
    for name in [
        "example.com",
        "s2048._domainkey.example.com",
        "_dmarc.example.com",
    ] {
        let txt_queries = dns
            .queries()
            .into_iter()
            .filter(|q| q.name == name && q.rtype == Some(RecordType::Txt))
            .count();
        assert_eq!(txt_queries, 1, "{name} was asked {txt_queries} times");
    }
}

/// `DnsConfig::attempts` counts tries, not retries: a question that times
/// out is sent exactly that many times (hickory counts retries after the
/// first try).
#[tokio::test]
async fn attempts_count_tries() {
    for attempts in [1usize, 2, 3] {
        let (dns, verifier) = setup(&zone(BASE), |c| {
            c.dns.attempts = attempts;
            c.dns.timeout = Duration::from_millis(150);
        })
        .await;
        dns.set_fault("_dmarc.example.com", Some(RecordType::Txt), Fault::Timeout);
        let v = check(
            &verifier,
            &envelope("203.0.113.9", "a@example.com"),
            &message("a@example.com"),
        )
        .await;
        assert_eq!(v.dmarc, DmarcResult::TempError, "{}", explain(&v));
        assert_eq!(
            dns.query_count("_dmarc.example.com"),
            attempts,
            "attempts = {attempts}"
        );
    }
}

/// The DNS observer sees every question with its outcome, and every cache
/// lookup; label values come from closed sets.
#[tokio::test]
async fn the_dns_observer_sees_questions_outcomes_and_cache_lookups() {
    use dmarc_verifier::dns::{CacheName, DnsObserver, DnsOutcome};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen {
        questions: Mutex<Vec<(RecordType, DnsOutcome)>>,
        lookups: Mutex<Vec<(CacheName, bool)>>,
    }
    impl DnsObserver for Seen {
        fn question(&self, rtype: RecordType, outcome: DnsOutcome, _elapsed: Duration) {
            self.questions.lock().unwrap().push((rtype, outcome));
        }
        fn cache_lookup(&self, cache: CacheName, hit: bool) {
            self.lookups.lock().unwrap().push((cache, hit));
        }
    }

    let dns = test_dns::TestDns::start(&zone(BASE)).await.unwrap();
    dns.set_fault("_dmarc.example.com", Some(RecordType::Txt), Fault::ServFail);
    let seen = Arc::new(Seen::default());
    let verifier = Verifier::with_dns_observer(
        common::config(&dns),
        dmarc_verifier::PublicSuffixList::bundled(),
        seen.clone(),
    )
    .unwrap();
    let env = envelope("203.0.113.9", "a@example.com");
    let v = check(&verifier, &env, &message("a@example.com")).await;
    assert_eq!(v.dmarc, DmarcResult::TempError);
    let failure = v.evaluations[0].dns_failure.clone().expect("the failure");
    assert_eq!(failure.outcome, DnsOutcome::ServFail);
    assert_eq!(failure.name, "_dmarc.example.com");
    let questions = seen.questions.lock().unwrap().clone();
    assert!(
        questions.contains(&(RecordType::Txt, DnsOutcome::ServFail)),
        "{questions:?}"
    );
    // The same message again: the failure is remembered a few seconds and
    // every answer comes from the caches: no new question.
    let asked = seen.questions.lock().unwrap().len();
    let _ = check(&verifier, &env, &message("a@example.com")).await;
    assert_eq!(seen.questions.lock().unwrap().len(), asked);
    let lookups = seen.lookups.lock().unwrap().clone();
    assert!(lookups.contains(&(CacheName::Txt, true)), "{lookups:?}");
    assert!(lookups.contains(&(CacheName::Txt, false)), "{lookups:?}");
    assert!(verifier
        .dns_cache_entries()
        .iter()
        .any(|&(name, n)| name == CacheName::Txt && n > 0));
}
