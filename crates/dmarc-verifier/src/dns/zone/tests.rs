// Tests may panic on what they set up themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// One record as `<name> <ttl> <type> <data>`, TXT strings quoted with
/// non-printable octets escaped, so that expectations read like zone text.
fn show(record: &ZoneRecord) -> String {
    let data = match &record.data {
        RecordData::A(address) => format!("A {address}"),
        RecordData::Aaaa(address) => format!("AAAA {address}"),
        RecordData::Cname(target) => format!("CNAME {target}"),
        RecordData::Mx {
            preference,
            exchange,
        } => format!("MX {preference} {exchange}"),
        RecordData::Ns(target) => format!("NS {target}"),
        RecordData::Ptr(target) => format!("PTR {target}"),
        RecordData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => format!("SOA {mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"),
        RecordData::Txt(strings) => {
            let strings: Vec<String> = strings
                .iter()
                .map(|string| format!("\"{}\"", string.escape_ascii()))
                .collect();
            format!("TXT {}", strings.join(" "))
        }
    };
    format!("{} {} {data}", record.name, record.ttl)
}

fn show_all<'a>(records: impl IntoIterator<Item = &'a ZoneRecord>) -> Vec<String> {
    records.into_iter().map(show).collect()
}

#[test]
fn parses_zone_text() {
    let long = "x".repeat(300);
    let exactly_255 = "y".repeat(255);
    let long_record = format!("long TXT \"{long}\"\nfull TXT {exactly_255}\n");
    let long_expected = [
        format!(
            "long 3600 TXT \"{}\" \"{}\"",
            "x".repeat(255),
            "x".repeat(45)
        ),
        format!("full 3600 TXT \"{exactly_255}\""),
    ];
    let label_63 = "a".repeat(63);
    // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters.
    let name_253 = format!("{label_63}.{label_63}.{label_63}.{}", "b".repeat(61));
    let name_253_record = format!("{name_253}. A 192.0.2.1\n");
    let name_253_expected = [format!("{name_253} 3600 A 192.0.2.1")];

    let cases: Vec<(&str, Option<&str>, &str, Vec<String>)> = vec![
        (
            "absolute name, no TTL anywhere: 3600",
            None,
            "host.example.com. A 192.0.2.1\n",
            vec!["host.example.com 3600 A 192.0.2.1".into()],
        ),
        (
            "relative names and @ take the origin, names are lowercased",
            Some("Example.COM."),
            "@ A 192.0.2.1\nWWW CNAME @\nmail MX 10 MX1\nmx1.other.org. A 192.0.2.2\n",
            vec![
                "example.com 3600 A 192.0.2.1".into(),
                "www.example.com 3600 CNAME example.com".into(),
                "mail.example.com 3600 MX 10 mx1.example.com".into(),
                "mx1.other.org 3600 A 192.0.2.2".into(),
            ],
        ),
        (
            "origin without a trailing dot is absolute",
            Some("example.com"),
            "www A 192.0.2.1\n",
            vec!["www.example.com 3600 A 192.0.2.1".into()],
        ),
        (
            "relative names without origin are relative to the root",
            None,
            "example.com A 192.0.2.1\n",
            vec!["example.com 3600 A 192.0.2.1".into()],
        ),
        (
            "root origin written as a dot",
            Some("."),
            "@ NS a.root-servers.net.\n",
            vec![" 3600 NS a.root-servers.net".into()],
        ),
        (
            "owner omitted: a line starting with a blank reuses the previous owner",
            Some("example.com"),
            "host A 192.0.2.1\n AAAA 2001:db8::1\n\tTXT hello\n",
            vec![
                "host.example.com 3600 A 192.0.2.1".into(),
                "host.example.com 3600 AAAA 2001:db8::1".into(),
                "host.example.com 3600 TXT \"hello\"".into(),
            ],
        ),
        (
            "TTL and class in either order, class and type in any case",
            Some("example.com"),
            "a 60 IN A 192.0.2.1\nb in 61 a 192.0.2.2\nc 62 A 192.0.2.3\nd IN A 192.0.2.4\n",
            vec![
                "a.example.com 60 A 192.0.2.1".into(),
                "b.example.com 61 A 192.0.2.2".into(),
                "c.example.com 62 A 192.0.2.3".into(),
                // RFC 1035 §5.1: the last TTL written applies.
                "d.example.com 62 A 192.0.2.4".into(),
            ],
        ),
        (
            "$TTL is the default, an explicit TTL wins",
            Some("example.com"),
            "$TTL 300\na A 192.0.2.1\nb 30 A 192.0.2.2\nc A 192.0.2.3\n$ttl 1h\nd A 192.0.2.4\n",
            vec![
                "a.example.com 300 A 192.0.2.1".into(),
                "b.example.com 30 A 192.0.2.2".into(),
                "c.example.com 300 A 192.0.2.3".into(),
                "d.example.com 3600 A 192.0.2.4".into(),
            ],
        ),
        (
            "TTL units",
            Some("example.com"),
            "a 30s A 192.0.2.1\nb 2M A 192.0.2.1\nc 1h30m A 192.0.2.1\nd 1d A 192.0.2.1\ne 1W A 192.0.2.1\n",
            vec![
                "a.example.com 30 A 192.0.2.1".into(),
                "b.example.com 120 A 192.0.2.1".into(),
                "c.example.com 5400 A 192.0.2.1".into(),
                "d.example.com 86400 A 192.0.2.1".into(),
                "e.example.com 604800 A 192.0.2.1".into(),
            ],
        ),
        (
            "$ORIGIN absolute, then relative to the current origin",
            None,
            "$ORIGIN example.com.\na A 192.0.2.1\n$ORIGIN sub\nb A 192.0.2.2\n",
            vec![
                "a.example.com 3600 A 192.0.2.1".into(),
                "b.sub.example.com 3600 A 192.0.2.2".into(),
            ],
        ),
        (
            "parentheses span lines, with comments inside",
            Some("example.com"),
            "@ IN SOA ns.example.com. hostmaster.example.com. ( ; primary, contact\n\
             \t2024010101 ; serial\n\
             \t2h         ; refresh\n\
             \t15M        ; retry\n\
             \t2w         ; expire\n\
             \t300 )      ; minimum\n\
             www A 192.0.2.1\n",
            vec![
                "example.com 3600 SOA ns.example.com hostmaster.example.com 2024010101 7200 900 1209600 300".into(),
                "www.example.com 3600 A 192.0.2.1".into(),
            ],
        ),
        (
            "comments, blank lines, CRLF line ends",
            Some("example.com"),
            "; a comment line\r\n\r\n   ; an indented comment\r\na A 192.0.2.1 ; trailing\r\n\r\n",
            vec!["a.example.com 3600 A 192.0.2.1".into()],
        ),
        (
            "quoted strings: ';' and '(' are text, escapes decoded",
            Some("example.com"),
            "_dmarc TXT \"v=DMARC1; p=reject (strict)\"\n\
             esc TXT \"say \\\"hi\\\" \\\\ \\065\\000\\255\"\n",
            vec![
                "_dmarc.example.com 3600 TXT \"v=DMARC1; p=reject (strict)\"".into(),
                "esc.example.com 3600 TXT \"say \\\"hi\\\" \\\\ A\\x00\\xff\"".into(),
            ],
        ),
        (
            "several character-strings, quoted and unquoted words, empty string",
            Some("example.com"),
            "multi TXT \"v=spf1 \" \"-all\"\nwords TXT v=spf1 a\\;b \"\"\n",
            vec![
                "multi.example.com 3600 TXT \"v=spf1 \" \"-all\"".into(),
                "words.example.com 3600 TXT \"v=spf1\" \"a;b\" \"\"".into(),
            ],
        ),
        (
            "TXT in parentheses over several lines",
            Some("example.com"),
            "sel._domainkey TXT ( \"v=DKIM1; k=rsa; \"\n   \"p=MIIB\" )\n",
            vec!["sel._domainkey.example.com 3600 TXT \"v=DKIM1; k=rsa; \" \"p=MIIB\"".into()],
        ),
        (
            "strings longer than 255 octets are split, 255 octets are not",
            None,
            &long_record,
            long_expected.to_vec(),
        ),
        (
            "every record type",
            Some("example.com"),
            "@ NS ns1\n\
             ns1 A 192.0.2.53\n\
             ns1 AAAA 2001:DB8::53\n\
             @ MX 0 .\n\
             alias CNAME ns1.example.com.\n\
             1.2.0.192.in-addr.arpa. PTR ns1\n\
             @ TXT hello\n",
            vec![
                "example.com 3600 NS ns1.example.com".into(),
                "ns1.example.com 3600 A 192.0.2.53".into(),
                "ns1.example.com 3600 AAAA 2001:db8::53".into(),
                "example.com 3600 MX 0 ".into(),
                "alias.example.com 3600 CNAME ns1.example.com".into(),
                "1.2.0.192.in-addr.arpa 3600 PTR ns1.example.com".into(),
                "example.com 3600 TXT \"hello\"".into(),
            ],
        ),
        (
            "a repeated record is dropped (RFC 2181 §5)",
            Some("example.com"),
            "a A 192.0.2.1\na 60 A 192.0.2.1\na A 192.0.2.2\n",
            vec![
                "a.example.com 3600 A 192.0.2.1".into(),
                "a.example.com 60 A 192.0.2.2".into(),
            ],
        ),
        (
            "labels of 63 octets and names of 253 characters",
            None,
            &name_253_record,
            name_253_expected.to_vec(),
        ),
        (
            "wildcard and underscore names",
            Some("example.com"),
            "*.wild TXT w\n_spf TXT s\n",
            vec![
                "*.wild.example.com 3600 TXT \"w\"".into(),
                "_spf.example.com 3600 TXT \"s\"".into(),
            ],
        ),
        ("empty text", None, "", vec![]),
        ("only comments", None, "; nothing\n\n  ; here\n", vec![]),
    ];

    for (description, origin, text, expected) in cases {
        let zone = match Zone::parse(text, origin) {
            Ok(zone) => zone,
            Err(error) => panic!("{description}: {error}"),
        };
        assert_eq!(show_all(zone.records()), expected, "{description}");
        assert_eq!(zone.len(), expected.len(), "{description}");
        assert_eq!(zone.is_empty(), expected.is_empty(), "{description}");
    }
}

