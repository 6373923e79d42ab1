//! Our SPF engine against mail-auth 0.15.1's SPF on generated records and
//! zones.
//!
//! A deterministic generator (seeded; `SPF_DIFF_SEED` and `SPF_DIFF_CASES`
//! run other or more cases) writes zones: records of `ip4`, `ip6`, `a`,
//! `mx`, `ptr`, `exists`, `include`, `all`, `redirect`, `exp` and unknown
//! modifiers with qualifiers, CIDR lengths and macros, include and
//! redirect chains (loops too), MX sets, PTR records, hosts with and
//! without addresses, IPv4, IPv6 and IPv4-mapped clients, null senders.
//! mail-auth asks a test-dns server serving the zone (its `check_host`,
//! the IPv4-mapped client given as IPv4, as our verifier always did); our
//! engine asks the same zone in memory.
//!
//! Some cases carry on purpose one feature where mail-auth departs from
//! RFC 7208 ([`Class`]: the classes of the 52 RFC 7208 suite cases
//! mail-auth's SPF got wrong, which our engine gets right). A case may disagree only when
//! it carries such a feature (or, for the void lookup limit mail-auth does
//! not have, when our reason says that limit decided); every other
//! disagreement fails the test: it is a bug of ours to fix, or a class to
//! document here with the RFC section that decides.

use dmarc_verifier::{
    dns::zone::{canonical_name, RecordType, Zone},
    spf::{
        check_host, reverse_name, Answer, LookupError, SpfLookup, SpfOptions, SpfOutcome,
        SpfRequest,
    },
    SpfResult,
};
use mail_auth::{
    hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    spf::verify::SpfParameters,
    MessageAuthenticator, SpfResult as MaSpf,
};
use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};
use test_dns::{Fault, TestDns};

/// Where mail-auth departs from RFC 7208, and the RFC decides for us. Each
/// names the cases of the RFC 7208 suite it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// §4.5: two `v=spf1` records are a permerror; mail-auth takes the
    /// first that parses (multitxt1, multitxt2).
    MultipleRecords,
    /// §7.1: a domain-spec ends in "." toplabel or a macro; mail-auth does
    /// not check (invalid-domain, a-numeric, a-numeric-toplabel,
    /// a-only-toplabel, a-bad-toplabel, a-bad-domain, mx-bad-domain,
    /// mx-numeric-top-label, mx-bad-toplab).
    DomainEnd,
    /// §5.6: CIDR lengths 0-32 and 0-128 without leading zero, dual only as
    /// `/n//m`; mail-auth clamps and reads leniently (cidr4-33, cidr4-032,
    /// a-bad-cidr4, a-bad-cidr6, a-dual-cidr-ip4-err, cidr6-129,
    /// mx-bad-cidr4, mx-bad-cidr6).
    CidrLength,
    /// §5: ip6 never matches an IPv4 client; mail-auth compares its
    /// IPv4-mapped form (cidr6-0-ip4, cidr6-ip4).
    Ip6NeverMatchesIpv4,
    /// §4.6.4: more than two void lookups is a permerror; mail-auth counts
    /// none (void-over-limit).
    VoidLookupLimit,
    /// §4.3, §4.8: a target with an empty label or a label over 63 octets
    /// cannot exist and matches nothing; mail-auth gives temperror or
    /// permerror (invalid-domain-empty-label, invalid-domain-long,
    /// invalid-domain-long-via-macro, invalid-hello-macro).
    UnqueryableTarget,
    /// §5.7: exists asks A records only; mail-auth asks A and AAAA
    /// (exists-ip6only).
    ExistsAsksAOnly,
    /// §5.5: a validated PTR name equal to the target matches; mail-auth
    /// compares it with its trailing dot (ptr-match-implicit,
    /// ptr-match-ip6).
    PtrEqualName,
    /// §7.3: `%{p}` is a validated name, preferably <domain> or below it;
    /// mail-auth takes the first PTR name unvalidated (p-macro-multiple).
    PtrMacro,
    /// §4.6.1, §6, appendix A: modifier names start with a letter, their
    /// values are macro-strings ('/' included), redirect= and exp= take a
    /// domain-spec; mail-auth's term scanner differs
    /// (modifier-charset-good, redirect-after-mechanisms2,
    /// invalid-modifier, empty-modifier-name, redirect-syntax-error,
    /// exp-syntax-error).
    ModifierSyntax,
    /// §4.6.1: terms are separated by spaces only; mail-auth also splits on
    /// other whitespace (control-char-policy, badip4).
    TermSeparator,
    /// §3.1, §4.6.1: a record is ASCII; mail-auth keeps non-ASCII octets
    /// in names (non-ascii-policy).
    NonAscii,
    /// §4.6: a term outside the ABNF (an unknown mechanism, `-all.`, a
    /// term that starts with `=` or a non-ASCII octet, a macro cut short)
    /// is a permerror wherever it stands in the record, before any term is
    /// evaluated; mail-auth stops reading the record at such a term unless
    /// it is the last one, and evaluates the terms before it
    /// (non-ascii-mech, empty-modifier-name).
    TermOutsideAbnf,
    /// §4.3: a <domain> that is not a multi-label domain name ending in a
    /// toplabel (an address literal) is `none`; mail-auth gives permerror
    /// (emptylabel, helo-domain-literal, domain-literal).
    MalformedDomain,
    /// §6.2, §7.3: the explanation of the top-level record expands `%{d}`
    /// to that record's <domain>; after an include matched, mail-auth
    /// expands it to the included domain. (No case of the suite has both.)
    ExplanationAfterInclude,
    /// §7.3: an expanded name over 253 octets is shortened from the left
    /// to 253; mail-auth does not shorten it and the resolver refuses it
    /// (temperror). (The suite's domain-name-truncation shortens an exp=
    /// name, which mail-auth gets right.)
    LongName,
    /// §5.2: an included record's result is that of its own check_host():
    /// an include inside an included record decides that record's result,
    /// not the top one; mail-auth ends the whole evaluation when a nested
    /// include matches, with that include's qualifier. (No case of the
    /// suite nests includes so.)
    NestedInclude,
}

