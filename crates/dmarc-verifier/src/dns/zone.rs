//! Zone text: an RFC 1035 §5 master-file parser and the answers an
//! authoritative server gives from it.
//!
//! [`Zone::parse`] reads zone text, the format BIND and NSD read, into
//! [`ZoneRecord`]s. [`Zone::lookup`] answers one question the way an
//! authoritative server does: the records, NODATA or NXDOMAIN (RFC 8020),
//! following CNAMEs inside the zone (RFC 1034 §4.3.2) and expanding
//! wildcards (RFC 4592).
//!
//! The module does no I/O besides [`Zone::from_file`] and never touches the
//! network; the `test-dns` crate serves a [`Zone`] over UDP and TCP so that
//! tests never need the internet.
//!
//! # Syntax
//!
//! - Directives `$ORIGIN` and `$TTL` (RFC 2308 §4); `$INCLUDE` is rejected.
//! - `@` for the origin; names without a trailing dot are relative to the
//!   origin; a line that starts with a blank reuses the previous owner.
//! - An optional TTL and an optional class `IN`, in either order. TTLs are
//!   seconds or units such as `1h30m` (`s`, `m`, `h`, `d`, `w`). A record
//!   without a TTL takes `$TTL`, else the last TTL written on a record
//!   (RFC 1035 §5.1), else 3600 seconds.
//! - Parentheses continue an entry over several lines; `;` starts a comment
//!   outside quotes; `"quoted strings"` and the escapes `\X` and `\DDD`.
//! - Record types A, AAAA, CNAME, MX, NS, PTR, SOA and TXT.
//!
//! # Names
//!
//! A name is stored as text: lowercase, absolute, without the trailing dot
//! (the root is the empty string), in the canonical presentation form of
//! [`canonical_name`]: labels joined by `.`, where a `.` or `\` inside a
//! label is written `\.` or `\\`, and an octet that is not printable
//! ASCII (space, control characters, octets above 127) is written `\DDD`
//! (RFC 1035 §5.1). Zone text may write any octet of a label with the
//! escapes `\X` and `\DDD`, so a label can hold spaces or dots
//! (RFC 2181 §11: any octet is legal in a label); unescaped, a name must be
//! printable ASCII (write an internationalized name as its A-label).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::iter::Peekable;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::{Chars, FromStr};

#[cfg(test)]
mod tests;

/// TTL of a record whose zone states none, neither on the record, nor in
/// `$TTL`, nor on an earlier record.
const DEFAULT_TTL: u32 = 3600;
/// RFC 2181 §8: a TTL is an unsigned number from 0 to 2^31 - 1.
const MAX_TTL: u32 = 2_147_483_647;
/// RFC 1035 §2.3.4: labels are 63 octets or less.
const MAX_LABEL_LEN: usize = 63;
/// RFC 1035 §2.3.4 limits names to 255 octets on the wire, that is 253
/// characters in text without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// RFC 1035 §3.3: a character-string is at most 255 octets.
const MAX_CHARACTER_STRING_LEN: usize = 255;
/// The longest CNAME chain [`Zone::lookup`] follows.
const MAX_CNAME_CHAIN: usize = 8;

/// Record types the zone understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// An IPv4 address (RFC 1035 §3.4.1), code 1.
    A,
    /// An IPv6 address (RFC 3596), code 28.
    Aaaa,
    /// The canonical name of an alias (RFC 1035 §3.3.1), code 5.
    Cname,
    /// A mail exchanger (RFC 1035 §3.3.9), code 15.
    Mx,
    /// An authoritative name server (RFC 1035 §3.3.11), code 2.
    Ns,
    /// A domain name pointer (RFC 1035 §3.3.12), code 12.
    Ptr,
    /// The start of a zone of authority (RFC 1035 §3.3.13), code 6.
    Soa,
    /// Text strings (RFC 1035 §3.3.14), code 16.
    Txt,
}

impl RecordType {
    const ALL: [RecordType; 8] = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Cname,
        RecordType::Mx,
        RecordType::Ns,
        RecordType::Ptr,
        RecordType::Soa,
        RecordType::Txt,
    ];

    /// The mnemonic of the type as written in zone text: `"A"`, `"AAAA"`,
    /// `"CNAME"`, `"MX"`, `"NS"`, `"PTR"`, `"SOA"` or `"TXT"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Mx => "MX",
            RecordType::Ns => "NS",
            RecordType::Ptr => "PTR",
            RecordType::Soa => "SOA",
            RecordType::Txt => "TXT",
        }
    }

    /// The type for a TYPE code of the wire format, or `None` for a type
    /// the zone does not understand.
    ///
    /// # Examples
    ///
    /// ```
    /// use dmarc_verifier::dns::zone::RecordType;
    ///
    /// assert_eq!(RecordType::from_code(16), Some(RecordType::Txt));
    /// assert_eq!(RecordType::from_code(99), None);
    /// ```
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|rtype| rtype.code() == code)
    }

    /// The TYPE code of the wire format (RFC 1035 §3.2.2, RFC 3596 §2.1).
    pub fn code(&self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Ns => 2,
            RecordType::Cname => 5,
            RecordType::Soa => 6,
            RecordType::Ptr => 12,
            RecordType::Mx => 15,
            RecordType::Txt => 16,
            RecordType::Aaaa => 28,
        }
    }
}

impl fmt::Display for RecordType {
    /// Writes the mnemonic, as [`RecordType::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordType {
    type Err = UnknownRecordType;

    /// Reads a mnemonic such as `"TXT"`, ignoring case.
    ///
    /// # Errors
    ///
    /// [`UnknownRecordType`] for any other text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|rtype| rtype.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownRecordType(s.to_owned()))
    }
}