#[test]
fn rejects_bad_zone_text() {
    let label_64 = format!("{}.example.com. A 192.0.2.1\n", "a".repeat(64));
    // 63 + 1 + 63 + 1 + 63 + 1 + 62 = 254 characters.
    let name_254 = format!(
        "ok A 192.0.2.1\n{0}.{0}.{0}.{1}. A 192.0.2.1\n",
        "a".repeat(63),
        "b".repeat(62)
    );
    // 64 octets in 256 characters of text.
    let escaped_64 = format!("{}. A 192.0.2.1\n", "\\032".repeat(64));
    // 63 + 1 + 63 + 1 + 63 + 1 + 62 = 254 octets, the dots of the last
    // label escaped.
    let escaped_254 = format!(
        "{0}.{0}.{0}.{1}. A 192.0.2.1\n",
        "a".repeat(63),
        "b\\.".repeat(31)
    );
    let cases: Vec<(&str, &str, usize, &str)> = vec![
        (
            "$INCLUDE",
            "a. A 192.0.2.1\n$INCLUDE other.zone\n",
            2,
            "$INCLUDE is not supported",
        ),
        ("unknown directive", "$GENERATE 1-2 a A 1.2.3.4\n", 1, "unknown directive \"$GENERATE\""),
        ("$TTL without value", "$TTL\n", 1, "$TTL needs a TTL"),
        ("$ORIGIN with two names", "$ORIGIN a. b.\n", 1, "$ORIGIN takes only a domain name"),
        (
            "unknown record type",
            "a. A 192.0.2.1\na. SPF \"v=spf1\"\n",
            2,
            "unknown record type \"SPF\"",
        ),
        ("class other than IN", "a. CH TXT x\n", 1, "class \"CH\" is not supported (only IN)"),
        ("generic class", "a. CLASS3 TXT x\n", 1, "class \"CLASS3\" is not supported"),
        ("class twice", "a. IN IN A 192.0.2.1\n", 1, "class IN written twice"),
        ("TTL twice", "a. 1 2 A 192.0.2.1\n", 1, "TTL written twice"),
        ("TTL above 2^31-1", "a. 2147483648 A 192.0.2.1\n", 1, "out of range"),
        ("TTL with a bad unit", "a. 1x A 192.0.2.1\n", 1, "invalid time value \"1x\""),
        ("TTL with a trailing number", "a. 1h30 A 192.0.2.1\n", 1, "invalid time value \"1h30\""),
        ("huge TTL digits", "a. 99999999999999999999999 A 192.0.2.1\n", 1, "out of range"),
        ("label of 64 octets", &label_64, 1, "is longer than 63 octets"),
        ("name of 254 characters", &name_254, 2, "longer than 253 characters"),
        ("empty label", "a..b. A 192.0.2.1\n", 1, "empty label"),
        ("non-ASCII name", "bücher.example. A 192.0.2.1\n", 1, "invalid character 'ü'"),
        ("escape cut short in a name", "a\\03. A 192.0.2.1\n", 1, "three decimal digits"),
        ("\\DDD above 255 in a name", "a\\256. A 192.0.2.1\n", 1, "not an octet"),
        ("backslash ending a name", "a. CNAME b\\\n", 1, "'\\' at the end of a line"),
        ("non-ASCII after a backslash", "a\\ü. A 192.0.2.1\n", 1, "invalid character 'ü'"),
        ("label of 64 octets written with escapes", &escaped_64, 1, "is longer than 63 octets (64 octets)"),
        ("escaped name of 254 octets", &escaped_254, 1, "longer than 253 characters"),
        ("quoted name", "a. CNAME \"b.\"\n", 1, "expected a domain name, found the quoted string"),
        ("bad IPv4", "a. A 192.0.2.256\n", 1, "invalid IPv4 address: \"192.0.2.256\""),
        ("bad IPv6", "a. AAAA 2001:db8::g\n", 1, "invalid IPv6 address"),
        ("IPv6 in A", "a. A 2001:db8::1\n", 1, "invalid IPv4 address"),
        ("missing address", "a. A\n", 1, "A record needs an IPv4 address (1 field), found 0 fields"),
        ("extra field", "a. A 192.0.2.1\n  A 192.0.2.2 192.0.2.3\n", 2, "found 2 fields"),
        ("MX preference too large", "a. MX 65536 mx.\n", 1, "invalid MX preference"),
        ("MX without exchange", "a. MX 10\n", 1, "MX record needs a preference and a domain name"),
        (
            "SOA missing a field, error on the last line of the entry",
            "a. SOA ns. host. (\n 1 2 3\n 4 )\n",
            3,
            "SOA record needs mname, rname, serial, refresh, retry, expire and minimum (7 fields), found 6 fields",
        ),
        ("SOA bad serial", "a. SOA ns. host. x 1 2 3 4\n", 1, "invalid SOA serial"),
        ("SOA bad timer", "a. SOA ns. host. 1 1 2 3 4y\n", 1, "SOA minimum: invalid time value"),
        ("TXT without strings", "a. TXT\n", 1, "TXT record needs at least one character-string"),
        ("missing type", "a.\n", 1, "missing record type"),
        ("missing type after TTL", "a. 300 IN\n", 1, "missing record type"),
        ("quoted type", "a. \"A\" 192.0.2.1\n", 1, "expected a record type"),
        (
            "no previous owner",
            "; first\n  A 192.0.2.1\n",
            2,
            "no owner name",
        ),
        ("unclosed parenthesis", "a. A 192.0.2.1\nb. TXT ( x\ny\n", 2, "'(' is never closed"),
        ("unmatched ')'", "a. TXT x )\n", 1, "')' without a matching '('"),
        ("unterminated quote", "a. TXT \"abc\nb. A 192.0.2.1\n", 1, "quoted string not closed"),
        ("\\DDD with two digits", "a. TXT \"\\25x\"\n", 1, "three decimal digits"),
        ("\\DDD above 255", "a. TXT \"\\256\"\n", 1, "escape \\256 is not an octet"),
        ("backslash at the end of a line", "a. TXT abc\\\n", 1, "'\\' at the end of a line"),
        ("backslash at the end of the text", "a. TXT abc\\", 1, "'\\' at the end of a line"),
    ];

    for (description, text, line, message) in cases {
        let error = match Zone::parse(text, None) {
            Ok(zone) => panic!("{description}: parsed {:?}", show_all(zone.records())),
            Err(error) => error,
        };
        assert_eq!(error.line, line, "{description}: {error}");
        assert!(
            error.message.contains(message),
            "{description}: {:?} does not contain {message:?}",
            error.message
        );
        assert_eq!(error.path, None, "{description}");
    }
}

