//! `dmarc-check` as a process, the way a postmaster runs it, against the
//! configuration of a milter started here (DNS from the demo zone on
//! test-dns). Each scenario sends the same message through the running
//! milter over the milter protocol and checks that `dmarc-check` reports
//! exactly what the milter did: the headers deleted, the header inserted,
//! the action and the SMTP reply.

mod common;

use common::*;
use indymilter_test::{EomAction, Status};
use serde_json::Value;
use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

const BIN: &str = env!("CARGO_BIN_EXE_dmarc-check");

/// One run: exit code, stdout, stderr.
fn dmarc_check(config: &Path, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["--mta-name", MTA_NAME])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(repo())
        .spawn()
        .expect("run dmarc-check");
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes).expect("stdin");
    }
    let out = child.wait_with_output().expect("dmarc-check output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A completed run's JSON.
fn run_json(config: &Path, args: &[&str], stdin: Option<&[u8]>) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = dmarc_check(config, &all, stdin);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    serde_json::from_str(&out).expect("one JSON object")
}

/// What the milter did, in dmarc-check's JSON terms: the indices deleted,
/// our header (as Postfix writes it), the action and the SMTP reply.
fn milter_terms(actions: &[EomAction], status: &Status) -> Value {
    let mut delete = Vec::new();
    let mut header = Value::Null;
    let mut action = "accept";
    for a in actions {
        match a {
            EomAction::DeleteHeader { index, .. } => delete.push(Value::from(*index)),
            EomAction::InsertHeader {
                index: 0,
                name,
                value,
            } => {
                header = Value::from(format!(
                    "{}:{}",
                    name.to_string_lossy(),
                    value.to_string_lossy()
                ));
            }
            EomAction::Quarantine { .. } => action = "quarantine",
            other => panic!("unexpected action {other:?}"),
        }
    }
    let reply = match status {
        Status::Reject { .. } => {
            action = "reject";
            Value::from(reply_text(status))
        }
        Status::Tempfail { .. } => {
            action = "tempfail";
            Value::from(reply_text(status))
        }
        _ => Value::Null,
    };
    serde_json::json!({
        "delete": delete,
        "authentication_results": header,
        "action": action,
        "smtp_reply": reply,
    })
}

fn dmarc_check_terms(json: &Value) -> Value {
    serde_json::json!({
        "delete": json["delete"],
        "authentication_results": json["authentication_results"],
        "action": json["action"],
        "smtp_reply": json["smtp_reply"],
    })
}

/// The forged message (p=reject): the same 550 as the milter's, in text
/// and JSON, with the verdict and the envelope read from the message.
#[tokio::test]
async fn a_forgery_is_rejected_as_the_milter_rejects_it() {
    let milter = Milter::start("").await;
    let (actions, status) = forged(
        &milter,
        "198.51.100.200",
        None,
        &Mail::example("forged.eml"),
    )
    .await;
    let json = run_json(&milter.config_path, &["examples/data/forged.eml"], None);
    assert_eq!(dmarc_check_terms(&json), milter_terms(&actions, &status));
    assert_eq!(
        json["smtp_reply"],
        "550 5.7.1 DMARC policy of example.com rejects this message"
    );
    assert_eq!(json["verdict"]["dmarc"], "fail");
    assert_eq!(json["inferred"]["client_ip"], "Received");
    assert_eq!(json["envelope"]["mail_from"], "ceo@example.com");

    let (code, out, err) = dmarc_check(&milter.config_path, &["examples/data/forged.eml"], None);
    assert_eq!((code, err.as_str()), (0, ""));
    let lines: Vec<&str> = out.lines().take(3).collect();
    assert_eq!(
        lines,
        [
            "Action: reject: 550 5.7.1 DMARC policy of example.com rejects this message",
            "Verdict: from=example.com spf=fail dkim=none dmarc=fail",
            "Changes no header: the message is refused",
        ],
        "{out}"
    );
    milter.stop().await.unwrap();
}

/// A passing newsletter carrying a forged header of ours: deleted, ours
/// inserted, byte for byte what the milter sends Postfix; read from stdin.
#[tokio::test]
async fn forged_headers_are_deleted_and_ours_inserted_as_the_milter_does() {
    let milter = Milter::start("").await;
    let forged_ar = " mx.test.example; dmarc=pass header.from=example.com";
    let mail = Mail::example("newsletter.eml")
        .prepend("Authentication-Results", " other.example; spf=pass")
        .prepend("Authentication-Results", forged_ar);
    let (actions, status) = newsletter(&milter, &mail).await;
    let raw = format!(
        "Authentication-Results:{forged_ar}\nAuthentication-Results: other.example; spf=pass\n{}",
        String::from_utf8(example("newsletter.eml")).unwrap()
    );
    let json = run_json(&milter.config_path, &["-"], Some(raw.as_bytes()));
    assert_eq!(dmarc_check_terms(&json), milter_terms(&actions, &status));
    assert_eq!(json["delete"], serde_json::json!([1]));
    assert_eq!(json["file"], "<stdin>");
    milter.stop().await.unwrap();
}