/// The error of reading a record type mnemonic the zone does not
/// understand; it holds the text read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRecordType(String);

impl UnknownRecordType {
    /// The text that is not a known record type.
    pub fn text(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnknownRecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown record type {:?}", self.0)
    }
}

impl std::error::Error for UnknownRecordType {}

/// One record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// The canonical name (see [Names](self#names)).
    Cname(String),
    /// A mail exchanger.
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// The exchanger's name (see [Names](self#names)).
        exchange: String,
    },
    /// A name server's name (see [Names](self#names)).
    Ns(String),
    /// The name an address maps back to (see [Names](self#names)).
    Ptr(String),
    /// The start of a zone of authority.
    Soa {
        /// The primary name server.
        mname: String,
        /// The mailbox of the person responsible, as a name.
        rname: String,
        /// The version of the zone.
        serial: u32,
        /// Seconds between refreshes of a secondary.
        refresh: u32,
        /// Seconds between retries of a failed refresh.
        retry: u32,
        /// Seconds after which a secondary stops answering.
        expire: u32,
        /// The TTL of negative answers (RFC 2308 §4).
        minimum: u32,
    },
    /// The character-strings of one TXT record, in order (bytes, escapes
    /// decoded: \" \\ \DDD).
    Txt(Vec<Vec<u8>>),
}

impl RecordData {
    /// The type of this data.
    pub fn record_type(&self) -> RecordType {
        match self {
            RecordData::A(_) => RecordType::A,
            RecordData::Aaaa(_) => RecordType::Aaaa,
            RecordData::Cname(_) => RecordType::Cname,
            RecordData::Mx { .. } => RecordType::Mx,
            RecordData::Ns(_) => RecordType::Ns,
            RecordData::Ptr(_) => RecordType::Ptr,
            RecordData::Soa { .. } => RecordType::Soa,
            RecordData::Txt(_) => RecordType::Txt,
        }
    }
}

/// One resource record of a zone (class IN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    /// The owner name: lowercase, absolute, no trailing dot (the root is
    /// `""`), escaped as [Names](self#names) says.
    pub name: String,
    /// Time to live, in seconds.
    pub ttl: u32,
    /// The record's type and data.
    pub data: RecordData,
}

/// What the zone answers to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneAnswer {
    /// Records of the asked type at the name, after following CNAMEs inside
    /// the zone. `chain` lists CNAME records followed, in order (empty when
    /// none).
    ///
    /// Every record carries the name it answers for: the asked name, or the
    /// target of the last CNAME, even when a wildcard supplied the data.
    Records {
        /// The CNAME records followed, in order.
        chain: Vec<ZoneRecord>,
        /// The records of the asked type.
        records: Vec<ZoneRecord>,
    },
    /// The name exists (it has records of some type, or is an empty
    /// non-terminal: a name below it exists) but has none of this type.
    /// Also after a CNAME chain ending at such a name, and when a CNAME
    /// chain loops or is longer than 8 records.
    NoData {
        /// The CNAME records followed, in order.
        chain: Vec<ZoneRecord>,
    },
    /// The name does not exist in the zone (RFC 8020: nothing exists below
    /// it either). Also when the last CNAME of a chain points to such a
    /// name (RFC 6604 §2.1).
    NxDomain {
        /// The CNAME records followed, in order.
        chain: Vec<ZoneRecord>,
    },
}

impl ZoneAnswer {
    /// The CNAME records followed before this answer, in order.
    pub fn chain(&self) -> &[ZoneRecord] {
        match self {
            ZoneAnswer::Records { chain, .. }
            | ZoneAnswer::NoData { chain }
            | ZoneAnswer::NxDomain { chain } => chain,
        }
    }

    /// The name the answer is finally about: the target of the last CNAME
    /// of the chain, or `qname` (normalized: lowercase, without the
    /// trailing dot) when there is no chain.
    ///
    /// A server puts the SOA of this name's zone in the authority section
    /// of a negative answer (RFC 2308 §3); see [`Zone::soa`].
    pub fn final_name(&self, qname: &str) -> String {
        match self.chain().last().map(|record| &record.data) {
            Some(RecordData::Cname(target)) => normalize_name(target),
            _ => normalize_name(qname),
        }
    }
}

/// A zone text that cannot be read, with the line at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError {
    /// The 1-based line the error is on; 0 when the error concerns no line
    /// (an unreadable file, an invalid origin).
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The file, when the text came from [`Zone::from_file`].
    pub path: Option<PathBuf>,
}

impl ZoneError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        ZoneError {
            line,
            message: message.into(),
            path: None,
        }
    }
}