/// One generated case.
struct Case {
    zone: String,
    /// Names answered SERVFAIL, with the type (or all types).
    faults: Vec<(String, Option<RecordType>)>,
    ip: IpAddr,
    helo: String,
    sender: String,
    /// The divergence features put in on purpose.
    features: BTreeSet<Class>,
}

/// Zone text under construction, one record per line.
#[derive(Default)]
struct ZoneText(String);

impl ZoneText {
    fn txt(&mut self, name: &str, text: &str) {
        let mut quoted = String::new();
        for octet in text.bytes() {
            match octet {
                b'"' | b'\\' => {
                    quoted.push('\\');
                    quoted.push(char::from(octet));
                }
                0x20..=0x7e => quoted.push(char::from(octet)),
                _ => {
                    let _ = write!(quoted, "\\{octet:03}");
                }
            }
        }
        // Long records are split into 255-octet strings by the zone.
        let _ = writeln!(self.0, "{} TXT \"{quoted}\"", absolute(name));
    }

    fn line(&mut self, name: &str, data: &str) {
        let _ = writeln!(self.0, "{} {data}", absolute(name));
    }
}

fn absolute(name: &str) -> String {
    format!("{}.", canonical_name(name.split('.').map(str::as_bytes)))
}

const V4_CLIENTS: [&str; 3] = ["192.0.2.10", "192.0.2.77", "198.51.100.7"];
const V6_CLIENTS: [&str; 2] = ["2001:db8::10", "2001:db8:1::5"];
const V4_ADDRESSES: [&str; 5] = [
    "192.0.2.10",
    "192.0.2.99",
    "198.51.100.7",
    "203.0.113.1",
    "192.0.2.77",
];
const V6_ADDRESSES: [&str; 4] = [
    "2001:db8::10",
    "2001:db8::99",
    "2001:db8:1::5",
    "2001:db8:2::1",
];
const HOSTS: usize = 6;
const DOMAINS: usize = 5;

