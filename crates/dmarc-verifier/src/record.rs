//! DMARC Policy Record parsing (RFC 7489 §6.3, RFC 9989 §4.7 and §4.8).
//!
//! [`DmarcRecord::parse`] accepts the text of one TXT record (its
//! character-strings already concatenated). It fails when the text is not a
//! DMARC record at all (`v=DMARC1` missing, not first, or after white space)
//! and when its tag-list breaks the grammar of RFC 9989 §4.8 and RFC 6376
//! §3.2 (a malformed tag, a control character, a duplicate tag): see
//! [`RecordError`]. A tag whose *value* is invalid is recorded on the
//! returned value, so that policy discovery can apply the rules of RFC 7489
//! §6.6.3 step 6 and RFC 9989 §4.10.1 (an invalid `p`/`sp`/`np` means
//! `p=none` when a valid `rua` is present, otherwise no DMARC processing),
//! and invalid optional tags fall back to their defaults (RFC 9989 §4.8).

use crate::discovery::DiscoveryMethod;
use std::fmt;

/// A Domain Owner Assessment Policy: the `p`, `sp` and `np` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Policy {
    /// `none`: no preference expressed (monitoring mode).
    None,
    /// `quarantine`: failing mail is suspicious.
    Quarantine,
    /// `reject`: failing mail should be refused.
    Reject,
}

impl Policy {
    /// The tag value, as written in records and in Authentication-Results.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    /// One level lower: reject → quarantine → none (RFC 7489 §6.6.4,
    /// RFC 9989 §4.7 `t=y`).
    pub fn downgraded(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            Policy::Quarantine | Policy::None => Policy::None,
        }
    }

    fn parse(value: &str) -> Option<Policy> {
        // RFC 9989 §4.8: dmarc-request is an ABNF literal, so case-insensitive.
        if value.eq_ignore_ascii_case("none") {
            Some(Policy::None)
        } else if value.eq_ignore_ascii_case("quarantine") {
            Some(Policy::Quarantine)
        } else if value.eq_ignore_ascii_case("reject") {
            Some(Policy::Reject)
        } else {
            None
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifier alignment mode of `adkim` and `aspf` (RFC 9989 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AlignmentMode {
    /// `r`: the Organizational Domains must match (the default).
    #[default]
    Relaxed,
    /// `s`: the domains must be identical.
    Strict,
}

impl AlignmentMode {
    /// `"relaxed"` or `"strict"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlignmentMode::Relaxed => "relaxed",
            AlignmentMode::Strict => "strict",
        }
    }

    fn parse(value: &str) -> Option<AlignmentMode> {
        if value.eq_ignore_ascii_case("r") {
            Some(AlignmentMode::Relaxed)
        } else if value.eq_ignore_ascii_case("s") {
            Some(AlignmentMode::Strict)
        } else {
            None
        }
    }
}

/// The `psd` flag (RFC 9989 §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PsdFlag {
    /// `psd=y`: the domain is a Public Suffix Domain.
    Yes,
    /// `psd=n`: the domain is an Organizational Domain.
    No,
    /// `psd=u` or absent: unknown, use the tree walk (the default).
    #[default]
    Unknown,
}

impl PsdFlag {
    fn parse(value: &str) -> Option<PsdFlag> {
        match value.to_ascii_lowercase().as_str() {
            "y" => Some(PsdFlag::Yes),
            "n" => Some(PsdFlag::No),
            "u" => Some(PsdFlag::Unknown),
            _ => None,
        }
    }
}

/// Failure reporting options of the `fo` tag (RFC 9989 §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailureOptions {
    /// `0`: report when all mechanisms fail to produce an aligned pass (default).
    pub all_fail: bool,
    /// `1`: report when any mechanism fails to produce an aligned pass.
    pub any_fail: bool,
    /// `d`: report DKIM signature failures.
    pub dkim: bool,
    /// `s`: report SPF failures.
    pub spf: bool,
}

impl Default for FailureOptions {
    fn default() -> Self {
        FailureOptions {
            all_fail: true,
            any_fail: false,
            dkim: false,
            spf: false,
        }
    }
}

