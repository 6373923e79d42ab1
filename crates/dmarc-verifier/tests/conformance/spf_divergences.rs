//! Why cases of the RFC 7208 SPF suite give a result the suite does not
//! allow, case by case. Every entry was traced to its cause; the test
//! fails when an entry starts agreeing or its result changes, so the list
//! stays honest.

use Cause::MailAuth;

/// Where a divergence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// test-dns or the zone module answers a question wrongly.
    TestDns,
    /// Our verifier: how `check_spf` calls mail-auth or maps its result.
    Verifier,
    /// mail-auth 0.15.1's SPF implementation departs from RFC 7208.
    MailAuth,
}

impl Cause {
    /// Every cause, in the order the summary prints them.
    pub const ALL: [Cause; 3] = [Cause::TestDns, Cause::Verifier, Cause::MailAuth];

    /// The label of the cause in reasons and in the summary line.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::TestDns => "test-dns",
            Cause::Verifier => "verifier",
            Cause::MailAuth => "mail-auth",
        }
    }
}

/// A case whose result we know differs from the suite, and why.
#[derive(Debug, Clone, Copy)]
pub struct Divergence {
    /// The case id.
    pub id: &'static str,
    /// Where the divergence comes from.
    pub cause: Cause,
    /// The SPF result we get today.
    pub got: &'static str,
    /// The RFC 7208 rule and what the culprit does instead.
    pub reason: &'static str,
}

/// A [`Divergence`], written compactly in tables.
pub const fn known(
    id: &'static str,
    cause: Cause,
    got: &'static str,
    reason: &'static str,
) -> Divergence {
    Divergence {
        id,
        cause,
        got,
        reason,
    }
}

/// A case the suite states in a way a real DNS server cannot serve as is;
/// the harness serves its closest legal equivalent (see `zone_of`), and
/// the case must then agree.
pub const HARNESS_MODELLED: &[(&str, &str)] = &[(
    "rfc7208/null-text",
    "a TXT record of no character-strings is illegal on the wire (RFC 1035 §3.3.14; \
     hickory drops the whole answer); it is served as one empty string, the same text to SPF",
)];