/// The generator's state for one case.
struct Gen<'r> {
    rng: &'r mut StdRng,
    zone: ZoneText,
    features: BTreeSet<Class>,
    client: IpAddr,
    /// Hosts with an A record, with an AAAA record.
    host_a: Vec<bool>,
    host_aaaa: Vec<bool>,
}

impl Gen<'_> {
    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items.choose(self.rng).copied().unwrap_or_default()
    }

    fn client_is_v4(&self) -> bool {
        matches!(self.client, IpAddr::V4(_))
            || matches!(self.client, IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some())
    }

    /// Hosts h1..h6.test: 0-2 A and 0-2 AAAA records each, some MX sets.
    fn hosts(&mut self) {
        for host in 1..=HOSTS {
            let name = format!("h{host}.test");
            let a = self.rng.random_range(0..3);
            let aaaa = self.rng.random_range(0..3);
            for _ in 0..a {
                let address = self.pick(&V4_ADDRESSES);
                self.zone.line(&name, &format!("A {address}"));
            }
            for _ in 0..aaaa {
                let address = self.pick(&V6_ADDRESSES);
                self.zone.line(&name, &format!("AAAA {address}"));
            }
            self.host_a.push(a > 0);
            self.host_aaaa.push(aaaa > 0);
        }
        // A DNSBL-like zone for exists:%{ir}.%{v}.bl.test.
        for client in V4_CLIENTS.iter().chain(&V6_CLIENTS).step_by(2) {
            let ip: IpAddr = client.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let reversed = reverse_name(ip);
            let listed = reversed
                .trim_end_matches(".in-addr.arpa")
                .trim_end_matches(".ip6.arpa");
            let family = if ip.is_ipv4() { "in-addr" } else { "ip6" };
            self.zone
                .line(&format!("{listed}.{family}.bl.test"), "A 127.0.0.2");
        }
        self.zone.line("users.d0.test", "TXT \"zone\"");
        self.zone.line("alice.users.d0.test", "A 127.0.0.2");
    }

    /// An MX set at `name`: 0-3 exchanges among the hosts, distinct
    /// preferences (so that the order of trying them is the same for both).
    fn mx_set(&mut self, name: &str, max: usize) {
        let count = self.rng.random_range(0..=max);
        for preference in 0..count {
            let host = self.rng.random_range(1..=HOSTS);
            self.zone
                .line(name, &format!("MX {} h{host}.test.", preference * 10));
        }
    }

    fn qualifier(&mut self) -> &'static str {
        ["", "", "", "+", "-", "~", "?"]
            .choose(self.rng)
            .copied()
            .unwrap_or_default()
    }

    fn host(&mut self) -> String {
        format!("h{}.test", self.rng.random_range(1..=HOSTS))
    }

    fn cidr(&mut self) -> String {
        let four = ["", "", "/24", "/16", "/32", "/0", "/25"];
        let six = ["", "", "//64", "//48", "//128", "//0", "//32"];
        format!("{}{}", self.pick(&four), self.pick(&six))
    }

    /// One mechanism term for the record of `domain` (index `depth`).
    fn mechanism(&mut self, depth: usize) -> String {
        let qualifier = self.qualifier();
        let choice = self.rng.random_range(0..100);
        let body = match choice {
            0..=17 => {
                let network = self.pick(&[
                    "192.0.2.0",
                    "192.0.2.10",
                    "198.51.100.0",
                    "203.0.113.0",
                    "0.0.0.0",
                    "192.0.2.77",
                ]);
                let length = self.pick(&["", "/8", "/16", "/24", "/25", "/32", "/0"]);
                format!("ip4:{network}{length}")
            }
            18..=29 => {
                let network = self.pick(&[
                    "2001:db8::",
                    "2001:db8::10",
                    "2001:db8:1::",
                    "2001:db8::/48",
                ]);
                if network.contains('/') {
                    format!("ip6:{network}")
                } else {
                    let length = self.pick(&["", "/32", "/48", "/64", "/128"]);
                    format!("ip6:{network}{length}")
                }
            }
            30..=44 => {
                let target = match self.rng.random_range(0..4) {
                    0 => String::new(),
                    1 => ":%{d}".to_string(),
                    _ => format!(":{}", self.host()),
                };
                let cidr = self.cidr();
                format!("a{target}{cidr}")
            }
            45..=54 => {
                let target = match self.rng.random_range(0..3) {
                    0 => String::new(),
                    _ => format!(":d{}.test", self.rng.random_range(0..DOMAINS)),
                };
                let cidr = self.cidr();
                format!("mx{target}{cidr}")
            }
            55..=66 => {
                let target = match self.rng.random_range(0..5) {
                    0 => "%{ir}.%{v}.bl.test".to_string(),
                    1 => "%{l}.users.%{d2}".to_string(),
                    2 => "%{L}.users.d0.test".to_string(),
                    _ => {
                        let host = self.rng.random_range(1..=HOSTS);
                        if self.host_aaaa[host - 1] && !self.host_a[host - 1] {
                            self.features.insert(Class::ExistsAsksAOnly);
                        }
                        format!("h{host}.test")
                    }
                };
                format!("exists:{target}")
            }
            67..=84 => {
                // Deeper records mostly; now and then a loop to d0.
                let target = if depth >= DOMAINS || self.chance(6) {
                    0
                } else {
                    self.rng.random_range(depth + 1..=DOMAINS)
                };
                format!("include:d{target}.test")
            }
            _ => "all".to_string(),
        };
        format!("{qualifier}{body}")
    }

    /// The record of `d<depth>.test`.
    fn record(&mut self, depth: usize) -> String {
        let mut terms = vec!["v=spf1".to_string()];
        let count = self.rng.random_range(0..=if depth == 0 { 5 } else { 3 });
        for _ in 0..count {
            terms.push(self.mechanism(depth));
        }
        if self.chance(3) && self.client_is_v4() {
            // ip6 covering every IPv4-mapped address.
            terms.insert(
                1,
                self.pick(&["ip6:::/0", "ip6:::ffff:0:0/96", "?ip6:::ffff:192.0.2.0/120"])
                    .to_string(),
            );
            self.features.insert(Class::Ip6NeverMatchesIpv4);
        }
        if self.chance(25) {
            let last = format!("{}all", self.pick(&["-", "~", "?", ""]));
            terms.push(last);
        } else if self.chance(30) && depth < DOMAINS {
            let target = self.rng.random_range(depth + 1..=DOMAINS);
            terms.push(format!("redirect=d{target}.test"));
        }
        if self.chance(20) {
            terms.push(format!("exp=exp{}.test", self.rng.random_range(1..=2)));
        }
        if self.chance(10) {
            terms.push(
                self.pick(&["note=hello", "v=spf1", "x-id=a.b-c_d"])
                    .to_string(),
            );
        }
        let mut record = terms.join(" ");
        if self.chance(5) {
            // Names and macro letters in upper case too (URL-escaped macros).
            record = record.to_ascii_uppercase();
        }
        if self.chance(5) {
            record = record.replace(' ', "  ") + " ";
        }
        record
    }

    /// Domains d0..d5.test with their records, other TXT records, MX sets
    /// and addresses; the explanations.
    fn domains(&mut self) {
        for depth in 0..=DOMAINS {
            let name = format!("d{depth}.test");
            if depth > 0 && self.chance(8) {
                continue; // No record at all: include/redirect permerror.
            }
            let record = self.record(depth);
            self.zone.txt(&name, &record);
            if self.chance(15) {
                self.zone.txt(&name, "google-site-verification=abc");
            }
            if self.chance(3) {
                self.zone.txt(&name, "v=spf1 +all");
                self.features.insert(Class::MultipleRecords);
            }
            self.mx_set(&name, 3);
            if self.chance(40) {
                let address = self.pick(&V4_ADDRESSES);
                self.zone.line(&name, &format!("A {address}"));
            }
            if self.chance(30) {
                let address = self.pick(&V6_ADDRESSES);
                self.zone.line(&name, &format!("AAAA {address}"));
            }
        }
        self.zone.txt("exp1.test", "denied %{i} for %{s} at %{d}");
        self.zone.txt("exp2.test", "see %{h} %{c}");
    }

    /// PTR records of the client and a record using ptr, for the ptr
    /// family of cases.
    fn ptr_case(&mut self) {
        let names = ["mail.d0.test", "d0.test", "x.d1.test", "other.test"];
        let reverse = reverse_name(self.client_canonical());
        let count = self.rng.random_range(0..=3);
        let mut validated = Vec::new();
        for _ in 0..count {
            let name = self.pick(&names);
            self.zone.line(&reverse, &format!("PTR {name}."));
            if self.chance(60) {
                let address = self.client_canonical();
                let rtype = if address.is_ipv4() { "A" } else { "AAAA" };
                self.zone.line(name, &format!("{rtype} {address}"));
                validated.push(name);
            }
        }
        let target = self.pick(&["", ":d0.test", ":d1.test", ":D0.Test"]);
        let target_name = if target.is_empty() {
            "d0.test".to_string()
        } else {
            target[1..].to_ascii_lowercase()
        };
        if validated.iter().any(|name| *name == target_name) {
            self.features.insert(Class::PtrEqualName);
        }
        let mut record = format!("v=spf1 {}ptr{target}", self.qualifier());
        if self.chance(50) {
            let _ = write!(record, " {}", self.mechanism(0));
        }
        if self.chance(30) {
            record.push_str(" exists:%{p}.p.test");
            self.features.insert(Class::PtrMacro);
        }
        record.push_str(self.pick(&[" -all", " ~all", ""]));
        self.zone.txt("d0.test", &record);
    }

    fn client_canonical(&self) -> IpAddr {
        self.client.to_canonical()
    }
}

