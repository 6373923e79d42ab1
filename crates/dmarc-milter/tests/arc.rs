//! Indirect mail flows through the milter (issue 13): a list's message
//! sealed by a trusted sealer is accepted with the override in our header
//! and log line; our own ARC seal is added above our header, only to mail
//! we deliver, and dkimpy (an independent implementation) validates it; the
//! sealing key's permissions are checked at start.
//!
//! The chains are made by dkimpy with keys of this run
//! (`tools/arc_chains.py`); our sealing key by `openssl genpkey`.

#[path = "../../dmarc-verifier/tests/chains/mod.rs"]
mod chains;
mod common;

use chains::Chains;
use common::{finish, openssl_key, send_until_body, Capture, Mail, Milter, TempDir};
use indymilter_test::{EomAction, Status};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};
use test_dns::TestDns;

/// The chains' zone plus our sealing key at arc2026._domainkey.our.example.
struct Setup {
    milter: Milter,
    zone_file: PathBuf,
    _keys: TempDir,
}

async fn start(extra: &str) -> Setup {
    let keys = TempDir::new("arc-keys");
    let (key, record) = openssl_key(keys.path());
    let zone = format!(
        "{}\narc2026._domainkey.our.example. 300 IN TXT {record}\n",
        Chains::get().zone()
    );
    let zone_file = keys.path().join("zone");
    std::fs::write(&zone_file, &zone).unwrap();
    let dns = TestDns::start(&zone).await.expect("test DNS");
    let milter = Milter::start_with_dns(
        dns,
        &format!(
            "{extra}\n[arc_seal]\ndomain = \"our.example\"\nselector = \"arc2026\"\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .await;
    Setup {
        milter,
        zone_file,
        _keys: keys,
    }
}

/// A scenario relayed by the list's host, with queue id `queue_id`.
async fn relay(milter: &Milter, scenario: &str, queue_id: &str) -> (Mail, Vec<EomAction>, Status) {
    let mail = Mail::parse(&Chains::get().message(scenario));
    let mut conn = milter
        .connect("198.51.100.7", "mail.lists.example.org")
        .await;
    send_until_body(&mut conn, "dev-bounces@lists.example.org", None, &mail).await;
    let (actions, status) = finish(&mut conn, &mail, queue_id).await;
    (mail, actions.actions, status)
}

/// The inserted fields, in the order they were inserted, as (name, value).
fn inserted(actions: &[EomAction]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            EomAction::InsertHeader {
                index: 0,
                name,
                value,
            } => Some((
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// The message as the MTA delivers it: the inserted fields on top (each
/// inserted at index 0, so the last one first), then the received fields
/// and body. Values carry their leading space (the leading-space option).
fn delivered(mail: &Mail, actions: &[EomAction]) -> Vec<u8> {
    let mut out = String::new();
    for (name, value) in inserted(actions).iter().rev() {
        out.push_str(&format!("{name}:{}\r\n", value.replace('\n', "\r\n")));
    }
    for (name, value) in &mail.headers {
        out.push_str(&format!("{name}:{}\r\n", value.replace('\n', "\r\n")));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&mail.body);
    bytes
}

/// The log lines of the whole test binary, in the daemon's format: one
/// global subscriber (a per-test default on one thread races with the
/// tests running on others over tracing's per-callsite interest, which
/// could leave the message span, and so the queue id, out).
fn log() -> Capture {
    static LOG: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(capture.subscriber()).expect("one subscriber");
        capture
    })
    .clone()
}

#[tokio::test]
async fn a_trusted_sealers_list_mail_is_accepted_sealed_and_logged() {
    if !chains::available() {
        return;
    }
    let capture = log();
    let setup = start("trusted_arc_sealers = [\"lists.example.org\"]").await;
    let (mail, actions, status) = relay(&setup.milter, "list-trusted", "4XARCOK").await;
    assert_eq!(status, Status::Accept);
    let fields = inserted(&actions);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    // Our A-R first, then our set above it, ARC-Seal last (on top).
    assert_eq!(
        names,
        [
            "Authentication-Results",
            "ARC-Authentication-Results",
            "ARC-Message-Signature",
            "ARC-Seal"
        ],
        "{actions:#?}"
    );
    let ours = &fields[0].1;
    assert!(
        ours.contains("\n\tarc=pass header.oldest-pass=0 smtp.remote-ip=198.51.100.7;\n\tdmarc=fail (p=reject sp=reject dis=none override=trusted_forwarder: arc=pass i=1 sealer=lists.example.org)"),
        "{ours}"
    );
    assert!(
        fields[3]
            .1
            .starts_with(" i=2; a=rsa-sha256; s=arc2026; d=our.example; cv=pass;"),
        "{}",
        fields[3].1
    );
    assert!(
        fields[1]
            .1
            .starts_with(" i=2;\n\tmx.test.example;\n\tspf=fail"),
        "{}",
        fields[1].1
    );
    // No CR reaches the MTA: the milter protocol separates lines with LF.
    assert!(fields.iter().all(|(_, v)| !v.contains('\r')));

    // dkimpy validates the chain the next hop receives, our set included.
    let chains = Chains::get();
    let dkimpy: serde_json::Value =
        serde_json::from_str(&chains.dkimpy_verify(&setup.zone_file, &delivered(&mail, &actions)))
            .unwrap();
    assert_eq!(dkimpy["cv"], "pass", "{dkimpy}");
    assert_eq!(dkimpy["instances"][0]["d"], "our.example", "{dkimpy}");
    assert_eq!(dkimpy["instances"][0]["ams"], true, "{dkimpy}");

    // The verdict line carries the chain and the override with its comment.
    let text = capture.text();
    let line = text
        .lines()
        .find(|l| l.contains("queue_id=4XARCOK") && l.contains("verdict"))
        .unwrap_or_else(|| panic!("no verdict line:\n{text}"));
    for part in [
        "dmarc=fail",
        "disposition=accept",
        "arc=pass",
        "override_reason=trusted_forwarder",
        "override_comment=\"arc=pass i=1 sealer=lists.example.org\"",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    setup.milter.stop().await.unwrap();
}

#[tokio::test]
async fn refused_mail_is_never_sealed_and_held_mail_is() {
    if !chains::available() {
        return;
    }
    let setup = start("trusted_arc_sealers = [\"lists.example.org\"]").await;
    // A forged AAR under the trusted name, sealed by someone else.
    let (_, actions, status) = relay(&setup.milter, "forged-aar", "4XARCREJ").await;
    assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    assert_eq!(actions, vec![]);

    // Authenticated list mail is quarantined (held): delivered, so sealed.
    let (mail, actions, status) = relay(&setup.milter, "list-dkim", "4XARCHOLD").await;
    assert_eq!(status, Status::Accept);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, EomAction::Quarantine { .. })),
        "{actions:#?}"
    );
    let fields = inserted(&actions);
    assert_eq!(fields.len(), 4, "{actions:#?}");
    assert!(fields[0]
        .1
        .contains("override=mailing_list: list-id=dev.lists.example.org"));
    assert!(fields[3].1.contains("i=1;") && fields[3].1.contains("cv=none"));
    let dkimpy: serde_json::Value = serde_json::from_str(
        &Chains::get().dkimpy_verify(&setup.zone_file, &delivered(&mail, &actions)),
    )
    .unwrap();
    assert_eq!(dkimpy["cv"], "pass", "{dkimpy}");

    // A chain whose newest seal says cv=fail is delivered unsealed.
    let (_, actions, _) = relay(&setup.milter, "cv-fail", "4XARCCVF").await;
    assert!(
        inserted(&actions)
            .iter()
            .all(|(n, _)| !n.starts_with("ARC-")),
        "{actions:#?}"
    );
    setup.milter.stop().await.unwrap();
}

#[test]
fn a_key_other_users_can_read_is_refused_without_showing_it() {
    if !chains::available() {
        return;
    }
    let dir = TempDir::new("arc-perm");
    let (key, _) = openssl_key(dir.path());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("dmarc-milter.toml");
    std::fs::write(
        &config,
        format!(
            "[arc_seal]\ndomain = \"our.example\"\nselector = \"arc2026\"\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    let check = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_dmarc-milter"))
            .arg("--config")
            .arg(config)
            .arg("--check-config")
            .output()
            .expect("dmarc-milter runs")
    };
    let output = check(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("mode 0644"), "{stderr}");
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    let pem = std::fs::read_to_string(&key).unwrap();
    let secret_line = pem.lines().nth(1).unwrap();
    assert!(!stderr.contains(secret_line), "{stderr}");

    // 0640 (the milter's group) is fine, and so is 0600.
    for mode in [0o640, 0o600] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let output = check(&config);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{mode:o}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Not a key: refused, with no content shown.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let output = check(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("c2VjcmV0"), "{stderr}");
}

