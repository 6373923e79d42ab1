//! The milter in-process, driven from the MTA side over the real milter
//! protocol (indymilter-test), with DNS from the demo zone
//! (examples/data/demo.zone) on test-dns. Each test reads like a scenario:
//! a client, a message, the header fields deleted and inserted byte for
//! byte, and the SMTP reply.

mod common;

use common::*;
use indymilter_test::{EomAction, IntoCString, MacroStage, ProtoOpts, Status, TestConnection};
use test_dns::Fault;
use tokio::io::AsyncWriteExt;

const AR: &str = "Authentication-Results";

/// Our header for the newsletter: DKIM pass for example.com, aligned.
const NEWSLETTER_AR: &str = " mx.test.example;\n\tspf=pass smtp.mailfrom=bounce.example.net;\n\tdkim=pass header.d=example.com header.s=news2048 header.b=jiYhJP1T;\n\tarc=none;\n\tdmarc=pass (p=reject sp=quarantine dis=none) header.from=example.com policy.dmarc=reject";

/// Our header for subdomain.eml: sp=quarantine applies.
const SUBDOMAIN_AR: &str = " mx.test.example;\n\tspf=none smtp.mailfrom=billing.example.com;\n\tdkim=none;\n\tarc=none;\n\tdmarc=fail (p=reject sp=quarantine dis=quarantine) header.from=billing.example.com policy.dmarc=quarantine";

fn insert(value: &str) -> EomAction {
    EomAction::InsertHeader {
        index: 0,
        name: AR.into_c_string(),
        value: value.into_c_string(),
    }
}

fn delete(index: i32) -> EomAction {
    EomAction::DeleteHeader {
        name: AR.into_c_string(),
        index,
    }
}

async fn subdomain(milter: &Milter) -> (Vec<EomAction>, Status) {
    let mut conn = milter
        .connect("198.51.100.77", "smtp.billing.example.com")
        .await;
    let (actions, status) = send(
        &mut conn,
        "billing@billing.example.com",
        None,
        &Mail::example("subdomain.eml"),
    )
    .await;
    (actions.actions, status)
}