impl fmt::Display for ZoneError {
    /// Writes `<path> line N: <message>`, with `zone` for the path of text
    /// that came from no file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} line {}: {}", path.display(), self.line, self.message),
            None => write!(f, "zone line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for ZoneError {}

/// The records of a zone, indexed for answering questions.
///
/// A `Zone` is authoritative for every name in it and above it: the
/// ancestors of every owner name exist as empty non-terminals, and any
/// other name does not exist. It may hold several apexes (several SOA
/// records) or none.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// All records, in the order they were added.
    records: Vec<ZoneRecord>,
    /// Owner name → type → indexes into `records`.
    rrsets: HashMap<String, BTreeMap<RecordType, Vec<usize>>>,
    /// The names that exist: every owner name and all its ancestors up to
    /// the root (RFC 8020: a name with a name below it exists).
    nodes: HashSet<String>,
}

impl Zone {
    /// Parses zone text. `origin`: the initial $ORIGIN (absolute, trailing
    /// dot optional); None means the root.
    ///
    /// Each character-string of a TXT record is at most 255 octets
    /// (RFC 1035 §3.3): a longer string in the text is accepted and split
    /// into 255-octet strings, the way DKIM keys are published. A record
    /// that repeats another one (same name and data) is dropped
    /// (RFC 2181 §5).
    ///
    /// # Errors
    ///
    /// A [`ZoneError`] naming the line for the first error: a syntax error,
    /// an unknown record type or directive, `$INCLUDE`, a class other than
    /// IN, a label longer than 63 octets or a name longer than 253
    /// characters, a bad TTL, address or number, a missing or extra field.
    /// An invalid `origin` is an error on line 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use dmarc_verifier::dns::zone::{RecordType, Zone, ZoneAnswer};
    ///
    /// let zone = Zone::parse(
    ///     "$TTL 300\n\
    ///      @       IN SOA ns.example.com. hostmaster.example.com. 1 7200 900 1209600 60\n\
    ///      _dmarc  IN TXT \"v=DMARC1; p=reject\"\n",
    ///     Some("example.com."),
    /// )?;
    /// let ZoneAnswer::Records { records, .. } = zone.lookup("_dmarc.Example.COM.", RecordType::Txt)
    /// else {
    ///     panic!("expected a TXT record");
    /// };
    /// assert_eq!(records[0].name, "_dmarc.example.com");
    /// assert_eq!(records[0].ttl, 300);
    /// # Ok::<(), dmarc_verifier::dns::zone::ZoneError>(())
    /// ```
    pub fn parse(text: &str, origin: Option<&str>) -> Result<Zone, ZoneError> {
        let origin = match origin {
            None => String::new(),
            Some(origin) => {
                let invalid = |message| ZoneError::new(0, format!("invalid origin: {message}"));
                let (labels, _) = decode_name(origin, true).map_err(invalid)?;
                check_labels(&labels).map_err(invalid)?;
                canonical_name(labels.iter().map(Vec::as_slice))
            }
        };
        let mut parser = Parser {
            origin,
            default_ttl: None,
            last_ttl: None,
            last_owner: None,
            zone: Zone::default(),
        };
        // A byte order mark some editors write is not part of the text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for entry in tokenize(text)? {
            parser.entry(entry)?;
        }
        Ok(parser.zone)
    }

    /// Reads and parses a file; the error carries the path. An unreadable
    /// file is a ZoneError with line 0.
    ///
    /// The origin is the root: start the file with `$ORIGIN` to write
    /// relative names.
    ///
    /// # Errors
    ///
    /// A [`ZoneError`] with `path` set: line 0 when the file cannot be read
    /// or is not UTF-8, else as [`Zone::parse`].
    pub fn from_file(path: &Path) -> Result<Zone, ZoneError> {
        let with_path = |mut error: ZoneError| {
            error.path = Some(path.to_owned());
            error
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| with_path(ZoneError::new(0, format!("cannot read: {error}"))))?;
        Zone::parse(&text, None).map_err(with_path)
    }

    /// Answers a question. Name matching is case-insensitive; a trailing
    /// dot on `name` is ignored. `name` is read in presentation format:
    /// `\.`, `\\`, `\X` and `\DDD` are decoded (a label holding a dot is
    /// written `\.`), any other character stands for itself (a space is a
    /// space), as [`name_labels`] reads it.
    ///
    /// - Records of type `rtype` at the name: [`ZoneAnswer::Records`].
    /// - A CNAME at the name and `rtype` is not CNAME: the CNAME is followed
    ///   inside the zone (RFC 1034 §4.3.2) and the answer is about its
    ///   target, with the CNAME records followed in `chain`. At most 8
    ///   CNAMEs are followed: when the name reached after 8 still has a
    ///   CNAME, or a CNAME points back to a name of the chain (a loop, the
    ///   closing CNAME included in the chain), the answer is
    ///   [`ZoneAnswer::NoData`] with the chain so far. A name with both a
    ///   CNAME and records of `rtype` (which RFC 1034 §3.6.2 forbids)
    ///   answers the records.
    /// - The name exists but has no such records (including an empty
    ///   non-terminal): [`ZoneAnswer::NoData`].
    /// - Otherwise [`ZoneAnswer::NxDomain`] (RFC 8020: nothing below it
    ///   exists either).
    ///
    /// Wildcards (RFC 4592): a name that does not exist is answered from
    /// `*.<closest encloser>` when that wildcard exists, the closest
    /// encloser being the longest existing ancestor of the name. The
    /// records are returned with the asked name as their owner. A wildcard
    /// does not match a name that exists, nor a name below an existing name
    /// other than the wildcard's parent (RFC 4592 §3.3.1).
    ///
    /// # Examples
    ///
    /// ```
    /// use dmarc_verifier::dns::zone::{RecordType, Zone, ZoneAnswer};
    ///
    /// let zone = Zone::parse(
    ///     "www.example.com. CNAME host.example.com.\n\
    ///      host.example.com. A 192.0.2.1\n",
    ///     None,
    /// )?;
    /// let answer = zone.lookup("www.example.com", RecordType::A);
    /// assert_eq!(answer.chain().len(), 1);
    /// assert!(matches!(answer, ZoneAnswer::Records { .. }));
    /// assert!(matches!(
    ///     zone.lookup("host.example.com", RecordType::Txt),
    ///     ZoneAnswer::NoData { .. }
    /// ));
    /// assert!(matches!(
    ///     zone.lookup("nowhere.example.com", RecordType::A),
    ///     ZoneAnswer::NxDomain { .. }
    /// ));
    /// # Ok::<(), dmarc_verifier::dns::zone::ZoneError>(())
    /// ```
    pub fn lookup(&self, name: &str, rtype: RecordType) -> ZoneAnswer {
        let mut current = normalize_name(name);
        let mut chain: Vec<ZoneRecord> = Vec::new();
        loop {
            let Some(source) = self.source_of(&current) else {
                return ZoneAnswer::NxDomain { chain };
            };
            let records = self.records_at(&source, rtype, &current);
            if !records.is_empty() {
                return ZoneAnswer::Records { chain, records };
            }
            if rtype == RecordType::Cname {
                return ZoneAnswer::NoData { chain };
            }
            let Some(cname) = self
                .records_at(&source, RecordType::Cname, &current)
                .into_iter()
                .next()
            else {
                return ZoneAnswer::NoData { chain };
            };
            let RecordData::Cname(target) = &cname.data else {
                return ZoneAnswer::NoData { chain };
            };
            let target = normalize_name(target);
            if chain.len() == MAX_CNAME_CHAIN {
                return ZoneAnswer::NoData { chain };
            }
            // Every record of the chain is named after a name visited.
            chain.push(cname);
            if chain.iter().any(|record| record.name == target) {
                return ZoneAnswer::NoData { chain };
            }
            current = target;
        }
    }