impl FailureOptions {
    /// Parses `dmarc-fo`; `None` when the value does not match the grammar
    /// (`0` and `1` are mutually exclusive, `d` and `s` appear at most once).
    fn parse(value: &str) -> Option<FailureOptions> {
        let mut fo = FailureOptions {
            all_fail: false,
            any_fail: false,
            dkim: false,
            spf: false,
        };
        for part in value.split(':') {
            let flag = match part.trim() {
                "0" => &mut fo.all_fail,
                "1" => &mut fo.any_fail,
                "d" | "D" => &mut fo.dkim,
                "s" | "S" => &mut fo.spf,
                _ => return None,
            };
            if *flag {
                return None;
            }
            *flag = true;
        }
        if fo.all_fail && fo.any_fail {
            return None;
        }
        if !fo.any_fail && !fo.dkim && !fo.spf {
            fo.all_fail = true;
        }
        Some(fo)
    }
}

/// One reporting URI of `rua` or `ruf`, with the optional obsolete size
/// limit (`!10m`, RFC 7489 §6.2, RFC 9989 §4.8 `obs-dmarc-report-size`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportUri {
    /// The URI without the size suffix, e.g. `mailto:dmarc@example.com`.
    pub uri: String,
    /// The size limit in bytes, when given.
    pub max_size: Option<u64>,
}

impl ReportUri {
    /// The address of a `mailto:` URI, or `None` for other schemes.
    pub fn mailto_address(&self) -> Option<&str> {
        mailto_address(&self.uri)
    }

    fn parse(value: &str) -> Option<ReportUri> {
        let value = value.trim();
        let (uri, max_size) = match value.rsplit_once('!') {
            Some((uri, size)) => (uri, Some(parse_size(size)?)),
            None => (value, None),
        };
        // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ),
        // then ":" and a non-empty remainder without white space.
        let (scheme, rest) = uri.split_once(':')?;
        let mut chars = scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let scheme_ok =
            first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        let rest_ok =
            !rest.is_empty() && !rest.chars().any(|c| c.is_whitespace() || c.is_control());
        (scheme_ok && rest_ok).then(|| ReportUri {
            uri: uri.to_string(),
            max_size,
        })
    }
}

/// The address of a `mailto:` URI (without `?headers`), or `None` for
/// another scheme or an address without `@`.
pub fn mailto_address(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("mailto") {
        return None;
    }
    let address = rest.split('?').next().unwrap_or(rest);
    address.contains('@').then_some(address)
}

fn parse_size(size: &str) -> Option<u64> {
    let size = size.trim();
    let digits_end = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let (digits, unit) = size.split_at(digits_end);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// The state of a policy tag (`p`, `sp`, `np`) in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagValue<T> {
    /// The tag is not in the record.
    Absent,
    /// The tag has a valid value.
    Valid(T),
    /// The tag is present with a value outside its grammar.
    Invalid,
}

impl<T: Copy> TagValue<T> {
    /// The value when valid.
    pub fn valid(&self) -> Option<T> {
        match self {
            TagValue::Valid(value) => Some(*value),
            TagValue::Absent | TagValue::Invalid => None,
        }
    }
}