/// RFC 1035 §5.1: `\X` and `\DDD` write any octet of a label, a space or a
/// dot included (RFC 2181 §11); names are stored and matched in one
/// canonical text, whatever escapes the zone or the question used.
#[test]
fn names_with_escapes() {
    let zone = Zone::parse(
        "$ORIGIN ex\\097mple.\n\
         macro%percent\\032\\032space%20url-space A 192.0.2.1\n\
         a\\.b TXT dotted\n\
         back\\\\slash A 192.0.2.2\n\
         \\065BC A 192.0.2.3\n\
         caf\\195\\169 A 192.0.2.4\n\
         tab\\009 A 192.0.2.5\n\
         quote\\\"semi\\;paren\\( A 192.0.2.6\n\
         alias CNAME target\\ name.other.\n\
         mail MX 10 mx\\.1\n\
         target\\ name.other. A 192.0.2.7\n",
        None,
    )
    .unwrap();
    let names: Vec<&str> = zone.records().map(|record| record.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "macro%percent\\032\\032space%20url-space.example",
            "a\\.b.example",
            "back\\\\slash.example",
            "abc.example",
            "caf\\195\\169.example",
            "tab\\009.example",
            "quote\"semi;paren(.example",
            "alias.example",
            "mail.example",
            "target\\032name.other",
        ]
    );
    let found = |name: &str, rtype: RecordType| match zone.lookup(name, rtype) {
        ZoneAnswer::Records { records, .. } => show_all(&records),
        other => panic!("{name}: {other:?}"),
    };
    // A question with raw spaces, with other escapes, or in another case
    // finds the same name.
    for name in [
        "macro%percent  space%20url-space.example",
        "MACRO%PERCENT\\ \\032SPACE%20URL-SPACE.EXAMPLE.",
    ] {
        assert_eq!(
            found(name, RecordType::A),
            ["macro%percent\\032\\032space%20url-space.example 3600 A 192.0.2.1"],
            "{name}"
        );
    }
    // A dot inside a label is not a label separator.
    assert_eq!(found("a\\.b.example", RecordType::Txt).len(), 1);
    assert!(matches!(
        zone.lookup("a.b.example", RecordType::Txt),
        ZoneAnswer::NxDomain { .. }
    ));
    assert!(matches!(
        zone.lookup("b.example", RecordType::Txt),
        ZoneAnswer::NxDomain { .. }
    ));
    assert_eq!(found("abc.example", RecordType::A).len(), 1);
    assert_eq!(found("caf\\195\\169.example", RecordType::A).len(), 1);
    assert_eq!(found("tab\t.example", RecordType::A).len(), 1);
    // The names in the data are canonical too, and CNAMEs follow them.
    assert_eq!(
        found("alias.example", RecordType::A),
        ["target\\032name.other 3600 A 192.0.2.7"]
    );
    assert_eq!(
        found("mail.example", RecordType::Mx),
        ["mail.example 3600 MX 10 mx\\.1.example"]
    );
}