    /// The SOA record of the zone `name` is in: the SOA at the name or at
    /// its closest ancestor that has one. Matching is case-insensitive; a
    /// trailing dot is ignored.
    ///
    /// A server sends it in the authority section of a negative answer
    /// (RFC 2308 §3) about [`ZoneAnswer::final_name`].
    pub fn soa(&self, name: &str) -> Option<&ZoneRecord> {
        let name = normalize_name(name);
        let mut node = Some(name.as_str());
        while let Some(current) = node {
            let soa = self
                .rrsets
                .get(current)
                .and_then(|types| types.get(&RecordType::Soa))
                .and_then(|indexes| indexes.first())
                .and_then(|&index| self.records.get(index));
            if soa.is_some() {
                return soa;
            }
            node = parent(current);
        }
        None
    }

    /// How long a resolver may cache a negative answer about `name`
    /// (RFC 2308 §5): the smaller of the TTL and the MINIMUM field of the
    /// SOA found by [`Zone::soa`], or `None` when the zone has no SOA
    /// enclosing the name.
    pub fn negative_ttl(&self, name: &str) -> Option<u32> {
        let soa = self.soa(name)?;
        match soa.data {
            RecordData::Soa { minimum, .. } => Some(minimum.min(soa.ttl)),
            _ => None,
        }
    }

    /// All records, in the order they were parsed or inserted.
    pub fn records(&self) -> impl Iterator<Item = &ZoneRecord> {
        self.records.iter()
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the zone has no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds a record programmatically (tests).
    ///
    /// The owner name, and the names in the data (CNAME, MX, NS, PTR and
    /// SOA), are read as [`Zone::lookup`] reads a name and stored in the
    /// canonical form (lowercase, no trailing dot, escapes as
    /// [Names](self#names) says); they are not otherwise checked. A record
    /// equal to one already present (same name and data, whatever the TTL)
    /// is ignored (RFC 2181 §5).
    pub fn insert(&mut self, mut record: ZoneRecord) {
        record.name = normalize_name(&record.name);
        match &mut record.data {
            RecordData::Cname(target) | RecordData::Ns(target) | RecordData::Ptr(target) => {
                *target = normalize_name(target);
            }
            RecordData::Mx { exchange, .. } => *exchange = normalize_name(exchange),
            RecordData::Soa { mname, rname, .. } => {
                *mname = normalize_name(mname);
                *rname = normalize_name(rname);
            }
            RecordData::A(_) | RecordData::Aaaa(_) | RecordData::Txt(_) => {}
        }
        let rrset = self
            .rrsets
            .entry(record.name.clone())
            .or_default()
            .entry(record.data.record_type())
            .or_default();
        let duplicate = rrset.iter().any(|&index| {
            self.records
                .get(index)
                .is_some_and(|existing| existing.data == record.data)
        });
        if duplicate {
            return;
        }
        rrset.push(self.records.len());
        let mut node = Some(record.name.as_str());
        while let Some(name) = node {
            // The ancestors of a known node are known already.
            if !self.nodes.insert(name.to_owned()) {
                break;
            }
            node = parent(name);
        }
        self.records.push(record);
    }

    /// The name whose records answer for `name`: `name` itself when it
    /// exists, else the wildcard of its closest encloser when that exists
    /// (RFC 4592 §3.3.1), else none: the name does not exist.
    fn source_of<'a>(&self, name: &'a str) -> Option<Cow<'a, str>> {
        if self.nodes.contains(name) {
            return Some(Cow::Borrowed(name));
        }
        let mut ancestor = parent(name);
        while let Some(encloser) = ancestor {
            if self.nodes.contains(encloser) {
                let wildcard = if encloser.is_empty() {
                    "*".to_owned()
                } else {
                    format!("*.{encloser}")
                };
                return self
                    .nodes
                    .contains(&wildcard)
                    .then_some(Cow::Owned(wildcard));
            }
            ancestor = parent(encloser);
        }
        None
    }

    /// Copies of the records of `rtype` owned by `source`, renamed to
    /// `name` (they differ when `source` is a wildcard).
    fn records_at(&self, source: &str, rtype: RecordType, name: &str) -> Vec<ZoneRecord> {
        self.rrsets
            .get(source)
            .and_then(|types| types.get(&rtype))
            .into_iter()
            .flatten()
            .filter_map(|&index| self.records.get(index))
            .map(|record| ZoneRecord {
                name: name.to_owned(),
                ttl: record.ttl,
                data: record.data.clone(),
            })
            .collect()
    }
}