/// Terms outside the ABNF, or edge cases of it, and the class a
/// disagreement on them falls in (`None`: both must agree).
const SYNTAX: &[(&str, Option<Class>)] = &[
    ("a:foo-bar", Some(Class::DomainEnd)),
    ("a:111.222.33.44", Some(Class::DomainEnd)),
    ("mx:example.test:8080", Some(Class::DomainEnd)),
    ("a:museum", Some(Class::DomainEnd)),
    ("a:abc.123", Some(Class::DomainEnd)),
    ("a:example.-com", Some(Class::DomainEnd)),
    ("ip4:192.0.2.0/33", Some(Class::CidrLength)),
    ("ip4:192.0.2.10/032", Some(Class::CidrLength)),
    ("a/33", Some(Class::CidrLength)),
    ("a//129", Some(Class::CidrLength)),
    ("mx/33", Some(Class::CidrLength)),
    ("ip6:2001:db8::/129", Some(Class::CidrLength)),
    ("a/24/64", Some(Class::CidrLength)),
    ("1up=foo", Some(Class::ModifierSyntax)),
    ("=all", Some(Class::TermOutsideAbnf)),
    ("x.y=a/b", Some(Class::ModifierSyntax)),
    ("exp=-all", Some(Class::ModifierSyntax)),
    ("a:h1.test\rptr", Some(Class::TermSeparator)),
    ("ip4:192.0.2.10\n", Some(Class::TermSeparator)),
    ("a:\u{e9}x.test", Some(Class::NonAscii)),
    ("\u{80}a", Some(Class::TermOutsideAbnf)),
    ("a:mail..h1.test", Some(Class::UnqueryableTarget)),
    ("a:h1234567890123456789012345678901234567890123456789012345678901234.test", Some(Class::UnqueryableTarget)),
    ("exists:%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.%{l}.users.d0.test", Some(Class::LongName)),
    ("moo", Some(Class::TermOutsideAbnf)),
    ("ALL", None),
    ("IP4:192.0.2.0/24", None),
    ("-all.", Some(Class::TermOutsideAbnf)),
    ("-all:x", None),
    ("-all/8", None),
    ("ip4:192.0.2", None),
    ("ip4", None),
    ("ip6::CAFE::BABE", None),
    ("foo=%abc", None),
    ("exp=", None),
    ("redirect=", None),
    ("include:", None),
    ("a:", None),
    ("ptr/0", None),
    ("exists", None),
    ("exp=%{r}.test", None),
    ("include:h1.test/24", None),
    ("a:%{a}.test", None),
    ("exists:%(ir).bl.test", None),
    ("exists:foo%", Some(Class::TermOutsideAbnf)),
    ("redirect=-all", Some(Class::ModifierSyntax)),
    ("default=pass", None),
    ("redirect=d1.test redirect=d2.test", None),
    ("exp=exp1.test exp=exp2.test", None),
    ("a:h1.test/24//64", None),
    ("mx:d1.test//0", None),
    ("?exists:%{i}.bl.test", None),
];