#[test]
fn canonical_names_round_trip() {
    let labels: Vec<Vec<u8>> = vec![
        b"a.b".to_vec(),
        b"back\\slash".to_vec(),
        vec![0, b' ', 0x7f, 0xff, b'X'],
        b"example".to_vec(),
    ];
    let text = canonical_name(labels.iter().map(Vec::as_slice));
    assert_eq!(text, "a\\.b.back\\\\slash.\\000\\032\\127\\255x.example");
    let mut lowered = labels.clone();
    lowered[2][4] = b'x';
    assert_eq!(name_labels(&text), Some(lowered));
    assert_eq!(normalize_name(&text), text);
    assert_eq!(canonical_name([]), "");
    assert_eq!(name_labels(""), Some(vec![]));
    assert_eq!(name_labels("a\\"), None);
    assert_eq!(name_labels(".a"), None);
    // What does not read as a name is only lowercased.
    assert_eq!(normalize_name("A..B."), "a..b");
    assert_eq!(parent("a\\.b.c"), Some("c"));
    assert_eq!(parent("a\\\\.b"), Some("b"));
    assert_eq!(parent("a\\046\\.b"), Some(""));
    assert_eq!(parent(""), None);
}

#[test]
fn rejects_invalid_origin() {
    for origin in ["a..b", &"a".repeat(64), "bücher.example", "a\\"] {
        let error = Zone::parse("", Some(origin)).unwrap_err();
        assert_eq!(error.line, 0, "{origin}");
        assert!(error.message.starts_with("invalid origin: "), "{error}");
    }
}