/// A name in the canonical text form of this module, from its labels
/// (the root is no label).
///
/// ASCII letters are lowercased (RFC 4343: names compare without case);
/// labels are joined by `.`; inside a label `.` is written `\.`, `\` is
/// written `\\`, and an octet that is not printable ASCII (below 0x21 or
/// above 0x7E, space included) is written `\DDD` with its decimal value
/// (RFC 1035 §5.1). Every other octet is written as itself. The result
/// reads back to the same labels with [`name_labels`].
///
/// # Examples
///
/// ```
/// use dmarc_verifier::dns::zone::canonical_name;
///
/// let labels: [&[u8]; 3] = [b"Macro%Percent  Space", b"example", b"com"];
/// assert_eq!(canonical_name(labels), "macro%percent\\032\\032space.example.com");
/// let labels: [&[u8]; 2] = [b"a.b", b"example"];
/// assert_eq!(canonical_name(labels), "a\\.b.example");
/// ```
pub fn canonical_name<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut text = String::new();
    for (index, label) in labels.into_iter().enumerate() {
        if index > 0 {
            text.push('.');
        }
        push_canonical_label(&mut text, label);
    }
    text
}

/// Appends one label in the canonical text form (see [`canonical_name`]).
fn push_canonical_label(text: &mut String, label: &[u8]) {
    for &octet in label {
        match octet {
            b'.' => text.push_str("\\."),
            b'\\' => text.push_str("\\\\"),
            0x21..=0x7e => text.push(char::from(octet.to_ascii_lowercase())),
            _ => {
                text.push('\\');
                text.push(char::from(b'0' + octet / 100));
                text.push(char::from(b'0' + octet / 10 % 10));
                text.push(char::from(b'0' + octet % 10));
            }
        }
    }
}

/// The labels of a name written in presentation format (RFC 1035 §5.1):
/// labels separated by unescaped dots, `\X` for the character X, `\DDD`
/// for the octet of decimal value DDD. A trailing unescaped dot is
/// ignored; `""` and `"."` are the root (no label). Case is kept.
///
/// `None` when the text is not a name: an escape cut short (`\` at the
/// end, `\DDD` with fewer than three digits or above 255) or an empty
/// label (`a..b`, `.a`).
///
/// # Examples
///
/// ```
/// use dmarc_verifier::dns::zone::name_labels;
///
/// assert_eq!(
///     name_labels("a\\.b\\032c.Example."),
///     Some(vec![b"a.b c".to_vec(), b"Example".to_vec()])
/// );
/// assert_eq!(name_labels("."), Some(vec![]));
/// assert_eq!(name_labels("a..b"), None);
/// ```
pub fn name_labels(text: &str) -> Option<Vec<Vec<u8>>> {
    decode_name(text, false).ok().map(|(labels, _)| labels)
}

/// Decodes a name in presentation format into its labels and whether it
/// was absolute (ended with an unescaped dot).
///
/// `strict` (zone text): an unescaped character must be printable ASCII,
/// a character escaped as `\X` must be ASCII. Otherwise any character
/// stands for its UTF-8 octets.
fn decode_name(text: &str, strict: bool) -> Result<(Vec<Vec<u8>>, bool), String> {
    if text.is_empty() || text == "." {
        return Ok((Vec::new(), text == "."));
    }
    let mut labels = Vec::new();
    let mut label = Vec::new();
    let mut absolute = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if label.is_empty() {
                    return Err(format!("empty label in domain name {text:?}"));
                }
                labels.push(mem::take(&mut label));
                absolute = chars.peek().is_none();
            }
            '\\' => {
                let Some(escaped) = chars.next() else {
                    return Err(format!("'\\' at the end of domain name {text:?}"));
                };
                match escaped.to_digit(10) {
                    Some(first) => {
                        let mut value = first;
                        for _ in 0..2 {
                            let digit = chars.next_if(char::is_ascii_digit).ok_or_else(|| {
                                format!("a \\DDD escape needs three decimal digits in {text:?}")
                            })?;
                            value = value * 10 + digit.to_digit(10).unwrap_or(0);
                        }
                        let octet = u8::try_from(value).map_err(|_| {
                            format!("escape \\{value} is not an octet (0 to 255) in {text:?}")
                        })?;
                        label.push(octet);
                    }
                    // `\X`: any ASCII character, a blank included.
                    None => {
                        push_name_char(&mut label, escaped, strict && !escaped.is_ascii(), text)?
                    }
                }
            }
            _ => push_name_char(&mut label, c, strict && !c.is_ascii_graphic(), text)?,
        }
    }
    if !absolute {
        labels.push(label);
    }
    Ok((labels, absolute))
}

/// Adds a character to a label being decoded, or refuses it when
/// `refuse`.
fn push_name_char(label: &mut Vec<u8>, c: char, refuse: bool, text: &str) -> Result<(), String> {
    if refuse {
        return Err(format!(
            "invalid character {c:?} in domain name {text:?} \
             (write internationalized names as A-labels, other octets as \\DDD)"
        ));
    }
    label.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    Ok(())
}

/// Checks the labels of a name against RFC 1035 §2.3.4: labels of 63
/// octets or less, 255 octets on the wire (253 in text without escapes
/// and the trailing dot).
fn check_labels(labels: &[Vec<u8>]) -> Result<(), String> {
    for label in labels {
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label \"{}\" is longer than {MAX_LABEL_LEN} octets ({} octets)",
                label.escape_ascii(),
                label.len()
            ));
        }
    }
    let length = labels
        .iter()
        .map(|label| label.len() + 1)
        .sum::<usize>()
        .saturating_sub(1);
    if length > MAX_NAME_LEN {
        return Err(format!(
            "domain name is longer than {MAX_NAME_LEN} characters ({length} characters)"
        ));
    }
    Ok(())
}

