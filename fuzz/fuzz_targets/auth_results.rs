//! Authentication-Results parsing (`auth_results::{parse,
//! claims_authserv_id}`) and, the other way round, that what we write
//! cannot be read as something else.
//!
//! Input: the first byte picks the mode.
//! - Parsing: the rest is a header value. No panic; a value that parses
//!   with authserv-id X claims X; a value claiming ours must be deleted.
//! - Writing: the rest, split on NUL, gives an authserv-id, a DKIM `d=`,
//!   `s=`, `b=` prefix and a reason, all hostile. The header we build must
//!   parse, with exactly the results we wrote (a value cannot add a
//!   result, a property or a field) and the values we put in.
#![no_main]

use dmarc_verifier::{
    auth_results::{self, claims_authserv_id, parse, AuthResults},
    DkimCheck, DkimResult,
};
use libfuzzer_sys::fuzz_target;

const OURS: &str = "mx.example.net";

/// What our quoting keeps of a value: controls become spaces; the header
/// is ASCII, so `§` becomes `section ` and other non-ASCII `?`.
fn cleaned(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            c if c.is_control() => out.push(' '),
            c if c.is_ascii() => out.push(c),
            '§' => out.push_str("section "),
            _ => out.push('?'),
        }
    }
    out
}

fn check_parse(text: &str) {
    // Must not panic whatever the text.
    let _ = claims_authserv_id(text, OURS);
    if let Ok(parsed) = parse(text) {
        if !parsed.authserv_id.is_empty() {
            assert!(
                claims_authserv_id(text, &parsed.authserv_id),
                "parsed id {:?} not claimed",
                parsed.authserv_id
            );
        }
        for info in &parsed.results {
            assert!(!info.method.is_empty() && !info.result.is_empty());
        }
    }
}

fn check_format(parts: &[&str]) {
    let get = |i: usize| parts.get(i).copied().unwrap_or("");
    // Our authserv-id comes from the configuration, which only accepts a
    // host name; the fuzzer gets the rest (part 0 is unused).
    let id = OURS;
    let check = DkimCheck {
        result: DkimResult::Fail,
        domain: get(1).to_string(),
        selector: get(2).to_string(),
        algorithm: "rsa-sha256".to_string(),
        key_bits: None,
        b_prefix: get(3).to_string(),
        reason: Some(get(4).to_string()),
        body_hash: None,
    };
    let mut ar = AuthResults::new(id);
    ar.push(auth_results::dkim_resinfo(&check));
    ar.push(auth_results::dmarc_error_resinfo("permerror", get(5)));
    let value = ar.value();
    let parsed =
        parse(&value).unwrap_or_else(|e| panic!("our header {value:?} does not parse: {e}"));
    assert_eq!(parsed.authserv_id, id);
    assert!(value.is_ascii(), "{value:?}");
    assert!(claims_authserv_id(&value, id));
    assert_eq!(parsed.results.len(), 2, "{value:?}");
    let dkim = &parsed.results[0];
    assert_eq!(
        (dkim.method.as_str(), dkim.result.as_str()),
        ("dkim", "fail")
    );
    assert_eq!(
        dkim.reason.as_deref(),
        Some(cleaned(get(4)).as_str()),
        "{value:?}"
    );
    let expected: Vec<(&str, String)> = [("d", get(1)), ("s", get(2)), ("b", get(3))]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(p, v)| (p, cleaned(v)))
        .collect();
    let got: Vec<(&str, String)> = dkim
        .props
        .iter()
        .map(|p| {
            assert_eq!(p.ptype, "header");
            (p.property.as_str(), p.value.clone())
        })
        .collect();
    assert_eq!(got, expected, "{value:?}");
    let dmarc = &parsed.results[1];
    assert_eq!(
        (dmarc.method.as_str(), dmarc.result.as_str()),
        ("dmarc", "permerror")
    );
    assert_eq!(dmarc.reason.as_deref(), Some(cleaned(get(5)).as_str()));
    assert!(dmarc.props.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if mode & 1 == 0 {
        check_parse(&text);
    } else {
        let parts: Vec<&str> = text.split('\0').collect();
        check_format(&parts);
    }
});
