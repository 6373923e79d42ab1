//! The RFC 7208 suite's cases as data: reading a suite file from
//! `$DMARC_CONFORMANCE_DIR`, a case's DNS entries as zone records and
//! faults, and the records as zone text. Shared by `spf_engine.rs` (the
//! engine over a `Zone`) and the workspace's `tests/check_eml_spf.rs`
//! (check-eml as a process), through `#[path]`.

#![allow(dead_code)]

use dmarc_verifier::dns::zone::{canonical_name, RecordData, RecordType, ZoneRecord};
use serde_json::Value;
use std::path::PathBuf;

/// The cases of one suite file, or `None` (with a loud message) when the
/// variable is unset. Set but unreadable is a failure.
pub fn suite(file: &str) -> Option<Vec<Value>> {
    let Some(dir) = std::env::var_os("DMARC_CONFORMANCE_DIR") else {
        eprintln!(
            "\n*** SKIPPED the SPF engine over {file}: DMARC_CONFORMANCE_DIR is not set \
             (.ci/run sets it to ../shared/conformance) ***\n"
        );
        return None;
    };
    let path = PathBuf::from(dir).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "DMARC_CONFORMANCE_DIR is set but {} cannot be read: {e}",
            path.display()
        )
    });
    Some(
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("a JSON case per line"))
            .collect(),
    )
}

pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A failure the suite asks for: (name, type, `"timeout"` or `"SERVFAIL"`).
pub type Fault = (String, RecordType, &'static str);

/// The records and faults of a case's `dns` list (see the conformance
/// README: `TIMEOUT` without `for_type` fails every type not listed before
/// it at the name; `NONE` is a name with no record of any type asked; type
/// SPF is ignored, as RFC 7208 clients do).
pub fn records_of(dns: &[Value]) -> (Vec<ZoneRecord>, Vec<Fault>) {
    let mut records = Vec::new();
    let mut faults = Vec::new();
    for entry in dns {
        let name = str_of(entry, "name").trim_end_matches('.').to_lowercase();
        let value = entry.get("value").cloned().unwrap_or(Value::Null);
        let text = value.as_str().unwrap_or_default();
        let data = match str_of(entry, "type") {
            "TXT" => Some(RecordData::Txt(match &value {
                Value::Array(parts) => parts
                    .iter()
                    .map(|part| part.as_str().unwrap_or_default().as_bytes().to_vec())
                    .collect(),
                _ => vec![text.as_bytes().to_vec()],
            })),
            "A" => Some(RecordData::A(text.parse().expect("A"))),
            "AAAA" => Some(RecordData::Aaaa(text.parse().expect("AAAA"))),
            "PTR" => Some(RecordData::Ptr(text.to_string())),
            "CNAME" => Some(RecordData::Cname(text.to_string())),
            "MX" => {
                let (preference, exchange) = text.split_once(' ').expect("MX");
                Some(RecordData::Mx {
                    preference: preference.parse().expect("MX preference"),
                    exchange: exchange.to_string(),
                })
            }
            "NONE" => Some(RecordData::Ns("none.invalid".to_string())),
            "TIMEOUT" | "SERVFAIL" => {
                let what = if str_of(entry, "type") == "TIMEOUT" {
                    "timeout"
                } else {
                    "SERVFAIL"
                };
                let only: Option<RecordType> = entry
                    .get("for_type")
                    .and_then(Value::as_str)
                    .map(|t| t.parse().expect("for_type"));
                for rtype in [
                    RecordType::A,
                    RecordType::Aaaa,
                    RecordType::Mx,
                    RecordType::Ptr,
                    RecordType::Txt,
                ] {
                    let listed = records
                        .iter()
                        .any(|r: &ZoneRecord| r.name == name && r.data.record_type() == rtype);
                    if only.map_or(!listed || what == "SERVFAIL", |only| only == rtype) {
                        faults.push((name.clone(), rtype, what));
                    }
                }
                None
            }
            _ => None,
        };
        if let Some(data) = data {
            records.push(ZoneRecord {
                name: name.clone(),
                ttl: 300,
                data,
            });
        }
    }
    (records, faults)
}

/// The records as zone text: every name absolute and escaped as the zone
/// writes it, TXT strings quoted with `\"`, `\\` and `\DDD` escapes.
pub fn zone_text(records: &[ZoneRecord]) -> String {
    let name = |text: &str| {
        let text = text.strip_suffix('.').unwrap_or(text);
        format!("{}.", canonical_name(text.split('.').map(str::as_bytes)))
    };
    let mut out = String::new();
    for record in records {
        let data = match &record.data {
            RecordData::Txt(strings) if strings.is_empty() => "TXT \"\"".to_string(),
            RecordData::Txt(strings) => {
                let quoted: Vec<String> = strings
                    .iter()
                    .map(|string| {
                        let mut quoted = String::from("\"");
                        for &octet in string {
                            match octet {
                                b'"' | b'\\' => {
                                    quoted.push('\\');
                                    quoted.push(char::from(octet));
                                }
                                0x20..=0x7e => quoted.push(char::from(octet)),
                                _ => quoted.push_str(&format!("\\{octet:03}")),
                            }
                        }
                        quoted.push('"');
                        quoted
                    })
                    .collect();
                format!("TXT {}", quoted.join(" "))
            }
            RecordData::A(address) => format!("A {address}"),
            RecordData::Aaaa(address) => format!("AAAA {address}"),
            RecordData::Ptr(target) => format!("PTR {}", name(target)),
            RecordData::Cname(target) => format!("CNAME {}", name(target)),
            RecordData::Mx {
                preference,
                exchange,
            } => format!("MX {preference} {}", name(exchange)),
            RecordData::Ns(target) => format!("NS {}", name(target)),
            RecordData::Soa { .. } => unreachable!("no SOA in the suite"),
        };
        out.push_str(&format!("{} 300 IN {data}\n", name(&record.name)));
    }
    out
}