/// A name in the canonical text form of this module (see
/// [Names](self#names)): read as [`name_labels`] reads it (escapes
/// decoded, any other character standing for itself), lowercased, one
/// trailing dot removed, and written again as [`canonical_name`] writes
/// it. Text that is not a name (an escape cut short, an empty label) is
/// only lowercased and stripped of one trailing dot: no record can have
/// such a name.
///
/// # Examples
///
/// ```
/// use dmarc_verifier::dns::zone::normalize_name;
///
/// assert_eq!(normalize_name("Mail.Example.COM."), "mail.example.com");
/// assert_eq!(normalize_name("a b\\046c.example"), "a\\032b\\.c.example");
/// ```
pub fn normalize_name(name: &str) -> String {
    let plain = name
        .bytes()
        .all(|octet| (0x21..=0x7e).contains(&octet) && octet != b'\\');
    if !plain {
        if let Ok((labels, _)) = decode_name(name, false) {
            return canonical_name(labels.iter().map(Vec::as_slice));
        }
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// The name one label up (the text after the first unescaped dot); none
/// for the root.
fn parent(name: &str) -> Option<&str> {
    if name.is_empty() {
        return None;
    }
    let mut octets = name.bytes().enumerate();
    while let Some((index, octet)) = octets.next() {
        match octet {
            // The escaped character (or the first digit of \DDD) is not
            // a separator.
            b'\\' => {
                octets.next();
            }
            b'.' => return Some(name.get(index + 1..).unwrap_or("")),
            _ => {}
        }
    }
    Some("")
}

/// A time value in seconds, at most `max`: digits alone, or numbers each
/// followed by a unit (`s`, `m`, `h`, `d`, `w`, any case) as in `1h30m`.
fn parse_time(text: &str, max: u32) -> Result<u32, String> {
    let invalid = || format!("invalid time value {text:?}");
    let too_large = || format!("time value {text:?} is out of range (at most {max})");
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    let mut has_unit = false;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let value = number.unwrap_or(0) * 10 + u64::from(digit);
            if value > u64::from(max) {
                return Err(too_large());
            }
            number = Some(value);
            continue;
        }
        let unit: u64 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(invalid()),
        };
        let value = number.take().ok_or_else(invalid)?;
        total += value * unit;
        if total > u64::from(max) {
            return Err(too_large());
        }
        has_unit = true;
    }
    match (number, has_unit) {
        (Some(seconds), false) => Ok(u32::try_from(seconds).map_err(|_| too_large())?),
        (None, true) => Ok(u32::try_from(total).map_err(|_| too_large())?),
        // "" or a number without a unit after one with a unit ("1h30").
        _ => Err(invalid()),
    }
}

/// One token of zone text.
#[derive(Debug)]
struct Token {
    /// The text as written, escapes not decoded, quotes removed.
    text: String,
    /// The octets meant, escapes decoded (RFC 1035 §5.1).
    bytes: Vec<u8>,
    /// Whether the token was a quoted string.
    quoted: bool,
    /// The line the token starts on.
    line: usize,
}

/// One entry of zone text: a directive or a record, possibly spanning
/// lines inside parentheses.
#[derive(Debug, Default)]
struct Entry {
    /// The line the entry starts on.
    line: usize,
    /// Whether the line starts with a blank: the owner is the previous one.
    owner_omitted: bool,
    tokens: Vec<Token>,
}