/// The known divergences of the RFC 7208 suite, in suite order.
#[rustfmt::skip]
pub const SPF_KNOWN_DIVERGENCES: &[Divergence] = &[
    // Initial processing (RFC 7208 §4.3) and record syntax.
    known("rfc7208/emptylabel", MailAuth, "permerror",
        "§4.3: a domain with an empty label is malformed, result none; has_valid_labels() ignores empty labels, hickory refuses the name and check_host maps Error::Parse to permerror"),
    known("rfc7208/helo-domain-literal", MailAuth, "permerror",
        "§4.3: a HELO domain literal [1.2.3.5] is not a domain, result none; has_valid_labels() accepts it and the unencodable name gives permerror"),
    known("rfc7208/domain-literal", MailAuth, "permerror",
        "§4.3: a MAIL FROM domain literal [1.2.3.5] is not a domain, result none; has_valid_labels() accepts it and the unencodable name gives permerror"),
    known("rfc7208/non-ascii-policy", MailAuth, "fail",
        "§3.1/§7.1: a non-ASCII byte in a domain-spec is not a macro-literal, permerror; mail-auth keeps it and queries the IDNA A-label (A xn--garbage-rna0b81b.example.net)"),
    known("rfc7208/non-ascii-mech", MailAuth, "fail",
        "§3.1/§4.6.1: a term with a non-ASCII name is an unknown mechanism, permerror; mail-auth's term scanner files any invalid name:value term as an unknown modifier and ignores it"),
    known("rfc7208/control-char-policy", MailAuth, "pass",
        "§4.6.1: terms are separated by SP only; mail-auth also splits on CR (and LF, TAB, FF), so \"a:ctrl.example.com<CR>ptr\" reads as two terms"),
    known("rfc7208/badip4", MailAuth, "pass",
        "§4.6.1/§5.6: \"ip4:192.0.2.5<LF>\" is not an ip4-network, permerror; mail-auth ends the address at any ASCII whitespace"),
    // Selecting records (§4.5).
    known("rfc7208/multitxt1", MailAuth, "fail",
        "§4.5: two v=spf1 TXT records are a permerror; TxtRecordParser::parse_records() takes the first that parses"),
    known("rfc7208/multitxt2", MailAuth, "fail",
        "§4.5: \"V=sPf1\" also counts (ABNF is case-insensitive), so two records, permerror; parse_records() takes the first that parses"),
    // Record evaluation (§4.6, §6).
    known("rfc7208/modifier-charset-good", MailAuth, "permerror",
        "§4.6.1/§6: an unknown modifier's value is any macro-string, '/' included; mail-auth ends it at '/' and rejects \"moo.cow-far_out=man:dog/cat\""),
    known("rfc7208/redirect-after-mechanisms2", MailAuth, "permerror",
        "§6.1: redirect= target t2.example.com has a valid record; mail-auth rejects it for the '/' in its unknown modifier (as in modifier-charset-good)"),
    known("rfc7208/invalid-domain", MailAuth, "fail",
        "§7.1: domain-end must be \".\" toplabel, so a:foo-bar is a permerror; mail-auth does not check domain-end and queries A foo-bar"),
    known("rfc7208/invalid-domain-empty-label", MailAuth, "temperror",
        "§4.3/§5: a target with an empty label cannot exist, no match (fail) or permerror; hickory refuses the name and the a mechanism maps that to temperror"),
    known("rfc7208/invalid-domain-long", MailAuth, "temperror",
        "§4.3/§5: a target with a 64-octet label cannot exist, no match (fail) or permerror; hickory refuses the name (it never reaches DNS) and the a mechanism maps that to temperror"),
    known("rfc7208/invalid-domain-long-via-macro", MailAuth, "temperror",
        "§4.3/§5: %{H}.bar expands to a 66-octet label that cannot exist, no match (fail) or permerror; hickory refuses the name and the a mechanism maps that to temperror"),
    // ptr (§5.5).
    known("rfc7208/ptr-match-implicit", MailAuth, "fail",
        "§5.5: validated PTR name e3.example.com equals the target, pass; mail-auth compares the PTR name with its trailing dot (\"e3.example.com.\"), so an equal name never matches, only subdomains"),
    known("rfc7208/ptr-match-ip6", MailAuth, "fail",
        "§5.5: validated PTR name e3.example.com (IPv6 client) equals the target, pass; mail-auth compares the PTR name with its trailing dot, so an equal name never matches"),
    // a (§5.3) and domain-spec syntax (§7.1).
    known("rfc7208/a-bad-cidr4", MailAuth, "fail",
        "§5.3/§5.6: ip4-cidr-length is 0-32, a/33 is a permerror; dual_cidr_length() clamps it to 32"),
    known("rfc7208/a-bad-cidr6", MailAuth, "fail",
        "§5.3/§5.6: ip6-cidr-length is 0-128, a//129 is a permerror; dual_cidr_length() clamps it to 128"),
    known("rfc7208/a-dual-cidr-ip4-err", MailAuth, "pass",
        "§5.3: dual-cidr-length is [\"/\" ip4] [\"//\" ip6], so a/24/64 is a permerror; dual_cidr_length() reads it as a/24//64"),
    known("rfc7208/a-bad-domain", MailAuth, "temperror",
        "§7.1: a:example.com:8080 does not end in a toplabel, permerror; mail-auth does not check domain-end and maps hickory's refusal of the name to temperror"),
    known("rfc7208/a-null", MailAuth, "temperror",
        "§7.1: NUL is not a macro-literal, permerror; mail-auth keeps it in the name and maps hickory's refusal of the name to temperror"),
    known("rfc7208/a-numeric", MailAuth, "neutral",
        "§7.1: a toplabel needs a letter, a:111.222.33.44 is a permerror; mail-auth does not check domain-end and queries A 111.222.33.44"),
    known("rfc7208/a-numeric-toplabel", MailAuth, "neutral",
        "§7.1: a toplabel needs a letter, a:abc.123 is a permerror; mail-auth does not check domain-end and queries A abc.123"),
    known("rfc7208/a-bad-toplabel", MailAuth, "temperror",
        "§7.1: \"-com\" is not a toplabel, permerror; mail-auth does not check domain-end and maps hickory's refusal of the name to temperror"),
    known("rfc7208/a-only-toplabel", MailAuth, "neutral",
        "§7.1: domain-end needs \".\" toplabel, a:museum is a permerror; mail-auth does not check domain-end and queries A museum"),
    known("rfc7208/a-only-toplabel-trailing-dot", MailAuth, "neutral",
        "§7.1: domain-end needs \".\" toplabel, a:museum. is a permerror; mail-auth does not check domain-end and queries A museum"),
    known("rfc7208/a-colon-domain", MailAuth, "permerror",
        "§7.1: ':' and '/' are macro-literals, a:foo:bar/baz.example.com names one host, pass; mail-auth ends the domain at '/' and fails to read \"baz.example.com\" as a CIDR length"),
    known("rfc7208/a-colon-domain-ip4mapped", MailAuth, "permerror",
        "§7.1: as a-colon-domain (mail-auth ends the domain at '/'); the verifier checks IPv4-mapped clients as IPv4 (RFC 7208 §5)"),
    // mx (§5.4).
    known("rfc7208/mx-bad-cidr4", MailAuth, "fail",
        "§5.4/§5.6: ip4-cidr-length is 0-32, mx/33 is a permerror; dual_cidr_length() clamps it to 32"),
    known("rfc7208/mx-bad-cidr6", MailAuth, "fail",
        "§5.4/§5.6: ip6-cidr-length is 0-128, mx//129 is a permerror; dual_cidr_length() clamps it to 128"),
    known("rfc7208/mx-bad-domain", MailAuth, "temperror",
        "§7.1: mx:example.com:8080 does not end in a toplabel, permerror; mail-auth does not check domain-end and maps hickory's refusal of the name to temperror"),
    known("rfc7208/mx-null", MailAuth, "temperror",
        "§7.1: NUL is not a macro-literal, permerror; mail-auth keeps it in the name and maps hickory's refusal of the name to temperror"),
    known("rfc7208/mx-numeric-top-label", MailAuth, "neutral",
        "§7.1: a toplabel needs a letter, mx:abc.123 is a permerror; mail-auth does not check domain-end and queries MX abc.123"),
    known("rfc7208/mx-colon-domain", MailAuth, "permerror",
        "§7.1: ':' and '/' are macro-literals, mx:foo:bar/baz.example.com names one host, pass; mail-auth ends the domain at '/' and fails to read \"baz.example.com\" as a CIDR length"),
    known("rfc7208/mx-colon-domain-ip4mapped", MailAuth, "permerror",
        "§7.1: as mx-colon-domain (mail-auth ends the domain at '/'); the verifier checks IPv4-mapped clients as IPv4 (RFC 7208 §5)"),
    known("rfc7208/mx-bad-toplab", MailAuth, "temperror",
        "§7.1: \"-com\" is not a toplabel, permerror; mail-auth does not check domain-end and maps hickory's refusal of the name to temperror"),
    // exists (§5.7), ip4 and ip6 (§5.6).
    known("rfc7208/exists-ip6only", MailAuth, "pass",
        "§5.7: exists looks up A records even for an IPv6 client; mail-auth's exists asks for A and AAAA (lookup_ip) and matches mail6's AAAA"),
    known("rfc7208/cidr4-33", MailAuth, "pass",
        "§5.6: ip4-cidr-length is 0-32, ip4:1.2.3.4/33 is a permerror; mail-auth clamps it to 32"),
    known("rfc7208/cidr4-032", MailAuth, "pass",
        "§5.6: ip4-cidr-length has no leading zero, ip4:1.2.3.4/032 is a permerror; cidr_length() reads 32"),
    known("rfc7208/cidr6-0-ip4", MailAuth, "pass",
        "§5: ip6 never matches an IPv4 client; matches_ipv6_mask() compares the client's IPv4-mapped form, so ip6:::1.1.1.1/0 matches every IPv4 client"),
    known("rfc7208/cidr6-ip4", MailAuth, "pass",
        "§5: ::ffff:1.2.3.4 is an IPv4 client and ip6 never matches one; mail-auth matches ip6:::1.1.1.1/0 whether it gets the mapped or (after the verifier's fix) the plain address"),
    known("rfc7208/cidr6-129", MailAuth, "neutral",
        "§5.6: ip6-cidr-length is 0-128, ip6:::1.1.1.1/129 is a permerror; mail-auth clamps it to 128"),
    // Modifiers (§6, appendix A).
    known("rfc7208/redirect-syntax-error", MailAuth, "neutral",
        "§6.1/§7.1: redirect=-all is not a domain-spec, permerror; mail-auth accepts it and, ?all matching first, never uses it"),
    known("rfc7208/invalid-modifier", MailAuth, "neutral",
        "§4.6.1/appendix A: a modifier name starts with a letter, 1up=foo is a permerror; mail-auth's term scanner ignores it as an unknown modifier"),
    known("rfc7208/empty-modifier-name", MailAuth, "neutral",
        "§4.6.1/appendix A: =all has an empty modifier name, permerror; mail-auth's term scanner stops at it and evaluates an empty record"),
    known("rfc7208/exp-syntax-error", MailAuth, "neutral",
        "§6.2: exp=-all is not a domain-spec, permerror; mail-auth accepts it"),
    // Macros (§7).
    known("rfc7208/macro-mania-in-domain", MailAuth, "temperror",
        "§7.1/§7.3: %% %_ %- expand to \"macro%percent  space%20url-space.example.com\", a legal DNS name (RFC 2181 §11), pass; hickory's Name::from_str_relaxed refuses '%' and ' ' and mail-auth maps that to temperror"),
    known("rfc7208/p-macro-multiple", MailAuth, "temperror",
        "§7.3: %{p} is a validated PTR name; mail-auth takes the first PTR name unvalidated and with its trailing dot, so %{p}.should.example.com becomes \"mx.example.com..should.example.com\", refused, temperror"),
    known("rfc7208/invalid-hello-macro", MailAuth, "temperror",
        "§7.1/§4.3: a:%{H} of HELO \"JUMPIN' JUPITER\" names no host, no match, fail; hickory refuses the expanded name and mail-auth maps that to temperror"),
    known("rfc7208/hello-domain-literal", MailAuth, "temperror",
        "§7.1/§4.3: a:%{H} of HELO [192.168.218.40] names no host, no match, fail; hickory refuses the expanded name and mail-auth maps that to temperror"),
    // Processing limits (§4.6.4).
    known("rfc7208/void-over-limit", MailAuth, "neutral",
        "§4.6.4: more than two void lookups (three NXDOMAIN a: targets) is a permerror; mail-auth counts no void lookups"),
];
