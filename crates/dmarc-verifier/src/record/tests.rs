use super::*;

#[test]
fn version_must_be_first_and_exact() {
    let cases: &[(&str, Result<(), RecordError>)] = &[
        ("v=DMARC1; p=none", Ok(())),
        ("V=DMARC1; p=none", Ok(())),
        ("v = DMARC1 ;p=none", Ok(())),
        ("v=DMARC1", Ok(())),
        ("", Err(RecordError::Empty)),
        ("   ", Err(RecordError::Empty)),
        ("v=dmarc1; p=none", Err(RecordError::BadVersion)),
        ("p=none; v=DMARC1", Err(RecordError::BadVersion)),
        ("v=DMARC2; p=none", Err(RecordError::BadVersion)),
        ("v=spf1 -all", Err(RecordError::BadVersion)),
        ("V=BOB", Err(RecordError::BadVersion)),
        // RFC 9989 §4.8: dmarc-record starts with dmarc-version.
        (" v=DMARC1; p=reject", Err(RecordError::BadVersion)),
        ("\tv=DMARC1; p=reject", Err(RecordError::BadVersion)),
        ("\r\nv=DMARC1; p=reject", Err(RecordError::BadVersion)),
        ("v=DMARC1 p=reject", Err(RecordError::BadVersion)),
        ("v=DMARC1\r", Err(RecordError::BadVersion)),
    ];
    for (raw, expected) in cases {
        assert_eq!(DmarcRecord::parse(raw).map(|_| ()), *expected, "{raw:?}");
    }
}

#[test]
fn tags_parse_with_defaults() {
    let r = DmarcRecord::parse("v=DMARC1; p=reject").unwrap();
    assert_eq!(r.p(), TagValue::Valid(Policy::Reject));
    assert_eq!(r.sp(), TagValue::Absent);
    assert_eq!(r.adkim(), AlignmentMode::Relaxed);
    assert_eq!(r.aspf(), AlignmentMode::Relaxed);
    assert_eq!(r.pct(), 100);
    assert_eq!(r.ri(), 86400);
    assert!(!r.testing());
    assert_eq!(r.psd(), PsdFlag::Unknown);
    assert_eq!(r.fo(), FailureOptions::default());
    assert_eq!(r.raw(), "v=DMARC1; p=reject");

    let r = DmarcRecord::parse(
        "v=DMARC1; p=QUARANTINE; sp=reject; np=none; adkim=s; aspf=S; pct=25; fo=1:d:s; ri=3600; \
         rua=mailto:a@example.com!10m, mailto:b@example.net; ruf=mailto:f@example.com; t=y; psd=n; x=unknown",
    )
    .unwrap();
    assert_eq!(r.p(), TagValue::Valid(Policy::Quarantine));
    assert_eq!(r.sp(), TagValue::Valid(Policy::Reject));
    assert_eq!(r.np(), TagValue::Valid(Policy::None));
    assert_eq!(r.adkim(), AlignmentMode::Strict);
    assert_eq!(r.aspf(), AlignmentMode::Strict);
    assert_eq!(r.pct(), 25);
    assert_eq!(r.ri(), 3600);
    assert!(r.testing());
    assert_eq!(r.psd(), PsdFlag::No);
    assert_eq!(
        r.fo(),
        FailureOptions {
            all_fail: false,
            any_fail: true,
            dkim: true,
            spf: true
        }
    );
    assert_eq!(
        r.rua(),
        &[
            ReportUri {
                uri: "mailto:a@example.com".into(),
                max_size: Some(10 << 20)
            },
            ReportUri {
                uri: "mailto:b@example.net".into(),
                max_size: None
            },
        ]
    );
    assert_eq!(r.rua()[0].mailto_address(), Some("a@example.com"));
    assert_eq!(r.ruf().len(), 1);
    assert!(r.invalid_tags().is_empty());
}