#[test]
fn txt_bytes_are_decoded_exactly() {
    let zone = Zone::parse("a. TXT \"\\\"\\\\\\000\\255é\" plain\\ word\n", None).unwrap();
    let record = zone.records().next().unwrap();
    assert_eq!(
        record.data,
        RecordData::Txt(vec![
            vec![b'"', b'\\', 0, 255, 0xc3, 0xa9],
            b"plain word".to_vec()
        ])
    );
}

/// The zone the lookup tests ask.
const LOOKUP_ZONE: &str = "\
$ORIGIN example.com.
$TTL 300
@             SOA   ns hostmaster 1 7200 900 1209600 60
@             NS    ns
ns            A     192.0.2.53
host          A     192.0.2.1
              AAAA  2001:db8::1
www           CNAME host
alias2        CNAME WWW.example.com.
out           CNAME nowhere.example.com.
ent-target    CNAME c
loop1         CNAME loop2
loop2         CNAME loop1
self          CNAME self
a.b.c         TXT   deep        ; b.c and c are empty non-terminals
*.wild        TXT   wildcard
*.wild        MX    10 mail
sub.wild      A     192.0.2.9   ; exists: the wildcard covers neither it nor names below it
*.cname-wild  CNAME host
c0            CNAME c1
c1            CNAME c2
c2            CNAME c3
c3            CNAME c4
c4            CNAME c5
c5            CNAME c6
c6            CNAME c7
c7            CNAME c8
c8            CNAME c9
c9            A     192.0.2.99
";

/// Question, type, answer kind, chain, records.
type LookupCase = (
    &'static str,
    RecordType,
    &'static str,
    Vec<String>,
    Vec<&'static str>,
);