fn generate(rng: &mut StdRng, index: usize) -> Case {
    let clients: Vec<&str> = V4_CLIENTS
        .iter()
        .chain(&V6_CLIENTS)
        .copied()
        .chain(["::ffff:192.0.2.10", "::ffff:198.51.100.7"])
        .collect();
    let client: IpAddr = clients
        .choose(rng)
        .and_then(|c| c.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut gen = Gen {
        rng,
        zone: ZoneText::default(),
        features: BTreeSet::new(),
        client,
        host_a: Vec::new(),
        host_aaaa: Vec::new(),
    };
    gen.hosts();
    let family = index % 10;
    match family {
        // The ptr family.
        0 | 1 => {
            gen.ptr_case();
            for depth in 1..=DOMAINS {
                let record = gen.record(depth);
                gen.zone.txt(&format!("d{depth}.test"), &record);
            }
        }
        // The syntax family: a record with one term of the table.
        2 => {
            let (term, class) = SYNTAX[gen.rng.random_range(0..SYNTAX.len())];
            if let Some(class) = class {
                gen.features.insert(class);
            }
            let before = gen.mechanism(0);
            let record = format!("v=spf1 {before} {term} -all");
            gen.zone.txt("d0.test", &record);
            for depth in 1..=DOMAINS {
                let record = gen.record(depth);
                gen.zone.txt(&format!("d{depth}.test"), &record);
            }
            gen.zone.txt("exp1.test", "denied");
        }
        // Many MX names, distinct preferences.
        3 => {
            let cidr = gen.cidr();
            let record = format!("v=spf1 mx{cidr} {}all", gen.qualifier());
            gen.zone.txt("d0.test", &record);
            let count = gen.rng.random_range(8..=12);
            for preference in 0..count {
                let host = gen.rng.random_range(1..=HOSTS);
                gen.zone
                    .line("d0.test", &format!("MX {preference} h{host}.test."));
            }
        }
        // Void lookups: terms pointing at names without addresses.
        4 => {
            let count = gen.rng.random_range(1..=4);
            let mut terms: Vec<String> = (0..count)
                .map(|i| match i % 3 {
                    0 => format!("a:nx{i}.test"),
                    1 => format!("mx:nx{i}.test"),
                    _ => format!("exists:nx{i}.test"),
                })
                .collect();
            terms.push(gen.mechanism(0));
            let record = format!("v=spf1 {} ?all", terms.join(" "));
            gen.zone.txt("d0.test", &record);
            for depth in 1..=DOMAINS {
                let record = gen.record(depth);
                gen.zone.txt(&format!("d{depth}.test"), &record);
            }
        }
        _ => gen.domains(),
    }
    let (nested, explained_include) = include_shapes(&gen.zone.0);
    if nested {
        gen.features.insert(Class::NestedInclude);
    }
    if explained_include {
        gen.features.insert(Class::ExplanationAfterInclude);
    }
    let mut faults = Vec::new();
    if gen.chance(10) {
        let name = format!("d{}.test", gen.rng.random_range(1..=DOMAINS));
        faults.push((name, Some(RecordType::Txt)));
    }
    let null_sender = gen.chance(10);
    // Now and then a domain without record (none), or a HELO that is not
    // a domain.
    let domain = match gen.rng.random_range(0..100) {
        0..=2 => "nx.test",
        3..=4 => "h1.test",
        _ => "d0.test",
    };
    let (helo, sender) = if null_sender {
        let helo = gen.pick(&["d0.test", "d0.test", "d0.test", "localhost", "[192.0.2.1]"]);
        if helo.starts_with('[') {
            gen.features.insert(Class::MalformedDomain);
        }
        (helo.to_string(), String::new())
    } else {
        (
            "mail.example.org".to_string(),
            format!("{}@{domain}", gen.pick(&["alice", "bob", "a.b-c"])),
        )
    };
    Case {
        zone: gen.zone.0,
        faults,
        ip: client,
        helo,
        sender,
        features: gen.features,
    }
}

/// Whether evaluating d0.test can reach an include inside an included
/// record (d0, or its redirect targets, includes a record that, or whose
/// redirect target, has an include), and whether a top-level record has
/// both an include and an exp=.
fn include_shapes(zone: &str) -> (bool, bool) {
    // The includes and the redirect of each dN.test record.
    let mut links: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for line in zone.lines() {
        // Records and names may be written in upper case.
        let line = line.to_ascii_lowercase();
        let Some((name, record)) = line.split_once(" txt ") else {
            continue;
        };
        let entry = links
            .entry(name.trim_end_matches('.').to_string())
            .or_default();
        for term in record.trim_matches('"').split(' ') {
            let term = term.trim_start_matches(['+', '-', '~', '?']);
            if let Some(target) = term.strip_prefix("include:") {
                entry.0.push(target.to_string());
            } else if let Some(target) = term.strip_prefix("redirect=") {
                entry.1.push(target.to_string());
            }
        }
    }
    // A domain and the redirect targets it leads to.
    let with_redirects = |start: &str| -> Vec<String> {
        let mut seen = vec![start.to_string()];
        let mut index = 0;
        while let Some(name) = seen.get(index).cloned() {
            for target in links.get(&name).map(|(_, r)| r.clone()).unwrap_or_default() {
                if !seen.contains(&target) {
                    seen.push(target);
                }
            }
            index += 1;
        }
        seen
    };
    let top = with_redirects("d0.test");
    let included: Vec<String> = top
        .iter()
        .flat_map(|name| links.get(name).map(|(i, _)| i.clone()).unwrap_or_default())
        .flat_map(|name| with_redirects(&name))
        .collect();
    let nested = included.iter().any(|name| {
        links
            .get(name)
            .is_some_and(|(includes, _)| !includes.is_empty())
    });
    let explained_include = zone.lines().any(|line| {
        let lower = line.to_ascii_lowercase();
        top.iter()
            .any(|name| lower.starts_with(&format!("{name}. txt ")))
            && lower.contains("include:")
            && lower.contains("exp=")
    });
    (nested, explained_include)
}

/// The zone of a case in memory, with the case's SERVFAILs.
struct Faulty<'z> {
    zone: &'z Zone,
    faults: &'z [(String, Option<RecordType>)],
}