/// Why a TXT record is not a valid DMARC record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordError {
    /// The record is empty.
    Empty,
    /// The record does not start with `v=DMARC1` (RFC 9989 §4.8
    /// `dmarc-version` is the first thing in `dmarc-record`, without
    /// leading white space): it is not a DMARC record and is discarded
    /// (RFC 9989 §4.10 step 2, RFC 7489 §6.6.3 step 2).
    BadVersion,
    /// The record starts with `v=DMARC1` but its tag-list breaks the
    /// grammar: a tag that is not `1*ALPHA equals 1*dmarc-value` (RFC 9989
    /// §4.8; a value holding a control character such as CR, an empty
    /// value, a tag without `=`), or a tag that appears twice (RFC 6376
    /// §3.2, whose tag-list RFC 9989 §4.7 uses: "the entire tag-list is
    /// invalid"). It is a DMARC record, so it counts when a name has
    /// several, but not a *valid* one: discovery goes on as if the name had
    /// none (RFC 9989 §4.10.1).
    InvalidTagList(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Empty => f.write_str("empty record"),
            RecordError::BadVersion => f.write_str("the record does not start with v=DMARC1"),
            RecordError::InvalidTagList(why) => write!(f, "invalid tag-list: {why}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// A parsed DMARC Policy Record, keeping its raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcRecord {
    raw: String,
    p: TagValue<Policy>,
    sp: TagValue<Policy>,
    np: TagValue<Policy>,
    adkim: AlignmentMode,
    aspf: AlignmentMode,
    pct: Option<u8>,
    fo: FailureOptions,
    rf_afrf: bool,
    ri: u32,
    rua: Vec<ReportUri>,
    ruf: Vec<ReportUri>,
    testing: bool,
    psd: PsdFlag,
    invalid_tags: Vec<String>,
}

/// The policies that apply once the invalid-tag rules of RFC 7489 §6.6.3
/// step 6 and RFC 9989 §4.10.1 have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EffectivePolicies {
    /// Policy for the domain that published the record (`p`).
    pub p: Policy,
    /// Policy for existing subdomains (`sp`, falling back to `p`).
    pub sp: Policy,
    /// Policy for non-existent subdomains (`np`, falling back to `sp`, then `p`).
    pub np: Policy,
    /// True when the record was treated as `p=none` because a policy tag was
    /// missing or invalid and a valid `rua` was present.
    pub forced_none: bool,
}