#[test]
fn lookup_answers() {
    let zone = Zone::parse(LOOKUP_ZONE, None).unwrap();
    let chain_c1: Vec<String> = (1..=8)
        .map(|i| format!("c{i}.example.com 300 CNAME c{}.example.com", i + 1))
        .collect();
    let chain_c0: Vec<String> = (0..8)
        .map(|i| format!("c{i}.example.com 300 CNAME c{}.example.com", i + 1))
        .collect();

    let cases: Vec<LookupCase> =
        vec![
        (
            "host.example.com",
            RecordType::A,
            "records",
            vec![],
            vec!["host.example.com 300 A 192.0.2.1"],
        ),
        (
            "HOST.Example.COM.",
            RecordType::Aaaa,
            "records",
            vec![],
            vec!["host.example.com 300 AAAA 2001:db8::1"],
        ),
        ("host.example.com", RecordType::Txt, "nodata", vec![], vec![]),
        ("nowhere.example.com", RecordType::A, "nxdomain", vec![], vec![]),
        ("other.org", RecordType::A, "nxdomain", vec![], vec![]),
        (
            "example.com",
            RecordType::Soa,
            "records",
            vec![],
            vec!["example.com 300 SOA ns.example.com hostmaster.example.com 1 7200 900 1209600 60"],
        ),
        // The ancestors of the zone's names exist as empty non-terminals.
        ("com", RecordType::A, "nodata", vec![], vec![]),
        (".", RecordType::Ns, "nodata", vec![], vec![]),
        // CNAME chains (RFC 1034 §4.3.2).
        (
            "www.example.com",
            RecordType::A,
            "records",
            vec!["www.example.com 300 CNAME host.example.com".into()],
            vec!["host.example.com 300 A 192.0.2.1"],
        ),
        (
            "alias2.example.com",
            RecordType::A,
            "records",
            vec![
                "alias2.example.com 300 CNAME www.example.com".into(),
                "www.example.com 300 CNAME host.example.com".into(),
            ],
            vec!["host.example.com 300 A 192.0.2.1"],
        ),
        (
            "www.example.com",
            RecordType::Cname,
            "records",
            vec![],
            vec!["www.example.com 300 CNAME host.example.com"],
        ),
        ("host.example.com", RecordType::Cname, "nodata", vec![], vec![]),
        (
            "www.example.com",
            RecordType::Txt,
            "nodata",
            vec!["www.example.com 300 CNAME host.example.com".into()],
            vec![],
        ),
        (
            "out.example.com",
            RecordType::A,
            "nxdomain",
            vec!["out.example.com 300 CNAME nowhere.example.com".into()],
            vec![],
        ),
        (
            "ent-target.example.com",
            RecordType::Txt,
            "nodata",
            vec!["ent-target.example.com 300 CNAME c.example.com".into()],
            vec![],
        ),
        (
            "loop1.example.com",
            RecordType::A,
            "nodata",
            vec![
                "loop1.example.com 300 CNAME loop2.example.com".into(),
                "loop2.example.com 300 CNAME loop1.example.com".into(),
            ],
            vec![],
        ),
        (
            "self.example.com",
            RecordType::A,
            "nodata",
            vec!["self.example.com 300 CNAME self.example.com".into()],
            vec![],
        ),
        (
            "c1.example.com",
            RecordType::A,
            "records",
            chain_c1,
            vec!["c9.example.com 300 A 192.0.2.99"],
        ),
        ("c0.example.com", RecordType::A, "nodata", chain_c0, vec![]),
        // RFC 8020: empty non-terminals exist, names below a name that does
        // not exist do not.
        ("c.example.com", RecordType::Txt, "nodata", vec![], vec![]),
        ("b.c.example.com", RecordType::Txt, "nodata", vec![], vec![]),
        (
            "a.b.c.example.com",
            RecordType::Txt,
            "records",
            vec![],
            vec!["a.b.c.example.com 300 TXT \"deep\""],
        ),
        ("x.c.example.com", RecordType::Txt, "nxdomain", vec![], vec![]),
        ("x.a.b.c.example.com", RecordType::Txt, "nxdomain", vec![], vec![]),
        // Wildcards (RFC 4592).
        (
            "foo.wild.example.com",
            RecordType::Txt,
            "records",
            vec![],
            vec!["foo.wild.example.com 300 TXT \"wildcard\""],
        ),
        (
            "Foo.Wild.example.com.",
            RecordType::Mx,
            "records",
            vec![],
            vec!["foo.wild.example.com 300 MX 10 mail.example.com"],
        ),
        ("foo.wild.example.com", RecordType::A, "nodata", vec![], vec![]),
        (
            "x.y.wild.example.com",
            RecordType::Txt,
            "records",
            vec![],
            vec!["x.y.wild.example.com 300 TXT \"wildcard\""],
        ),
        (
            "*.wild.example.com",
            RecordType::Txt,
            "records",
            vec![],
            vec!["*.wild.example.com 300 TXT \"wildcard\""],
        ),
        ("sub.wild.example.com", RecordType::Txt, "nodata", vec![], vec![]),
        ("x.sub.wild.example.com", RecordType::Txt, "nxdomain", vec![], vec![]),
        ("wild.example.com", RecordType::Txt, "nodata", vec![], vec![]),
        (
            "foo.cname-wild.example.com",
            RecordType::A,
            "records",
            vec!["foo.cname-wild.example.com 300 CNAME host.example.com".into()],
            vec!["host.example.com 300 A 192.0.2.1"],
        ),
        (
            "foo.cname-wild.example.com",
            RecordType::Cname,
            "records",
            vec![],
            vec!["foo.cname-wild.example.com 300 CNAME host.example.com"],
        ),
    ];

    for (qname, rtype, kind, chain, records) in cases {
        let answer = zone.lookup(qname, rtype);
        let (actual_kind, actual_records) = match &answer {
            ZoneAnswer::Records { records, .. } => ("records", show_all(records)),
            ZoneAnswer::NoData { .. } => ("nodata", vec![]),
            ZoneAnswer::NxDomain { .. } => ("nxdomain", vec![]),
        };
        assert_eq!(actual_kind, kind, "{qname} {rtype}: {answer:?}");
        assert_eq!(show_all(answer.chain()), chain, "{qname} {rtype}");
        assert_eq!(actual_records, records, "{qname} {rtype}");
    }
}