#[test]
fn invalid_optional_values_fall_back_to_defaults() {
    let cases: &[(&str, &str)] = &[
        ("v=DMARC1; p=none; adkim=bob", "adkim=bob"),
        ("v=DMARC1; p=none; aspf=x", "aspf=x"),
        ("v=DMARC1; p=none; pct=500", "pct=500"),
        ("v=DMARC1; p=none; pct=-1", "pct=-1"),
        ("v=DMARC1; p=none; pct=abc", "pct=abc"),
        ("v=DMARC1; p=none; ri=bob", "ri=bob"),
        ("v=DMARC1; p=none; rf=bob", "rf=bob"),
        ("v=DMARC1; p=none; fo=0:1", "fo=0:1"),
        ("v=DMARC1; p=none; fo=d:d", "fo=d:d"),
        ("v=DMARC1; p=none; t=maybe", "t=maybe"),
        ("v=DMARC1; p=none; psd=x", "psd=x"),
    ];
    for (raw, bad) in cases {
        let r = DmarcRecord::parse(raw).unwrap();
        assert_eq!(r.invalid_tags(), &[bad.to_string()], "{raw}");
        assert_eq!(r.adkim(), AlignmentMode::Relaxed);
        assert_eq!(r.pct(), 100);
        assert_eq!(r.ri(), 86400);
        assert!(!r.testing());
        assert_eq!(r.psd(), PsdFlag::Unknown);
        assert_eq!(r.fo(), FailureOptions::default());
        assert_eq!(
            r.effective_policies(DiscoveryMethod::TreeWalk).unwrap().p,
            Policy::None,
            "{raw}"
        );
    }
}

#[test]
fn a_tag_list_that_breaks_the_grammar_is_invalid() {
    // RFC 6376 §3.2 (duplicates), RFC 9989 §4.8 (dmarc-tag, dmarc-value).
    let cases: &[&str] = &[
        "v=DMARC1; p=reject; p=none",
        "v=DMARC1; p=none; P=reject",
        "v=DMARC1; p=reject; v=DMARC1",
        "v=DMARC1; p=reject; rua=mailto:a@example.com; rua=mailto:b@example.com",
        "v=DMARC1; p=reject\r",
        "v=DMARC1; p=reject;\r",
        "v=DMARC1; p=reject; sp=none\r\n",
        "v=DMARC1; p=rej\x00ect",
        "v=DMARC1; p=réject",
        "v=DMARC1; p=reject; garbage",
        "v=DMARC1; p=",
        "v=DMARC1; p=reject; x-y=1",
        "v=DMARC1; p=reject; 1=2",
        "v=DMARC1; p=reject; _x=2",
        "v=DMARC1; =reject",
    ];
    for raw in cases {
        assert!(
            matches!(DmarcRecord::parse(raw), Err(RecordError::InvalidTagList(_))),
            "{raw:?}: {:?}",
            DmarcRecord::parse(raw)
        );
    }
    // White space around separators and equals signs, empty tag-specs and
    // the optional final ";" are grammar.
    for raw in [
        "v = DMARC1 ;\tp = reject ; ; sp=none;",
        "v=DMARC1;;p=reject",
        "V=DMARC1; P=Reject",
        "v=DMARC1; p=reject; x0=unknown; x_y=unknown",
    ] {
        assert!(DmarcRecord::parse(raw).is_ok(), "{raw:?}");
    }
}

#[test]
fn numbers_are_digits_only() {
    // RFC 7489 §6.4: pct is 1*3DIGIT (0-100), ri 1*32DIGIT.
    for (raw, pct) in [
        ("v=DMARC1; p=none; pct=40", 40),
        ("v=DMARC1; p=none; pct=040", 40),
        ("v=DMARC1; p=none; pct=0", 0),
        ("v=DMARC1; p=none; pct=+40", 100),
        ("v=DMARC1; p=none; pct=0050", 100),
        ("v=DMARC1; p=none; pct=-1", 100),
        ("v=DMARC1; p=none; pct=101", 100),
        ("v=DMARC1; p=none; pct=4 0", 100),
        ("v=DMARC1; p=none; pct=0x10", 100),
    ] {
        let r = DmarcRecord::parse(raw).unwrap();
        assert_eq!(r.pct(), pct, "{raw}");
        assert_eq!(
            r.invalid_tags().is_empty(),
            pct != 100 || raw.ends_with("=100"),
            "{raw}"
        );
    }
    let r = DmarcRecord::parse("v=DMARC1; p=none; ri=+3600").unwrap();
    assert_eq!(r.ri(), 86400);
    let r = DmarcRecord::parse("v=DMARC1; p=none; ri=3600").unwrap();
    assert_eq!(r.ri(), 3600);
}