impl Faulty<'_> {
    fn check<T: Send>(
        &self,
        name: &str,
        rtype: RecordType,
        answer: impl Future<Output = Result<Answer<T>, LookupError>> + Send,
    ) -> impl Future<Output = Result<Answer<T>, LookupError>> + Send {
        let failed = self
            .faults
            .iter()
            .any(|(faulty, only)| faulty == name && only.is_none_or(|only| only == rtype));
        async move {
            if failed {
                return Err(LookupError::new("SERVFAIL"));
            }
            answer.await
        }
    }
}

impl SpfLookup for Faulty<'_> {
    fn txt(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Box<[u8]>>, LookupError>> + Send {
        self.check(name, RecordType::Txt, self.zone.txt(name))
    }
    fn a(&self, name: &str) -> impl Future<Output = Result<Answer<Ipv4Addr>, LookupError>> + Send {
        self.check(name, RecordType::A, self.zone.a(name))
    }
    fn aaaa(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Ipv6Addr>, LookupError>> + Send {
        self.check(name, RecordType::Aaaa, self.zone.aaaa(name))
    }
    fn mx(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<(u16, Box<str>)>, LookupError>> + Send {
        self.check(name, RecordType::Mx, self.zone.mx(name))
    }
    fn ptr(
        &self,
        ip: IpAddr,
    ) -> impl Future<Output = Result<Answer<Box<str>>, LookupError>> + Send {
        self.check(&reverse_name(ip), RecordType::Ptr, self.zone.ptr(ip))
    }
}

fn authenticator(addr: SocketAddr) -> MessageAuthenticator {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let config = ResolverConfig::from_parts(
        None,
        vec![],
        vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])],
    );
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 1;
    opts.ndots = 0;
    opts.cache_size = 0;
    MessageAuthenticator::new(config, opts).expect("resolver")
}