/// Splits zone text into entries of tokens (RFC 1035 §5.1): blanks separate
/// tokens, a line ends an entry unless parentheses are open, `;` starts a
/// comment, `"` quotes a string, `\` escapes.
fn tokenize(text: &str) -> Result<Vec<Entry>, ZoneError> {
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut entries = Vec::new();
    let mut entry = Entry::default();
    let mut line_start = true;
    let mut open_parens = 0usize;
    let mut first_paren_line = 0;
    while let Some(&c) = chars.peek() {
        if line_start {
            entry.line = line;
            entry.owner_omitted = c == ' ' || c == '\t';
            line_start = false;
        }
        match c {
            '\n' => {
                chars.next();
                line += 1;
                if open_parens == 0 {
                    if !entry.tokens.is_empty() {
                        entries.push(mem::take(&mut entry));
                    }
                    line_start = true;
                }
            }
            ' ' | '\t' | '\r' => {
                chars.next();
            }
            ';' => while chars.next_if(|&c| c != '\n').is_some() {},
            '(' => {
                chars.next();
                if open_parens == 0 {
                    first_paren_line = line;
                }
                open_parens += 1;
            }
            ')' => {
                chars.next();
                open_parens = open_parens
                    .checked_sub(1)
                    .ok_or_else(|| ZoneError::new(line, "')' without a matching '('"))?;
            }
            '"' => {
                chars.next();
                entry.tokens.push(quoted_string(&mut chars, line)?);
            }
            _ => entry.tokens.push(word(&mut chars, line)?),
        }
    }
    if open_parens > 0 {
        return Err(ZoneError::new(first_paren_line, "'(' is never closed"));
    }
    if !entry.tokens.is_empty() {
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads an unquoted token, up to a blank, the end of the line, `;`, a
/// parenthesis or a quote.
fn word(chars: &mut Peekable<Chars<'_>>, line: usize) -> Result<Token, ZoneError> {
    let mut token = Token {
        text: String::new(),
        bytes: Vec::new(),
        quoted: false,
        line,
    };
    while let Some(c) =
        chars.next_if(|&c| !matches!(c, ' ' | '\t' | '\r' | '\n' | ';' | '(' | ')' | '"'))
    {
        push_char(&mut token, c, chars, line)?;
    }
    Ok(token)
}

/// Reads a quoted string after its opening quote, up to the closing quote,
/// which must be on the same line.
fn quoted_string(chars: &mut Peekable<Chars<'_>>, line: usize) -> Result<Token, ZoneError> {
    let mut token = Token {
        text: String::new(),
        bytes: Vec::new(),
        quoted: true,
        line,
    };
    loop {
        match chars.next_if(|&c| c != '\n') {
            None => return Err(ZoneError::new(line, "quoted string not closed on its line")),
            Some('"') => return Ok(token),
            Some(c) => push_char(&mut token, c, chars, line)?,
        }
    }
}

/// Adds one character of a token, decoding an escape when it is `\`
/// (RFC 1035 §5.1: `\X` is X without its special meaning, `\DDD` is the
/// octet of decimal value DDD).
fn push_char(
    token: &mut Token,
    c: char,
    chars: &mut Peekable<Chars<'_>>,
    line: usize,
) -> Result<(), ZoneError> {
    if c != '\\' {
        token.text.push(c);
        token
            .bytes
            .extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        return Ok(());
    }
    token.text.push('\\');
    let Some(escaped) = chars.next_if(|&c| c != '\n') else {
        return Err(ZoneError::new(line, "'\\' at the end of a line"));
    };
    token.text.push(escaped);
    let Some(first) = escaped.to_digit(10) else {
        token
            .bytes
            .extend_from_slice(escaped.encode_utf8(&mut [0; 4]).as_bytes());
        return Ok(());
    };
    let mut value = first;
    for _ in 0..2 {
        let Some(digit) = chars.next_if(char::is_ascii_digit) else {
            return Err(ZoneError::new(
                line,
                "a \\DDD escape needs three decimal digits",
            ));
        };
        token.text.push(digit);
        value = value * 10 + digit.to_digit(10).unwrap_or(0);
    }
    let octet = u8::try_from(value).map_err(|_| {
        ZoneError::new(line, format!("escape \\{value} is not an octet (0 to 255)"))
    })?;
    token.bytes.push(octet);
    Ok(())
}

/// The state of a parse: the directives in force and the records so far.
struct Parser {
    origin: String,
    /// The `$TTL` in force (RFC 2308 §4).
    default_ttl: Option<u32>,
    /// The last TTL written on a record (RFC 1035 §5.1).
    last_ttl: Option<u32>,
    last_owner: Option<String>,
    zone: Zone,
}

impl Parser {
    fn entry(&mut self, entry: Entry) -> Result<(), ZoneError> {
        let mut tokens = entry.tokens.into_iter().peekable();
        if let Some(first) = tokens.next_if(|token| !token.quoted && token.text.starts_with('$')) {
            return self.directive(first, tokens.collect());
        }
        let owner = if entry.owner_omitted {
            self.last_owner.clone().ok_or_else(|| {
                ZoneError::new(
                    entry.line,
                    "no owner name: the line starts with a blank and no record precedes it",
                )
            })?
        } else {
            match tokens.next() {
                Some(token) => self.name(&token)?,
                None => return Ok(()),
            }
        };
        self.last_owner = Some(owner.clone());

        let mut ttl = None;
        let mut class_seen = false;
        let mut last_line = entry.line;
        // RFC 1035 §5.1: [<TTL>] [<class>] <type> or [<class>] [<TTL>] <type>.
        let rtype_token = loop {
            let Some(token) = tokens.next() else {
                return Err(ZoneError::new(last_line, "missing record type"));
            };
            last_line = token.line;
            if token.quoted {
                return Err(ZoneError::new(
                    token.line,
                    format!(
                        "expected a record type, found the quoted string {:?}",
                        token.text
                    ),
                ));
            }
            if token.text.eq_ignore_ascii_case("IN") {
                if class_seen {
                    return Err(ZoneError::new(token.line, "class IN written twice"));
                }
                class_seen = true;
            } else if is_other_class(&token.text) {
                return Err(ZoneError::new(
                    token.line,
                    format!("class {:?} is not supported (only IN)", token.text),
                ));
            } else if token.text.starts_with(|c: char| c.is_ascii_digit()) {
                if ttl.is_some() {
                    return Err(ZoneError::new(token.line, "TTL written twice"));
                }
                let value = parse_time(&token.text, MAX_TTL)
                    .map_err(|message| ZoneError::new(token.line, format!("TTL: {message}")))?;
                ttl = Some(value);
            } else {
                break token;
            }
        };
        let rtype = RecordType::from_str(&rtype_token.text)
            .map_err(|error| ZoneError::new(rtype_token.line, error.to_string()))?;
        let ttl = match ttl {
            Some(ttl) => {
                self.last_ttl = Some(ttl);
                ttl
            }
            None => self.default_ttl.or(self.last_ttl).unwrap_or(DEFAULT_TTL),
        };
        let fields: Vec<Token> = tokens.collect();
        let data = self.rdata(rtype, &fields, rtype_token.line)?;
        self.zone.insert(ZoneRecord {
            name: owner,
            ttl,
            data,
        });
        Ok(())
    }

    fn directive(&mut self, directive: Token, arguments: Vec<Token>) -> Result<(), ZoneError> {
        let line = directive.line;
        let single_argument = |what: &str| -> Result<&Token, ZoneError> {
            match arguments.as_slice() {
                [argument] => Ok(argument),
                [] => Err(ZoneError::new(
                    line,
                    format!("{} needs {what}", directive.text),
                )),
                [_, extra, ..] => Err(ZoneError::new(
                    extra.line,
                    format!("{} takes only {what}", directive.text),
                )),
            }
        };
        match directive.text.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let origin = self.name(single_argument("a domain name")?)?;
                self.origin = origin;
            }
            "$TTL" => {
                let argument = single_argument("a TTL")?;
                let ttl = parse_time(&argument.text, MAX_TTL)
                    .map_err(|message| ZoneError::new(argument.line, format!("$TTL: {message}")))?;
                self.default_ttl = Some(ttl);
            }
            "$INCLUDE" => {
                return Err(ZoneError::new(line, "$INCLUDE is not supported"));
            }
            _ => {
                return Err(ZoneError::new(
                    line,
                    format!("unknown directive {:?}", directive.text),
                ));
            }
        }
        Ok(())
    }

    /// Reads a domain name: `@` is the origin, a name without a trailing
    /// dot is relative to the origin (RFC 1035 §5.1).
    fn name(&self, token: &Token) -> Result<String, ZoneError> {
        if token.quoted {
            return Err(ZoneError::new(
                token.line,
                format!(
                    "expected a domain name, found the quoted string {:?}",
                    token.text
                ),
            ));
        }
        let error = |message| ZoneError::new(token.line, message);
        if token.text == "@" {
            return Ok(self.origin.clone());
        }
        // RFC 1035 §5.1: escapes \X and \DDD may stand for any octet.
        let (mut labels, absolute) = decode_name(&token.text, true).map_err(error)?;
        if !absolute {
            let (origin, _) = decode_name(&self.origin, false).map_err(error)?;
            labels.extend(origin);
        }
        check_labels(&labels).map_err(error)?;
        Ok(canonical_name(labels.iter().map(Vec::as_slice)))
    }

    fn rdata(
        &self,
        rtype: RecordType,
        fields: &[Token],
        type_line: usize,
    ) -> Result<RecordData, ZoneError> {
        let data = match rtype {
            RecordType::A => {
                let [address] = exact_fields(rtype, fields, type_line, "an IPv4 address")?;
                RecordData::A(parse_field(address, "IPv4 address")?)
            }
            RecordType::Aaaa => {
                let [address] = exact_fields(rtype, fields, type_line, "an IPv6 address")?;
                RecordData::Aaaa(parse_field(address, "IPv6 address")?)
            }
            RecordType::Cname => {
                let [target] = exact_fields(rtype, fields, type_line, "a domain name")?;
                RecordData::Cname(self.name(target)?)
            }
            RecordType::Ns => {
                let [target] = exact_fields(rtype, fields, type_line, "a domain name")?;
                RecordData::Ns(self.name(target)?)
            }
            RecordType::Ptr => {
                let [target] = exact_fields(rtype, fields, type_line, "a domain name")?;
                RecordData::Ptr(self.name(target)?)
            }
            RecordType::Mx => {
                let [preference, exchange] =
                    exact_fields(rtype, fields, type_line, "a preference and a domain name")?;
                RecordData::Mx {
                    preference: parse_field(preference, "MX preference (0 to 65535)")?,
                    exchange: self.name(exchange)?,
                }
            }
            RecordType::Soa => {
                let [mname, rname, serial, refresh, retry, expire, minimum] = exact_fields(
                    rtype,
                    fields,
                    type_line,
                    "mname, rname, serial, refresh, retry, expire and minimum",
                )?;
                let time = |token: &Token, what: &str| {
                    parse_time(&token.text, u32::MAX).map_err(|message| {
                        ZoneError::new(token.line, format!("SOA {what}: {message}"))
                    })
                };
                RecordData::Soa {
                    mname: self.name(mname)?,
                    rname: self.name(rname)?,
                    serial: parse_field(serial, "SOA serial (0 to 4294967295)")?,
                    refresh: time(refresh, "refresh")?,
                    retry: time(retry, "retry")?,
                    expire: time(expire, "expire")?,
                    minimum: time(minimum, "minimum")?,
                }
            }
            RecordType::Txt => {
                if fields.is_empty() {
                    return Err(ZoneError::new(
                        type_line,
                        "TXT record needs at least one character-string",
                    ));
                }
                let mut strings = Vec::new();
                for field in fields {
                    if field.bytes.is_empty() {
                        strings.push(Vec::new());
                    }
                    // RFC 1035 §3.3: a character-string holds at most 255
                    // octets; a longer one is split, as DKIM keys are.
                    strings.extend(
                        field
                            .bytes
                            .chunks(MAX_CHARACTER_STRING_LEN)
                            .map(<[u8]>::to_vec),
                    );
                }
                RecordData::Txt(strings)
            }
        };
        Ok(data)
    }
}