/// sp=quarantine: held with the milter's reason; in dry run accepted with
/// what the policy wanted.
#[tokio::test]
async fn quarantine_and_dry_run() {
    let milter = Milter::start("").await;
    let mail = Mail::example("subdomain.eml");
    let mut conn = milter
        .connect("198.51.100.77", "smtp.billing.example.com")
        .await;
    let (eom, status) = send(&mut conn, "billing@billing.example.com", None, &mail).await;
    let json_hold = run_json(&milter.config_path, &["examples/data/subdomain.eml"], None);
    assert_eq!(
        dmarc_check_terms(&json_hold),
        milter_terms(&eom.actions, &status)
    );
    assert_eq!(
        json_hold["quarantine_reason"],
        "DMARC policy of billing.example.com quarantines this message"
    );
    milter.stop().await.unwrap();

    let milter = Milter::start("dry_run = true").await;
    let (code, out, _) = dmarc_check(&milter.config_path, &["examples/data/forged.eml"], None);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Action: accept (dry run: the policy asks for reject)\n"),
        "{out}"
    );
    let json = run_json(&milter.config_path, &["examples/data/forged.eml"], None);
    assert_eq!(
        (json["action"].as_str(), json["wanted"].as_str()),
        (Some("accept"), Some("reject"))
    );
    milter.stop().await.unwrap();
}

/// Skips: an authenticated client or a client named in ignore_hosts is not
/// checked and gets no header (add_header_to_skipped = false), but forged
/// headers are still deleted.
#[tokio::test]
async fn skipped_clients_get_no_header_but_are_cleaned() {
    let milter = Milter::start("ignore_hosts = [\"relay.example.net\"]").await;
    let forged_ar = " mx.test.example; dmarc=pass";
    let mail = Mail::example("forged.eml").prepend("Authentication-Results", forged_ar);
    let (actions, status) = forged(&milter, "198.51.100.200", Some("ceo"), &mail).await;
    let raw = format!(
        "Authentication-Results:{forged_ar}\n{}",
        String::from_utf8(example("forged.eml")).unwrap()
    );
    let json = run_json(
        &milter.config_path,
        &["--auth-user", "ceo", "-"],
        Some(raw.as_bytes()),
    );
    assert_eq!(dmarc_check_terms(&json), milter_terms(&actions, &status));
    assert_eq!(json["skipped"], "authenticated submission");
    assert_eq!(json["authentication_results"], Value::Null);

    let mut conn = milter
        .connect_named("198.51.100.200", "relay.example.net", "relay.example.net")
        .await;
    let (eom, status) = send(&mut conn, "ceo@example.com", None, &mail).await;
    let json = run_json(
        &milter.config_path,
        &["--client-name", "relay.example.net", "-"],
        Some(raw.as_bytes()),
    );
    assert_eq!(
        dmarc_check_terms(&json),
        milter_terms(&eom.actions, &status)
    );
    assert_eq!(json["skipped"], "ignored client");
    milter.stop().await.unwrap();
}

/// --explain adds the decision trail; the envelope options win over the
/// headers.
#[tokio::test]
async fn explain_and_envelope_options() {
    let milter = Milter::start("").await;
    let (code, out, err) = dmarc_check(
        &milter.config_path,
        &[
            "--explain",
            "--client-ip",
            "192.0.2.10",
            "--helo",
            "mail.example.com",
            "--mail-from",
            "ceo@example.com",
            "examples/data/forged.eml",
        ],
        None,
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.contains("Client IP:   192.0.2.10 (given on the command line)"),
        "{out}"
    );
    // 192.0.2.10 is in example.com's SPF: aligned SPF passes.
    assert!(
        out.starts_with("Action: accept\nVerdict: from=example.com spf=pass"),
        "{out}"
    );
    let trail = out.split("Decision trail:\n").nth(1).expect("a trail");
    assert!(trail.contains("_dmarc.example.com"), "{out}");
    milter.stop().await.unwrap();
}

/// Errors: a refused configuration and an input that is not a message
/// exit 2 with one line naming the file.
#[test]
fn errors_exit_2_naming_the_file() {
    let dir = TempDir::new("dmarc-check-errors");
    let config = dir.path().join("dmarc-milter.toml");
    std::fs::write(&config, "\n\ndry_run = \"maybe\"\n").unwrap();
    let (code, out, err) = dmarc_check(&config, &["examples/data/forged.eml"], None);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err.trim(),
        format!(
            "dmarc-check: {} line 3: invalid value \"maybe\" for dry_run (expected true or false)",
            config.display()
        )
    );

    std::fs::write(&config, "").unwrap();
    let (code, _, err) = dmarc_check(&config, &["-"], Some(b"\nnot a message\n"));
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "dmarc-check: <stdin>: not a mail message: no header section (line 1 is blank)"
    );
    let (code, _, err) = dmarc_check(&config, &["--client-ip", "x", "-"], None);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = dmarc_check(&dir.path().join("missing.toml"), &["-"], None);
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml: cannot read the file"), "{err}");
}