#[test]
fn policy_rules_of_rfc7489_6_6_3_step_6() {
    // (record, np counts, expected (p, sp, np, forced) or None for no processing)
    type Expect = Option<(Policy, Policy, Policy, bool)>;
    use Policy::*;
    let cases: &[(&str, bool, Expect)] = &[
        (
            "v=DMARC1; p=reject",
            true,
            Some((Reject, Reject, Reject, false)),
        ),
        (
            "v=DMARC1; p=reject; sp=none",
            true,
            Some((Reject, None, None, false)),
        ),
        (
            "v=DMARC1; p=reject; np=quarantine",
            true,
            Some((Reject, Reject, Quarantine, false)),
        ),
        (
            "v=DMARC1; p=none; sp=quarantine; np=reject",
            true,
            Some((None, Quarantine, Reject, false)),
        ),
        // Missing p: p=none with a valid rua, else no processing.
        (
            "v=DMARC1; rua=mailto:r@example.com",
            true,
            Some((None, None, None, true)),
        ),
        ("v=DMARC1; pct=100", true, Option::None),
        ("v=DMARC1", true, Option::None),
        // Invalid p or sp.
        ("v=DMARC1; p=bob", true, Option::None),
        (
            "v=DMARC1; p=bob; rua=mailto:r@example.com",
            true,
            Some((None, None, None, true)),
        ),
        ("v=DMARC1; p=reject; sp=bob", true, Option::None),
        (
            "v=DMARC1; p=reject; sp=bob; rua=mailto:r@example.com",
            true,
            Some((None, None, None, true)),
        ),
        // An rua that is not a URI does not count.
        ("v=DMARC1; p=bob; rua=not a uri", true, Option::None),
        // Invalid np: counts under RFC 9989 only.
        ("v=DMARC1; p=reject; np=bob", true, Option::None),
        (
            "v=DMARC1; p=reject; np=bob",
            false,
            Some((Reject, Reject, Reject, false)),
        ),
        // np is no RFC 7489 tag: under PSL discovery it never applies.
        (
            "v=DMARC1; p=reject; sp=none; np=reject",
            false,
            Some((Reject, None, None, false)),
        ),
        (
            "v=DMARC1; p=reject; sp=none; np=reject",
            true,
            Some((Reject, None, Reject, false)),
        ),
        // OpenDMARC accepts p=n; the grammar does not.
        ("v=DMARC1; p=n", true, Option::None),
    ];
    for (raw, np_counts, expected) in cases {
        let r = DmarcRecord::parse(raw).unwrap();
        let method = if *np_counts {
            DiscoveryMethod::TreeWalk
        } else {
            DiscoveryMethod::Psl
        };
        let got = r
            .effective_policies(method)
            .map(|e| (e.p, e.sp, e.np, e.forced_none));
        assert_eq!(got, *expected, "{raw} (np counts: {np_counts})");
    }
}

#[test]
fn report_uris() {
    type Expected<'a> = Option<(&'a str, Option<u64>)>;
    let cases: &[(&str, Expected)] = &[
        (
            "mailto:a@example.com",
            Some(("mailto:a@example.com", Option::None)),
        ),
        (
            "mailto:a@example.com!50",
            Some(("mailto:a@example.com", Some(50))),
        ),
        (
            "mailto:a@example.com!2k",
            Some(("mailto:a@example.com", Some(2048))),
        ),
        (
            "mailto:a@example.com!1G",
            Some(("mailto:a@example.com", Some(1 << 30))),
        ),
        ("mailto:a@example.com!x", Option::None),
        (
            "https://example.com/r",
            Some(("https://example.com/r", Option::None)),
        ),
        ("noscheme", Option::None),
        ("1mailto:a@b", Option::None),
        ("mailto:", Option::None),
    ];
    for (input, expected) in cases {
        let got = ReportUri::parse(input);
        assert_eq!(
            got.as_ref().map(|u| (u.uri.as_str(), u.max_size)),
            *expected,
            "{input}"
        );
    }
    let ftp = ReportUri::parse("ftp://abuse.com").unwrap();
    assert_eq!(ftp.mailto_address(), Option::None);
}

#[test]
fn downgrade_steps_one_level() {
    assert_eq!(Policy::Reject.downgraded(), Policy::Quarantine);
    assert_eq!(Policy::Quarantine.downgraded(), Policy::None);
    assert_eq!(Policy::None.downgraded(), Policy::None);
}