/// Whether `text` names a class other than IN (RFC 1035 §3.2.4, RFC 2136
/// §2.3, RFC 3597 §5).
fn is_other_class(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "CS" | "CH" | "CHAOS" | "HS" | "HESIOD" | "NONE" | "ANY"
    ) || upper
        .strip_prefix("CLASS")
        .is_some_and(|code| !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()))
}

/// The RDATA fields of a record that takes exactly `N` of them.
fn exact_fields<'a, const N: usize>(
    rtype: RecordType,
    fields: &'a [Token],
    type_line: usize,
    expected: &str,
) -> Result<&'a [Token; N], ZoneError> {
    <&[Token; N]>::try_from(fields).map_err(|_| {
        let line = fields
            .get(N)
            .or(fields.last())
            .map_or(type_line, |token| token.line);
        ZoneError::new(
            line,
            format!(
                "{rtype} record needs {expected} ({N} field{}), found {} field{}",
                if N == 1 { "" } else { "s" },
                fields.len(),
                if fields.len() == 1 { "" } else { "s" },
            ),
        )
    })
}

/// Parses an unquoted field with [`FromStr`].
fn parse_field<T: FromStr>(token: &Token, what: &str) -> Result<T, ZoneError> {
    if token.quoted {
        return Err(ZoneError::new(
            token.line,
            format!("expected {what}, found the quoted string {:?}", token.text),
        ));
    }
    token
        .text
        .parse()
        .map_err(|_| ZoneError::new(token.line, format!("invalid {what}: {:?}", token.text)))
}
