//! DMARC Policy Record parsing (RFC 7489 §6.3, RFC 9989 §4.7 and §4.8).
//!
//! [`DmarcRecord::parse`] accepts the text of one TXT record (its
//! character-strings already concatenated). It fails only when the text is not
//! a DMARC record at all (`v=DMARC1` missing or not first); every other defect
//! is recorded on the returned value, so that policy discovery can apply the
//! rules of RFC 7489 §6.6.3 step 6 and RFC 9989 §4.10.1 (an invalid `p`/`sp`/`np`
//! means `p=none` when a valid `rua` is present, otherwise no DMARC processing),
//! and invalid optional tags fall back to their defaults (RFC 9989 §4.8).

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

/// Why a TXT record is not a DMARC record at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordError {
    /// The record is empty.
    Empty,
    /// The first tag is not `v=DMARC1` (RFC 9989 §4.7: the whole record is ignored).
    BadVersion,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordError::Empty => "empty record",
            RecordError::BadVersion => "the record does not start with v=DMARC1",
        })
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
    /// [`RecordError::Empty`] for empty text and [`RecordError::BadVersion`]
    /// when the first tag is not `v=DMARC1` (the tag name is matched without
    /// regard to case, the value `DMARC1` exactly, RFC 9989 §4.8). Any other
    /// defect is kept on the record: see [`DmarcRecord::invalid_tags`].
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
        match version.split_once('=') {
            Some((name, value))
                if name.trim().eq_ignore_ascii_case("v") && value.trim() == "DMARC1" => {}
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
        let mut seen: Vec<String> = Vec::new();
        for tag in tags {
            let tag = tag.trim_matches(|c| c == ' ' || c == '\t');
            if tag.is_empty() {
                continue;
            }
            let Some((name, value)) = tag.split_once('=') else {
                record.invalid_tags.push(tag.to_string());
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim_matches(|c| c == ' ' || c == '\t');
            // The first occurrence of a tag counts; later ones are ignored.
            if seen.contains(&name) {
                continue;
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
                // RFC 7489 §6.3: an integer from 0 to 100; invalid → default 100.
                match value.parse::<u8>() {
                    Ok(pct) if pct <= 100 => {
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
            "ri" => match value.parse::<u32>() {
                Ok(ri) => {
                    self.ri = ri;
                    true
                }
                Err(_) => false,
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

    /// The policies to apply, or `None` when the record calls for no DMARC
    /// processing.
    ///
    /// RFC 7489 §6.6.3 step 6 and RFC 9989 §4.10.1: when `p` is missing or
    /// invalid, or `sp` (or, when `np_counts` is true, `np`) is invalid, act as
    /// `p=none` if the record has at least one syntactically valid `rua` URI,
    /// otherwise apply no DMARC processing. `np_counts` is true under RFC 9989
    /// (tree walk discovery); RFC 7489 does not know `np`, so an invalid `np`
    /// is then ignored like an unknown tag.
    pub fn effective_policies(&self, np_counts: bool) -> Option<EffectivePolicies> {
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
        let np = self.np.valid().unwrap_or(sp);
        Some(EffectivePolicies {
            p,
            sp,
            np,
            forced_none: false,
        })
    }
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
