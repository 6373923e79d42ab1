//! The external checkers the report tests use: `xmllint` (the RFC 9990 XSD
//! from `DMARC_CONFORMANCE_DIR`), Python's `email` module and `parsedmarc`.
//!
//! A missing tool or an unset `DMARC_CONFORMANCE_DIR` skips the check with a
//! printed message, unless `DMARC_REPORT_TOOLS=require`, which makes it a
//! failure. Install on Debian: `apt-get install -y libxml2-utils python3`
//! and `pip install parsedmarc`.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Whether missing tools fail the test instead of skipping the check.
pub fn required() -> bool {
    std::env::var("DMARC_REPORT_TOOLS").is_ok_and(|value| value == "require")
}

fn skip(what: &str) {
    if required() {
        panic!("{what}, and DMARC_REPORT_TOOLS=require");
    }
    eprintln!("SKIPPED: {what} (set DMARC_REPORT_TOOLS=require to make this a failure)");
}

/// The RFC 9990 XSD, or `None` (after saying why) when
/// `DMARC_CONFORMANCE_DIR` is unset or lacks it.
pub fn rfc9990_xsd() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("DMARC_CONFORMANCE_DIR") else {
        skip("DMARC_CONFORMANCE_DIR is unset: no XSD to validate against");
        return None;
    };
    let xsd = Path::new(&dir).join("rfc9990-dmarc-xml-0.2.xsd");
    if !xsd.is_file() {
        skip(&format!("{} does not exist", xsd.display()));
        return None;
    }
    Some(xsd)
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Validates `xml` against the RFC 9990 XSD with `xmllint`; returns false
/// (after saying why) when the check cannot run.
pub fn validate_rfc9990(dir: &Path, name: &str, xml: &str) -> bool {
    let Some(xsd) = rfc9990_xsd() else {
        return false;
    };
    if !runs("xmllint", &["--version"]) {
        skip("xmllint is not installed (Debian: apt-get install -y libxml2-utils)");
        return false;
    }
    let path = dir.join(name);
    std::fs::write(&path, xml).unwrap();
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name} does not validate against the RFC 9990 XSD:\n{}\n{xml}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// Checks that `xml` is well-formed XML with `xmllint` (no schema).
pub fn well_formed(dir: &Path, name: &str, xml: &str) -> bool {
    if !runs("xmllint", &["--version"]) {
        skip("xmllint is not installed (Debian: apt-get install -y libxml2-utils)");
        return false;
    }
    let path = dir.join(name);
    std::fs::write(&path, xml).unwrap();
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name} is not well-formed:\n{}\n{xml}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// Runs a Python script with `args`; its standard output is JSON. `None`
/// (after saying why) when python3, or a module the script needs, is
/// missing.
pub fn python(script: &str, modules: &[&str], args: &[&Path]) -> Option<serde_json::Value> {
    if !runs("python3", &["--version"]) {
        skip("python3 is not installed");
        return None;
    }
    for module in modules {
        if !runs("python3", &["-c", &format!("import {module}")]) {
            skip(&format!(
                "the Python module {module} is missing (pip install {module})"
            ));
            return None;
        }
    }
    let output = Command::new("python3")
        .env("TZ", "UTC")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "python printed no JSON ({error}):\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        }),
    )
}

/// Parses a report file (`.xml.gz`, `.xml`, or a whole `.eml`) with
/// parsedmarc, offline; prints `{"report_type": ..., "report": ...}`.
pub const PARSEDMARC: &str = r#"
import json, sys, logging
logging.disable(logging.CRITICAL)
import parsedmarc
result = parsedmarc.parse_report_file(sys.argv[1], offline=True, always_use_local_files=True)
print(json.dumps(result, default=str))
"#;

/// Parses a whole message with Python's `email` module (strict default
/// policy) and prints its structure: the top-level headers, the defects,
/// and for every leaf part its content type, headers, decoded payload
/// (latin-1 text) and, for `message/*` parts, the sub-message's headers.
pub const EMAIL_STRUCTURE: &str = r#"
import email, email.policy, json, sys
raw = open(sys.argv[1], "rb").read()
msg = email.message_from_bytes(raw, policy=email.policy.default)
def describe(part):
    out = {
        "content_type": part.get_content_type(),
        "params": dict(part.get_params() or []),
        "headers": [[k, str(v)] for k, v in part.items()],
        "defects": [type(d).__name__ for d in part.defects],
        "filename": part.get_filename(),
    }
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        out["parts"] = [describe(p) for p in part.get_payload()]
    elif part.get_content_maintype() == "message":
        sub = part.get_payload()[0]
        out["sub_headers"] = [[k, str(v)] for k, v in sub.items()]
        out["payload"] = sub.as_bytes().decode("latin-1")
    else:
        data = part.get_payload(decode=True) or b""
        out["payload"] = data.decode("latin-1")
    return out
print(json.dumps(describe(msg)))
"#;