#[tokio::test]
async fn negotiates_actions_no_reply_stages_leading_space_and_macros() {
    let milter = Milter::start("").await;
    let conn = TestConnection::open(milter.addr).await.unwrap();
    let opts = conn.negotiated_opts();
    for opt in [
        ProtoOpts::NOREPLY_CONNECT,
        ProtoOpts::NOREPLY_HELO,
        ProtoOpts::NOREPLY_RCPT,
        ProtoOpts::NOREPLY_HEADER,
        ProtoOpts::NOREPLY_BODY,
        ProtoOpts::LEADING_SPACE,
        ProtoOpts::NO_DATA,
        ProtoOpts::NO_EOH,
        ProtoOpts::NO_UNKNOWN,
    ] {
        assert!(opts.contains(opt), "{opt:?} not in {opts:?}");
    }
    assert!(
        !opts.contains(ProtoOpts::NOREPLY_MAIL),
        "MAIL must be answered"
    );
    assert_eq!(
        conn.negotiated_actions(),
        indymilter_test::Actions::ADD_HEADER
            | indymilter_test::Actions::CHANGE_HEADER
            | indymilter_test::Actions::QUARANTINE
    );
    let macros: Vec<(MacroStage, String)> = {
        let mut m: Vec<_> = conn
            .requested_macros()
            .iter()
            .map(|(stage, names)| (*stage, names.to_string_lossy().into_owned()))
            .collect();
        m.sort();
        m
    };
    assert_eq!(
        macros,
        vec![
            (
                MacroStage::Connect,
                "j {daemon_name} {client_addr}".to_string()
            ),
            (MacroStage::Mail, "{auth_authen}".to_string()),
            (MacroStage::Eom, "i".to_string()),
        ]
    );
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn passing_message_is_accepted_with_our_header_at_the_top() {
    let milter = Milter::start("").await;
    let (actions, status) = newsletter(&milter, &Mail::example("newsletter.eml")).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(actions, vec![insert(NEWSLETTER_AR)]);
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn forged_reject_policy_gets_550_naming_the_domain() {
    let milter = Milter::start("").await;
    let (actions, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert_eq!(
        reply_text(&status),
        "550 5.7.1 DMARC policy of example.com rejects this message"
    );
    assert!(matches!(status, Status::Reject { .. }));
    assert_eq!(actions, vec![], "a refused message is not changed");
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn reject_text_is_configurable() {
    let milter = Milter::start("reject_text = \"Spoofed {domain} mail refused\"").await;
    let (_, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert_eq!(
        reply_text(&status),
        "550 5.7.1 Spoofed example.com mail refused"
    );
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn quarantine_goes_to_the_hold_queue() {
    let milter = Milter::start("").await;
    let (actions, status) = subdomain(&milter).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![
            insert(SUBDOMAIN_AR),
            EomAction::Quarantine {
                reason: c"DMARC policy of billing.example.com quarantines this message".into()
            },
        ]
    );
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn quarantine_header_only_delivers_with_the_header() {
    let milter = Milter::start("quarantine_action = \"header-only\"").await;
    let (actions, status) = subdomain(&milter).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(actions, vec![insert(SUBDOMAIN_AR)]);
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn dns_failure_gets_451() {
    let milter = Milter::start("").await;
    milter
        .dns
        .set_fault("_dmarc.example.com", None, Fault::ServFail);
    let (actions, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert!(matches!(status, Status::Tempfail { .. }), "{status:?}");
    assert_eq!(
        reply_text(&status),
        "451 4.7.5 DMARC policy of example.com could not be checked, try again later"
    );
    assert_eq!(actions, vec![]);
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn dry_run_only_adds_the_header() {
    let milter = Milter::start("dry_run = true").await;
    let (actions, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![insert(" mx.test.example;\n\tspf=fail smtp.mailfrom=example.com;\n\tdkim=none;\n\tarc=none;\n\tdmarc=fail (p=reject sp=quarantine dis=reject) header.from=example.com policy.dmarc=reject")]
    );
    milter.stop().await.unwrap();
}

/// RFC 8601 §5: every incoming field claiming our authserv-id goes, parsed
/// or not, case-insensitively; the others stay. Deleted last first so that
/// the MTA's renumbering after each deletion cannot hit the wrong field.
#[tokio::test]
async fn forged_auth_results_are_deleted_in_reverse_order() {
    let milter = Milter::start("").await;
    let mail = Mail::example("newsletter.eml")
        .insert(0, AR, " other.example; spf=pass smtp.mailfrom=example.com")
        .insert(
            1,
            "Authentication-Results",
            " MX.Test.Example; dmarc=pass header.from=example.com",
        )
        .insert(
            3,
            "authentication-results",
            " mx.test.example ;;; garbage (((",
        )
        .insert(5, AR, " other.example; dkim=pass header.d=mx.test.example")
        .insert(7, "AUTHENTICATION-RESULTS", "\n\tmx.test.example.;\n\tnone");
    let (actions, status) = newsletter(&milter, &mail).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![delete(5), delete(3), delete(2), insert(NEWSLETTER_AR)]
    );
    milter.stop().await.unwrap();
}

/// A forger may claim a sibling MX's results: `authserv_id_aliases` are
/// removed like our own id, in every position; other ids stay.
#[tokio::test]
async fn forged_results_of_sibling_mx_hosts_are_deleted() {
    let milter =
        Milter::start("authserv_id_aliases = [\"mx2.example.net\", \"MX3.example.net\"]").await;
    let mail = Mail::example("newsletter.eml")
        .insert(
            0,
            AR,
            " mx2.example.net; dmarc=pass header.from=example.com",
        )
        .insert(
            1,
            AR,
            " mx4.example.net; dmarc=pass header.from=example.com",
        )
        .insert(3, AR, " MX3.EXAMPLE.NET.; spf=pass")
        .insert(5, AR, " mx.test.example; dmarc=pass")
        .insert(6, AR, " other.example; dkim=pass header.d=mx2.example.net");
    let (actions, status) = newsletter(&milter, &mail).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![delete(4), delete(3), delete(1), insert(NEWSLETTER_AR)]
    );
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn remove_all_authentication_results_at_a_border_mta() {
    let milter = Milter::start("remove_all_authentication_results = true").await;
    let mail = Mail::example("newsletter.eml")
        .insert(0, AR, " other.example; spf=pass")
        .insert(4, AR, " mx.test.example; dmarc=pass")
        .insert(6, AR, " third.example; none");
    let (actions, status) = newsletter(&milter, &mail).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![delete(3), delete(2), delete(1), insert(NEWSLETTER_AR)]
    );
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn configured_authserv_id_wins_over_the_mta_name() {
    let milter = Milter::start("authserv_id = \"dmarc.example.net\"").await;
    let mail = Mail::example("newsletter.eml")
        .insert(0, AR, " mx.test.example; dmarc=pass")
        .insert(1, AR, " DMARC.example.NET; dmarc=pass");
    let (actions, _) = newsletter(&milter, &mail).await;
    assert_eq!(
        actions,
        vec![
            delete(2),
            insert(&NEWSLETTER_AR.replace("mx.test.example", "dmarc.example.net"))
        ]
    );
    milter.stop().await.unwrap();
}

/// Mail that is not checked gets no header of ours by default (issue 14,
/// bug 6: it would leave with outbound mail), but forged headers are
/// still removed; `add_header_to_skipped = true` adds `dmarc=none` with
/// the reason.
#[tokio::test]
async fn authenticated_submission_is_skipped_but_still_cleaned() {
    let milter = Milter::start("").await;
    let mail = Mail::example("forged.eml").prepend(AR, " mx.test.example; dmarc=pass");
    let (actions, status) = forged(&milter, "198.51.100.200", Some("ceo"), &mail).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(actions, vec![delete(1)]);
    milter.stop().await.unwrap();

    let milter = Milter::start("add_header_to_skipped = true").await;
    let (actions, status) = forged(&milter, "198.51.100.200", Some("ceo"), &mail).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![
            delete(1),
            insert(" mx.test.example;\n\tdmarc=none reason=\"authenticated submission\"")
        ]
    );
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn authenticated_submission_is_checked_when_configured() {
    let milter = Milter::start("skip_authenticated = false").await;
    let (_, status) = forged(
        &milter,
        "198.51.100.200",
        Some("ceo"),
        &Mail::example("forged.eml"),
    )
    .await;
    assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn ignored_hosts_are_skipped_but_still_cleaned() {
    let milter = Milter::start("").await;
    let mail = Mail::example("forged.eml").prepend(AR, " mx.test.example; dmarc=pass");
    let (actions, status) = forged(&milter, "127.0.0.1", None, &mail).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(actions, vec![delete(1)]);
    milter.stop().await.unwrap();

    let milter =
        Milter::start("ignore_hosts = [\"198.51.100.0/24\"]\nadd_header_to_skipped = true").await;
    let (actions, status) = forged(&milter, "198.51.100.200", None, &mail).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![
            delete(1),
            insert(" mx.test.example;\n\tdmarc=none reason=\"ignored client\"")
        ]
    );
    milter.stop().await.unwrap();
}

/// A client named in `ignore_hosts` is skipped by the name the MTA gives
/// at CONNECT (Postfix: only a verified name); `unknown` never matches.
#[tokio::test]
async fn ignored_hosts_by_verified_name() {
    let milter =
        Milter::start("ignore_hosts = [\"relay.example.net\", \".int.example.net\"]").await;
    let mail = Mail::example("forged.eml");
    for (name, ignored) in [
        ("relay.example.net", true),
        ("mx1.int.example.net", true),
        ("unknown", false),
        ("relay.example.net.attacker.example", false),
    ] {
        let mut conn = milter
            .connect_named("198.51.100.200", name, "unknown.example.net")
            .await;
        let (eom, status) = send(&mut conn, "ceo@example.com", None, &mail).await;
        if ignored {
            assert_eq!((status, eom.actions), (Status::Accept, vec![]), "{name}");
        } else {
            assert!(
                matches!(status, Status::Reject { .. }),
                "{name}: {status:?}"
            );
        }
    }
    milter.stop().await.unwrap();
}

/// `ignore_hosts_file` is read again on reload: a relay added to it is
/// skipped from then on, one removed is checked again.
#[tokio::test]
async fn ignore_hosts_file_is_read_again_on_reload() {
    let dir = TempDir::new("ignore-file");
    let file = dir.path().join("ignore-hosts");
    std::fs::write(&file, "# mynetworks\n").unwrap();
    let extra = format!("ignore_hosts_file = \"{}\"", file.display());
    let milter = Milter::start(&extra).await;
    let mail = Mail::example("forged.eml");
    let (_, status) = forged(&milter, "198.51.100.200", None, &mail).await;
    assert!(matches!(status, Status::Reject { .. }), "{status:?}");

    std::fs::write(&file, "# mynetworks\n198.51.100.0/24\n").unwrap();
    milter.reloader.reload().await.expect("reload");
    let (actions, status) = forged(&milter, "198.51.100.200", None, &mail).await;
    assert_eq!((status, actions), (Status::Accept, vec![]));

    std::fs::write(&file, "198.51.100.0/33\n").unwrap();
    let error = milter.reloader.reload().await.expect_err("bad line");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{} line 1: invalid value", file.display())),
        "{error}"
    );
    // The running list is kept.
    let (_, status) = forged(&milter, "198.51.100.200", None, &mail).await;
    assert_eq!(status, Status::Accept);

    std::fs::write(&file, "").unwrap();
    milter.reloader.reload().await.expect("reload");
    let (_, status) = forged(&milter, "198.51.100.200", None, &mail).await;
    assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn ignored_from_domains_are_skipped() {
    let milter =
        Milter::start("ignore_from_domains = [\"example.com\"]\nadd_header_to_skipped = true")
            .await;
    let (actions, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![insert(
            " mx.test.example;\n\tdmarc=none reason=\"ignored From domain\""
        )]
    );
    // A subdomain is not example.com.
    let (_, status) = subdomain(&milter).await;
    assert_eq!(status, Status::Accept);
    milter.stop().await.unwrap();
}

/// Over `max_message_size` the body is not kept: a signature cannot be
/// verified, so it is reported as such and the message is accepted; an
/// unsigned message is judged on its header as usual.
#[tokio::test]
async fn messages_over_the_size_cap_are_not_buffered() {
    let milter = Milter::start("max_message_size = \"64k\"").await;
    let mut big = Mail::example("newsletter.eml");
    big.body.extend(
        std::iter::repeat_n(b"0123456789 123456789 123456789\r\n".as_slice(), 4000).flatten(),
    );
    let (actions, status) = newsletter(&milter, &big).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions,
        vec![insert(" mx.test.example;\n\tspf=pass smtp.mailfrom=bounce.example.net;\n\tdkim=permerror reason=\"message too large\" header.d=example.com header.s=news2048 header.b=jiYhJP1T;\n\tdmarc=none reason=\"message too large\"")]
    );

    let mut big_forged = Mail::example("forged.eml");
    big_forged.body = vec![b'x'; 200 * 1024];
    let (_, status) = forged(&milter, "198.51.100.200", None, &big_forged).await;
    assert_eq!(
        reply_text(&status),
        "550 5.7.1 DMARC policy of example.com rejects this message"
    );
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn an_aborted_message_leaves_nothing_behind() {
    let milter = Milter::start("").await;
    let mut conn = milter.connect("192.0.2.10", "mail.example.com").await;
    let first = Mail::example("forged.eml").prepend(AR, " mx.test.example; dmarc=pass");
    send_until_body(&mut conn, "ceo@example.com", None, &first).await;
    conn.abort().await.unwrap();

    let (actions, status) = send(
        &mut conn,
        "bounce-123@bounce.example.net",
        None,
        &Mail::example("newsletter.eml"),
    )
    .await;
    assert_eq!(status, Status::Accept);
    assert_eq!(actions.actions, vec![insert(NEWSLETTER_AR)]);
    conn.close().await.unwrap();
    // Nothing is in flight: shutdown does not wait.
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn many_messages_on_one_connection() {
    let milter = Milter::start("").await;
    let mut conn = milter.connect("192.0.2.10", "mail.example.com").await;
    for i in 0..20 {
        if i % 2 == 0 {
            let (actions, status) = send(
                &mut conn,
                "bounce-123@bounce.example.net",
                None,
                &Mail::example("newsletter.eml"),
            )
            .await;
            assert_eq!(status, Status::Accept, "message {i}");
            assert_eq!(actions.actions, vec![insert(NEWSLETTER_AR)], "message {i}");
        } else {
            // Same connection, a forged message: the sender's SPF does not
            // cover 192.0.2.10 for example.org mail.
            let mail =
                Mail::parse(b"From: alice@example.org\nTo: bob@example.net\nSubject: hi\n\nHi.\n");
            let (actions, status) = send(&mut conn, "alice@example.org", None, &mail).await;
            assert_eq!(status, Status::Accept, "message {i}");
            assert!(
                matches!(
                    actions.actions.as_slice(),
                    [EomAction::InsertHeader { .. }, EomAction::Quarantine { .. }]
                ),
                "message {i}: {actions:?}"
            );
        }
    }
    conn.close().await.unwrap();
    milter.stop().await.unwrap();
}

#[tokio::test]
async fn reload_applies_a_good_config_and_keeps_the_old_one_when_broken() {
    let milter = Milter::start("").await;
    let (actions, _) = subdomain(&milter).await;
    assert!(actions
        .iter()
        .any(|a| matches!(a, EomAction::Quarantine { .. })));

    milter.rewrite_config("quarantine_action = \"header-only\"");
    milter.reloader.reload().await.expect("reload");
    let (actions, _) = subdomain(&milter).await;
    assert_eq!(actions, vec![insert(SUBDOMAIN_AR)]);

    milter.rewrite_config("quarantine_action = \"hold\"\nreject_text = \"x\"\ndry_run = \"maybe\"");
    let error = milter.reloader.reload().await.expect_err("broken config");
    let text = error.to_string();
    assert!(
        text.ends_with(
            "dmarc-milter.toml line 9: invalid value \"maybe\" for dry_run (expected true or false)"
        ),
        "{text}"
    );
    // The running configuration (header-only) is kept.
    let (actions, _) = subdomain(&milter).await;
    assert_eq!(actions, vec![insert(SUBDOMAIN_AR)]);
    milter.stop().await.unwrap();
}

/// SIGTERM: the socket closes, a new message on an idle connection gets
/// 451, the message in flight is finished, then `run` returns.
#[tokio::test]
async fn shutdown_finishes_messages_in_flight() {
    let mut milter = Milter::start("").await;
    let mut busy = milter.connect("192.0.2.10", "mail.example.com").await;
    let mut idle = milter.connect("192.0.2.10", "mail.example.com").await;
    let mail = Mail::example("newsletter.eml");
    send_until_body(&mut busy, "bounce-123@bounce.example.net", None, &mail).await;

    milter.shutdown();
    let addr = milter.addr;
    wait_until("the listener to close", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;

    let status = idle.mail(["<late@example.com>"]).await.unwrap();
    assert_eq!(
        reply_text(&status),
        "451 4.3.2 DMARC milter shutting down, try again later"
    );

    let (actions, status) = finish(&mut busy, &mail, "4XBUSY").await;
    assert_eq!(status, Status::Accept);
    assert_eq!(actions.actions, vec![insert(NEWSLETTER_AR)]);
    milter.stop().await.expect("clean stop");
}

/// A peer that drops the connection mid-message, or sends garbage, ends
/// only its own session: nothing stays in flight and the milter serves on.
#[tokio::test]
async fn broken_peers_do_not_hurt_the_milter() {
    let milter = Milter::start("").await;

    let mut conn = milter.connect("192.0.2.10", "mail.example.com").await;
    send_until_body(
        &mut conn,
        "bounce-123@bounce.example.net",
        None,
        &Mail::example("newsletter.eml"),
    )
    .await;
    drop(conn);

    let mut garbage = tokio::net::TcpStream::connect(milter.addr).await.unwrap();
    garbage
        .write_all(b"\x00\x00\x00\x05Zjunk\xff\xff\xff\xffGET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    drop(garbage);

    // A command before negotiation, then an unknown one.
    let mut early = tokio::net::TcpStream::connect(milter.addr).await.unwrap();
    early
        .write_all(b"\x00\x00\x00\x01E\x00\x00\x00\x01Q")
        .await
        .unwrap();
    drop(early);

    let (actions, status) = newsletter(&milter, &Mail::example("newsletter.eml")).await;
    assert_eq!(status, Status::Accept);
    assert_eq!(actions, vec![insert(NEWSLETTER_AR)]);
    // The dropped message is not in flight: stop does not wait for it.
    tokio::time::timeout(std::time::Duration::from_secs(5), milter.stop())
        .await
        .expect("no message left in flight")
        .unwrap();
}

/// `dns_attempts = N` asks each question N times at most (issue 14, bug
/// 5). It once asked N + 1 times: hickory's `ResolverOpts::attempts`
/// counts the retries after the first try (hickory-net `RetryDnsHandle`).
#[tokio::test]
async fn dns_attempts_is_the_number_of_tries() {
    for attempts in [1, 2, 3] {
        let dns = test_dns::TestDns::start(&demo_zone()).await.unwrap();
        let text = config_text(dns.addr(), "")
            .replace("dns_attempts = 1", &format!("dns_attempts = {attempts}"))
            .replace("dns_timeout = 0.5", "dns_timeout = 0.2");
        let config = dmarc_milter::Config::parse(&text, "dmarc-milter.toml").unwrap();
        let verifier = config.verifier().unwrap();
        dns.set_fault("_dmarc.example.com", None, Fault::Timeout);
        let envelope = dmarc_verifier::Envelope::new(
            "198.51.100.200".parse().unwrap(),
            "unknown.example.net",
            "ceo@example.com",
        );
        let verdict = verifier.verify(&envelope, &example("forged.eml")).await;
        assert_eq!(verdict.dmarc.as_str(), "temperror");
        assert_eq!(
            dns.query_count("_dmarc.example.com"),
            attempts,
            "dns_attempts = {attempts}"
        );
    }
}