#[test]
fn lookup_in_an_empty_zone_is_nxdomain() {
    let zone = Zone::default();
    assert_eq!(
        zone.lookup(".", RecordType::A),
        ZoneAnswer::NxDomain { chain: vec![] }
    );
    assert_eq!(
        zone.lookup("example.com", RecordType::A),
        ZoneAnswer::NxDomain { chain: vec![] }
    );
}

#[test]
fn root_wildcard_matches_any_missing_name() {
    let zone = Zone::parse("*. TXT any\nexample.com. A 192.0.2.1\n", None).unwrap();
    let answer = zone.lookup("other.org", RecordType::Txt);
    let ZoneAnswer::Records { records, .. } = answer else {
        panic!("expected records, got {answer:?}");
    };
    assert_eq!(show_all(&records), ["other.org 3600 TXT \"any\""]);
    // com exists (an empty non-terminal), so *.com would be needed below it.
    assert!(matches!(
        zone.lookup("x.com", RecordType::Txt),
        ZoneAnswer::NxDomain { .. }
    ));
}

#[test]
fn soa_and_negative_ttl() {
    let zone = Zone::parse(LOOKUP_ZONE, None).unwrap();
    let cases = [
        ("example.com", Some("example.com"), Some(60)),
        ("nowhere.example.com.", Some("example.com"), Some(60)),
        ("A.B.C.Example.com", Some("example.com"), Some(60)),
        ("example.org", None, None),
        ("com", None, None),
    ];
    for (name, soa_owner, negative_ttl) in cases {
        assert_eq!(
            zone.soa(name).map(|record| record.name.as_str()),
            soa_owner,
            "{name}"
        );
        assert_eq!(zone.negative_ttl(name), negative_ttl, "{name}");
    }

    // RFC 2308 §5: the smaller of the SOA's TTL and its MINIMUM.
    let short = Zone::parse("a. 30 SOA ns.a. h.a. 1 2 3 4 600\n", None).unwrap();
    assert_eq!(short.negative_ttl("x.a"), Some(30));
}

#[test]
fn final_name_follows_the_chain() {
    let zone = Zone::parse(LOOKUP_ZONE, None).unwrap();
    let cases = [
        ("Host.Example.com.", RecordType::A, "host.example.com"),
        ("alias2.example.com", RecordType::Txt, "host.example.com"),
        ("out.example.com", RecordType::A, "nowhere.example.com"),
    ];
    for (qname, rtype, final_name) in cases {
        assert_eq!(zone.lookup(qname, rtype).final_name(qname), final_name);
    }
}

#[test]
fn insert_normalizes_and_indexes() {
    let mut zone = Zone::default();
    assert!(zone.is_empty());
    zone.insert(ZoneRecord {
        name: "Mail.Example.COM.".into(),
        ttl: 5,
        data: RecordData::A(Ipv4Addr::new(192, 0, 2, 25)),
    });
    zone.insert(ZoneRecord {
        name: "example.com".into(),
        ttl: 5,
        data: RecordData::Mx {
            preference: 10,
            exchange: "mail.example.com".into(),
        },
    });
    zone.insert(ZoneRecord {
        name: "mail.example.com".into(),
        ttl: 99,
        data: RecordData::A(Ipv4Addr::new(192, 0, 2, 25)),
    });
    assert_eq!(zone.len(), 2);
    assert_eq!(
        show_all(zone.records()),
        [
            "mail.example.com 5 A 192.0.2.25",
            "example.com 5 MX 10 mail.example.com"
        ]
    );
    assert!(matches!(
        zone.lookup("MAIL.example.com", RecordType::A),
        ZoneAnswer::Records { .. }
    ));
}

