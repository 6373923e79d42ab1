//! Zone-file parsing (`dns::zone::Zone::parse`) and lookups.
//!
//! Checks: no panic and no hang; every record of a parsed zone is found by
//! a lookup of its own name and type (directly, at the end of a CNAME
//! chain, or the name has a CNAME loop); names around each record
//! (parent, child, `_dmarc.`, a wildcard match) answer without panicking;
//! SOA and negative TTL are consistent.
#![no_main]

use dmarc_verifier::dns::zone::{RecordType, Zone, ZoneAnswer};
use libfuzzer_sys::fuzz_target;

const TYPES: [RecordType; 6] = [
    RecordType::A,
    RecordType::Aaaa,
    RecordType::Txt,
    RecordType::Mx,
    RecordType::Cname,
    RecordType::Soa,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let origin = (first & 1 == 1).then_some("example.com.");
    let Ok(zone) = Zone::parse(&text, origin) else {
        return;
    };
    assert_eq!(zone.is_empty(), zone.records().next().is_none());
    for record in zone.records().take(64) {
        let rtype = record.data.record_type();
        match zone.lookup(&record.name, rtype) {
            ZoneAnswer::Records { records, chain } => {
                if chain.is_empty() {
                    assert!(
                        records.iter().any(|r| r.data == record.data),
                        "{record:?} not answered"
                    );
                }
                let _ = records;
            }
            other => {
                // Only a CNAME at the name can hide the record type asked.
                assert!(!other.chain().is_empty(), "{record:?} answered {other:?}");
            }
        }
        let name = record.name.as_str();
        for probe in [
            format!("_dmarc.{name}"),
            format!("x.{name}"),
            name.split_once('.')
                .map(|(_, p)| p.to_string())
                .unwrap_or_default(),
            format!("{}.", name.to_ascii_uppercase()),
        ] {
            for rtype in TYPES {
                let answer = zone.lookup(&probe, rtype);
                let _ = answer.final_name(&probe);
            }
            if let Some(soa) = zone.soa(&probe) {
                assert_eq!(soa.data.record_type(), RecordType::Soa);
                assert!(zone.negative_ttl(&probe).is_some());
            }
        }
    }
});