impl DmarcRecord {
    /// Parses the text of one TXT record.
    ///
    /// # Errors
    ///
    /// [`RecordError::Empty`] for empty text, [`RecordError::BadVersion`]
    /// when the record does not start with `v=DMARC1` (the tag name is
    /// matched without regard to case, the value `DMARC1` exactly, RFC 9989
    /// §4.8), [`RecordError::InvalidTagList`] when a tag is malformed or
    /// repeated. An invalid tag value is kept on the record: see
    /// [`DmarcRecord::invalid_tags`].
    ///
    /// # Examples
    ///
    /// ```
    /// use dmarc_verifier::record::{DmarcRecord, Policy};
    /// let record = DmarcRecord::parse("v=DMARC1; p=reject; pct=50").unwrap();
    /// assert_eq!(record.p().valid(), Some(Policy::Reject));
    /// assert_eq!(record.pct(), 50);
    /// ```
    pub fn parse(raw: &str) -> Result<DmarcRecord, RecordError> {
        if raw.trim().is_empty() {
            return Err(RecordError::Empty);
        }
        let mut tags = raw.split(';');
        let version = tags.next().unwrap_or_default();
        // dmarc-version = "v" equals %s"DMARC1"; equals = *WSP "=" *WSP; the
        // dmarc-sep that follows may start with WSP. No leading white space.
        match version.split_once('=') {
            Some((name, value))
                if name.trim_end_matches(is_wsp).eq_ignore_ascii_case("v")
                    && value.trim_matches(is_wsp) == "DMARC1" => {}
            _ => return Err(RecordError::BadVersion),
        }
        let mut record = DmarcRecord {
            raw: raw.to_string(),
            p: TagValue::Absent,
            sp: TagValue::Absent,
            np: TagValue::Absent,
            adkim: AlignmentMode::Relaxed,
            aspf: AlignmentMode::Relaxed,
            pct: None,
            fo: FailureOptions::default(),
            rf_afrf: true,
            ri: 86400,
            rua: Vec::new(),
            ruf: Vec::new(),
            testing: false,
            psd: PsdFlag::Unknown,
            invalid_tags: Vec::new(),
        };
        let mut seen: Vec<String> = vec!["v".to_string()];
        for tag in tags {
            let tag = tag.trim_matches(is_wsp);
            // An empty tag-spec (";;", or the optional final ";") carries
            // nothing and is skipped.
            if tag.is_empty() {
                continue;
            }
            // dmarc-tag = tag-name equals 1*dmarc-value (RFC 9989 §4.8).
            // §4.8 writes the name as 1*ALPHA, §4.7 says records follow
            // DKIM's tag-value syntax, whose tag-name is ALPHA *ALNUMPUNC
            // (RFC 6376 §3.2): the wider rule is taken, so that an unknown
            // future tag with a digit is ignored, not fatal.
            let Some((name, value)) = tag.split_once('=') else {
                return Err(invalid_tag_list(format!("{tag:?} is not name=value")));
            };
            let name = name.trim_end_matches(is_wsp);
            let value = value.trim_start_matches(is_wsp);
            let name_ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !name_ok {
                return Err(invalid_tag_list(format!("{name:?} is not a tag name")));
            }
            // dmarc-value = %x20-3A / %x3C-7E: printable ASCII and space.
            if value.is_empty() || !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                return Err(invalid_tag_list(format!(
                    "the value of {name} is empty or holds a character outside printable ASCII"
                )));
            }
            let name = name.to_ascii_lowercase();
            // RFC 6376 §3.2: a tag name occurring twice makes the entire
            // tag-list invalid.
            if seen.contains(&name) {
                return Err(invalid_tag_list(format!("tag {name} appears twice")));
            }
            seen.push(name.clone());
            if !record.apply_tag(&name, value) {
                record.invalid_tags.push(format!("{name}={value}"));
            }
        }
        Ok(record)
    }

    /// Applies one tag; false when its value is invalid.
    fn apply_tag(&mut self, name: &str, value: &str) -> bool {
        fn policy_tag(value: &str) -> TagValue<Policy> {
            Policy::parse(value).map_or(TagValue::Invalid, TagValue::Valid)
        }
        match name {
            "p" => {
                self.p = policy_tag(value);
                self.p != TagValue::Invalid
            }
            "sp" => {
                self.sp = policy_tag(value);
                self.sp != TagValue::Invalid
            }
            "np" => {
                self.np = policy_tag(value);
                self.np != TagValue::Invalid
            }
            "adkim" => set_if(AlignmentMode::parse(value), &mut self.adkim),
            "aspf" => set_if(AlignmentMode::parse(value), &mut self.aspf),
            "pct" => {
                // RFC 7489 §6.4: dmarc-percent is 1*3DIGIT, 0 to 100 (no sign,
                // no fourth digit); invalid → default 100 (RFC 9989 §4.8).
                match digits(value, 3).and_then(|v| u8::try_from(v).ok()) {
                    Some(pct) if pct <= 100 => {
                        self.pct = Some(pct);
                        true
                    }
                    _ => false,
                }
            }
            "fo" => set_if(FailureOptions::parse(value), &mut self.fo),
            "rf" => {
                // RFC 7489 §6.3: a colon-separated list of report formats; only
                // "afrf" is defined. Unknown formats are invalid.
                let formats: Vec<&str> = value.split(':').map(str::trim).collect();
                let valid = formats.iter().all(|f| f.eq_ignore_ascii_case("afrf"));
                if valid {
                    self.rf_afrf = true;
                }
                valid
            }
            // RFC 7489 §6.4: dmarc-ainterval is 1*32DIGIT.
            "ri" => match digits(value, 32).and_then(|v| u32::try_from(v).ok()) {
                Some(ri) => {
                    self.ri = ri;
                    true
                }
                None => false,
            },
            "rua" => parse_uris(value, &mut self.rua),
            "ruf" => parse_uris(value, &mut self.ruf),
            "t" => match value.to_ascii_lowercase().as_str() {
                "y" => {
                    self.testing = true;
                    true
                }
                "n" => {
                    self.testing = false;
                    true
                }
                _ => false,
            },
            "psd" => set_if(PsdFlag::parse(value), &mut self.psd),
            // RFC 9989 §4.7: unknown tags MUST be ignored.
            _ => true,
        }
    }

    /// The raw record text as published.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The `p` tag.
    pub fn p(&self) -> TagValue<Policy> {
        self.p
    }

    /// The `sp` tag.
    pub fn sp(&self) -> TagValue<Policy> {
        self.sp
    }

    /// The `np` tag (RFC 9989).
    pub fn np(&self) -> TagValue<Policy> {
        self.np
    }

    /// DKIM alignment mode (`adkim`, default relaxed).
    pub fn adkim(&self) -> AlignmentMode {
        self.adkim
    }

    /// SPF alignment mode (`aspf`, default relaxed).
    pub fn aspf(&self) -> AlignmentMode {
        self.aspf
    }

    /// The sampling percentage (`pct`, default 100; historic in RFC 9989).
    pub fn pct(&self) -> u8 {
        self.pct.unwrap_or(100)
    }

    /// Failure reporting options (`fo`).
    pub fn fo(&self) -> FailureOptions {
        self.fo
    }

    /// Aggregate report interval in seconds (`ri`, default 86400).
    pub fn ri(&self) -> u32 {
        self.ri
    }

    /// Aggregate report destinations (`rua`), syntactically valid ones only.
    pub fn rua(&self) -> &[ReportUri] {
        &self.rua
    }

    /// Failure report destinations (`ruf`), syntactically valid ones only.
    pub fn ruf(&self) -> &[ReportUri] {
        &self.ruf
    }

    /// `t=y`: the Domain Owner is testing its policy (RFC 9989 §4.7).
    pub fn testing(&self) -> bool {
        self.testing
    }

    /// The `psd` flag.
    pub fn psd(&self) -> PsdFlag {
        self.psd
    }

    /// Tags whose values were invalid (or malformed tag specs), as
    /// `name=value`; they fell back to their defaults (RFC 9989 §4.8).
    pub fn invalid_tags(&self) -> &[String] {
        &self.invalid_tags
    }

    /// The policies to apply under discovery `method`, or `None` when the
    /// record calls for no DMARC processing. The one place that decides
    /// them: the verdict, the Authentication-Results comment, the decision
    /// trail and reports all read it (through
    /// [`crate::Evaluation::effective_policies`]).
    ///
    /// RFC 7489 §6.6.3 step 6 and RFC 9989 §4.10.1: when `p` is missing or
    /// invalid, or `sp` (or, under RFC 9989, `np`) is invalid, act as
    /// `p=none` if the record has at least one syntactically valid `rua` URI,
    /// otherwise apply no DMARC processing. RFC 9989 (tree walk discovery)
    /// defines `np`; RFC 7489 (PSL discovery) does not, so there `np` is an
    /// unknown tag, ignored whatever its value, and non-existent
    /// subdomains get `sp`.
    pub fn effective_policies(&self, method: DiscoveryMethod) -> Option<EffectivePolicies> {
        let np_counts = method == DiscoveryMethod::TreeWalk;
        let broken = matches!(self.p, TagValue::Absent | TagValue::Invalid)
            || self.sp == TagValue::Invalid
            || (np_counts && self.np == TagValue::Invalid);
        if broken {
            if self.rua.is_empty() {
                return None;
            }
            return Some(EffectivePolicies {
                p: Policy::None,
                sp: Policy::None,
                np: Policy::None,
                forced_none: true,
            });
        }
        let p = self.p.valid().unwrap_or(Policy::None);
        let sp = self.sp.valid().unwrap_or(p);
        // RFC 9989 §4.7 np: absent → sp if present, else p.
        let np = if np_counts {
            self.np.valid().unwrap_or(sp)
        } else {
            sp
        };
        Some(EffectivePolicies {
            p,
            sp,
            np,
            forced_none: false,
        })
    }
}

/// WSP of RFC 5234: space and horizontal tab.
fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn invalid_tag_list(why: String) -> RecordError {
    RecordError::InvalidTagList(why)
}

/// `1*max DIGIT` as a number: ASCII digits only (no sign, no space), at
/// most `max` of them; `None` otherwise or when too large for a u64.
fn digits(value: &str, max: usize) -> Option<u64> {
    let value = value.trim_end_matches(is_wsp);
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn set_if<T>(parsed: Option<T>, slot: &mut T) -> bool {
    match parsed {
        Some(value) => {
            *slot = value;
            true
        }
        None => false,
    }
}

/// Parses a `dmarc-urilist`, keeping the valid URIs; false when any is invalid.
fn parse_uris(value: &str, out: &mut Vec<ReportUri>) -> bool {
    let mut all_valid = true;
    for part in value.split(',') {
        match ReportUri::parse(part) {
            Some(uri) => out.push(uri),
            None => all_valid = false,
        }
    }
    all_valid
}

#[cfg(test)]
mod tests;