fn word(result: MaSpf) -> SpfResult {
    match result {
        MaSpf::Pass => SpfResult::Pass,
        MaSpf::Fail => SpfResult::Fail,
        MaSpf::SoftFail => SpfResult::SoftFail,
        MaSpf::Neutral => SpfResult::Neutral,
        MaSpf::TempError => SpfResult::TempError,
        MaSpf::PermError => SpfResult::PermError,
        MaSpf::None => SpfResult::None,
    }
}

/// The classes that may explain a disagreement on `case`.
fn classes(case: &Case, ours: &SpfOutcome) -> BTreeSet<Class> {
    let mut classes = case.features.clone();
    if ours.reason.contains("void lookup limit") {
        classes.insert(Class::VoidLookupLimit);
    }
    classes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agrees_with_mail_auth_except_where_the_rfc_decides() {
    let seed: u64 = std::env::var("SPF_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7208);
    let count: usize = std::env::var("SPF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let mut rng = StdRng::seed_from_u64(seed);
    let dns = TestDns::start("").await.expect("test DNS server");
    let auth = authenticator(dns.addr());
    let options = SpfOptions::default();
    let mut agree = 0;
    let mut explained: BTreeMap<Class, usize> = BTreeMap::new();
    let mut exercised: BTreeMap<Class, usize> = BTreeMap::new();
    let mut results: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut bugs = Vec::new();
    for index in 0..count {
        let case = generate(&mut rng, index);
        let zone = Zone::parse(&case.zone, None)
            .unwrap_or_else(|e| panic!("case {index}: {e}\n{}", case.zone));
        dns.set_zone(zone.clone());
        dns.clear_faults();
        for (name, rtype) in &case.faults {
            dns.set_fault(name, *rtype, Fault::ServFail);
        }
        let ours = check_host(
            &Faulty {
                zone: &zone,
                faults: &case.faults,
            },
            &SpfRequest::mail_from(case.ip, &case.helo, &case.sender),
            &options,
        )
        .await;
        let ip = case.ip.to_canonical();
        let theirs = auth
            .check_host(SpfParameters::mail_from(
                ip,
                &case.helo,
                "mx.test",
                &case.sender,
            ))
            .await;
        let theirs_result = word(theirs.result());
        *results.entry(ours.result.as_str()).or_default() += 1;
        for class in &case.features {
            *exercised.entry(*class).or_default() += 1;
        }
        // Explanations are compared where both fail.
        let same_explanation = ours.result != SpfResult::Fail
            || theirs_result != SpfResult::Fail
            || ours.explanation.as_deref() == theirs.explanation();
        if ours.result == theirs_result && same_explanation {
            agree += 1;
            continue;
        }
        let classes = classes(&case, &ours);
        match classes.first() {
            Some(&class) => *explained.entry(class).or_default() += 1,
            None => bugs.push(format!(
                "case {index}: ours {} ({}) explanation {:?}; mail-auth {} explanation {:?}\n\
                 client {} helo {:?} sender {:?} faults {:?}\n{}",
                ours.result.as_str(),
                ours.reason,
                ours.explanation,
                theirs_result.as_str(),
                theirs.explanation(),
                case.ip,
                case.helo,
                case.sender,
                case.faults,
                case.zone
            )),
        }
    }
    eprintln!(
        "SPF differential (seed {seed}): {count} cases, {agree} agree; our results {results:?}; \
         disagreements by class {explained:?}; features put in {exercised:?}"
    );
    assert!(
        bugs.is_empty(),
        "{} disagreements outside the documented classes:\n\n{}",
        bugs.len(),
        bugs.join("\n\n")
    );
    // The generator reaches every result and the classes it puts in.
    for result in [
        "pass",
        "fail",
        "softfail",
        "neutral",
        "none",
        "permerror",
        "temperror",
    ] {
        assert!(
            results.contains_key(result),
            "no case gave {result}: {results:?}"
        );
    }
}