#[test]
fn record_type_names_and_codes() {
    let cases = [
        (RecordType::A, "A", 1),
        (RecordType::Aaaa, "AAAA", 28),
        (RecordType::Cname, "CNAME", 5),
        (RecordType::Mx, "MX", 15),
        (RecordType::Ns, "NS", 2),
        (RecordType::Ptr, "PTR", 12),
        (RecordType::Soa, "SOA", 6),
        (RecordType::Txt, "TXT", 16),
    ];
    for (rtype, name, code) in cases {
        assert_eq!(rtype.as_str(), name);
        assert_eq!(rtype.to_string(), name);
        assert_eq!(rtype.code(), code);
        assert_eq!(RecordType::from_code(code), Some(rtype));
        assert_eq!(name.parse::<RecordType>(), Ok(rtype));
        assert_eq!(name.to_ascii_lowercase().parse::<RecordType>(), Ok(rtype));
    }
    for code in [0, 3, 33, 99, 255, u16::MAX] {
        assert_eq!(RecordType::from_code(code), None, "{code}");
    }
    let error = "SPF".parse::<RecordType>().unwrap_err();
    assert_eq!(error.text(), "SPF");
    assert_eq!(error.to_string(), "unknown record type \"SPF\"");
    let data_types = [
        (RecordData::A(Ipv4Addr::LOCALHOST), RecordType::A),
        (RecordData::Aaaa(Ipv6Addr::LOCALHOST), RecordType::Aaaa),
        (RecordData::Cname(String::new()), RecordType::Cname),
        (RecordData::Ns(String::new()), RecordType::Ns),
        (RecordData::Ptr(String::new()), RecordType::Ptr),
        (RecordData::Txt(vec![]), RecordType::Txt),
    ];
    for (data, rtype) in data_types {
        assert_eq!(data.record_type(), rtype);
    }
}

#[test]
fn error_display_names_the_path_and_line() {
    let error = ZoneError {
        line: 7,
        message: "unknown record type \"SPF\"".into(),
        path: None,
    };
    assert_eq!(
        error.to_string(),
        "zone line 7: unknown record type \"SPF\""
    );
    let error = ZoneError {
        path: Some(PathBuf::from("/tmp/example.zone")),
        ..error
    };
    assert_eq!(
        error.to_string(),
        "/tmp/example.zone line 7: unknown record type \"SPF\""
    );
}

#[test]
fn from_file_reads_and_reports_the_path() {
    let dir = std::env::temp_dir().join(format!("dmarc-verifier-zone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let good = dir.join("good.zone");
    std::fs::write(&good, "$ORIGIN example.com.\nwww A 192.0.2.1\n").unwrap();
    let zone = Zone::from_file(&good).unwrap();
    assert_eq!(
        show_all(zone.records()),
        ["www.example.com 3600 A 192.0.2.1"]
    );

    let bad = dir.join("bad.zone");
    std::fs::write(&bad, "a. A 192.0.2.1\na. SPF x\n").unwrap();
    let error = Zone::from_file(&bad).unwrap_err();
    assert_eq!(error.line, 2);
    assert_eq!(error.path.as_deref(), Some(bad.as_path()));
    assert_eq!(
        error.to_string(),
        format!("{} line 2: unknown record type \"SPF\"", bad.display())
    );

    let missing = dir.join("missing.zone");
    let error = Zone::from_file(&missing).unwrap_err();
    assert_eq!(error.line, 0);
    assert_eq!(error.path.as_deref(), Some(missing.as_path()));
    assert!(error.message.starts_with("cannot read: "), "{error}");

    let binary = dir.join("binary.zone");
    std::fs::write(&binary, [0xff, 0xfe, b'\n']).unwrap();
    let error = Zone::from_file(&binary).unwrap_err();
    assert_eq!(error.line, 0);

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_input_never_panics() {
    let inputs = [
        "\\",
        "\"",
        "(",
        ")",
        "$",
        "$ORIGIN",
        "@",
        " ",
        "\t(\n",
        "a. TXT \\0",
        "a. TXT \\00",
        "a. TXT \\999",
        "a. TXT \"\\",
        "a. 4294967295 A 1.2.3.4",
        "a. 0 IN A 1.2.3.4 ; \u{0}",
        "\u{feff}a. A 1.2.3.4",
        "a. SOA . . 4294967296 1 1 1 1",
        "a. MX -1 b.",
        "*. CNAME *.",
        "a.\u{0}. A 1.2.3.4",
    ];
    for input in inputs {
        // Only the absence of a panic matters here.
        let _ = Zone::parse(input, None);
        let _ = Zone::parse(input, Some(input));
    }
}