#[tokio::test]
async fn mail_not_checked_or_over_the_size_cap_is_not_sealed() {
    if !chains::available() {
        return;
    }
    let setup = start("trusted_arc_sealers = [\"lists.example.org\"]\nignore_hosts = [\"198.51.100.8\"]\nadd_header_to_skipped = true\nmax_message_size = \"64k\"").await;
    // An ignored client: delivered with our skip header only (asked for).
    let mail = Mail::parse(&Chains::get().message("list-trusted"));
    let mut conn = setup
        .milter
        .connect("198.51.100.8", "mail.lists.example.org")
        .await;
    send_until_body(&mut conn, "dev-bounces@lists.example.org", None, &mail).await;
    let (actions, status) = finish(&mut conn, &mail, "4XARCSKIP").await;
    assert_eq!(status, Status::Accept);
    let names: Vec<String> = inserted(&actions.actions)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["Authentication-Results"], "{actions:#?}");

    // Over max_message_size: the body was not kept, nothing to seal.
    let mut big = Mail::parse(&Chains::get().message("list-trusted"));
    big.body.extend(std::iter::repeat_n(b'x', 70 * 1024));
    big.body.extend_from_slice(b"\r\n");
    let mut conn = setup
        .milter
        .connect("198.51.100.7", "mail.lists.example.org")
        .await;
    send_until_body(&mut conn, "dev-bounces@lists.example.org", None, &big).await;
    let (actions, status) = finish(&mut conn, &big, "4XARCBIG").await;
    assert_eq!(status, Status::Accept);
    let names: Vec<String> = inserted(&actions.actions)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["Authentication-Results"], "{actions:#?}");
    setup.milter.stop().await.unwrap();
}
