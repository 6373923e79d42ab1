//! DMARC Policy Record discovery and Organizational Domains, by the Public
//! Suffix List (RFC 7489 §3.2 and §6.6.3) or the DNS tree walk (RFC 9989
//! §4.10).

use crate::{
    dns::{Dns, DnsFailure, TxtAnswer},
    record::{DmarcRecord, PsdFlag, RecordError},
    trail::Trail,
    Error,
};
use publicsuffix::{List, Psl};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

/// How the policy record and Organizational Domains are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DiscoveryMethod {
    /// RFC 7489: `_dmarc.<author>`, then `_dmarc.<organizational domain>`,
    /// with Organizational Domains from the Public Suffix List (default).
    #[default]
    Psl,
    /// RFC 9989 §4.10: the DNS tree walk, at most 8 queries, honouring `psd`.
    TreeWalk,
}

impl DiscoveryMethod {
    /// `"psl"` or `"tree-walk"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryMethod::Psl => "psl",
            DiscoveryMethod::TreeWalk => "tree-walk",
        }
    }

    /// The other method, for shadow discovery.
    pub fn other(self) -> DiscoveryMethod {
        match self {
            DiscoveryMethod::Psl => DiscoveryMethod::TreeWalk,
            DiscoveryMethod::TreeWalk => DiscoveryMethod::Psl,
        }
    }
}

impl std::str::FromStr for DiscoveryMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "psl" => Ok(DiscoveryMethod::Psl),
            "tree-walk" => Ok(DiscoveryMethod::TreeWalk),
            other => Err(format!(
                "invalid discovery method {other:?} (expected psl or tree-walk)"
            )),
        }
    }
}

/// Debian's copy of the list, used when present and no path is configured.
pub const SYSTEM_PSL_PATH: &str = "/usr/share/publicsuffix/public_suffix_list.dat";

const BUNDLED_PSL: &str = include_str!("../data/public_suffix_list.dat");

/// A loaded Public Suffix List.
#[derive(Clone)]
pub struct PublicSuffixList {
    list: Arc<List>,
    source: String,
}

impl std::fmt::Debug for PublicSuffixList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicSuffixList")
            .field("source", &self.source)
            .finish()
    }
}

impl PublicSuffixList {
    /// Loads the list from `path`; without one, from [`SYSTEM_PSL_PATH`] when
    /// that file exists, else the snapshot bundled in this crate (see
    /// `data/README.md` for its date and licence).
    ///
    /// # Errors
    ///
    /// [`Error::Psl`] when the file cannot be read or parsed.
    pub fn load(path: Option<&Path>) -> Result<PublicSuffixList, Error> {
        let path: Option<PathBuf> = match path {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(SYSTEM_PSL_PATH)).filter(|p| p.is_file()),
        };
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::Psl {
                    source_name: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                Self::parse(&text, path.display().to_string())
            }
            None => Ok(Self::bundled()),
        }
    }

    /// The snapshot bundled in this crate.
    pub fn bundled() -> PublicSuffixList {
        // The bundled text is tested to parse; an empty list is the fallback
        // so that this can never panic.
        Self::parse(BUNDLED_PSL, "bundled snapshot".to_string()).unwrap_or_else(|_| {
            PublicSuffixList {
                list: Arc::new(List::new()),
                source: "empty list".to_string(),
            }
        })
    }

    fn parse(text: &str, source: String) -> Result<PublicSuffixList, Error> {
        let list: List = text.parse().map_err(|e: publicsuffix::Error| Error::Psl {
            source_name: source.clone(),
            reason: if text.contains("===BEGIN ICANN DOMAINS===") {
                e.to_string()
            } else {
                format!("{e} (a list must hold the \"// ===BEGIN ICANN DOMAINS===\" section of publicsuffix.org's file)")
            },
        })?;
        if list.is_empty() {
            return Err(Error::Psl {
                source_name: source,
                reason: "the list has no rules".to_string(),
            });
        }
        Ok(PublicSuffixList {
            list: Arc::new(list),
            source,
        })
    }

    /// Where the list came from (a path or "bundled snapshot").
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The Organizational Domain of `domain` (RFC 7489 §3.2): the public
    /// suffix plus one label; a public suffix itself (or a name the list
    /// cannot place) is its own Organizational Domain.
    pub fn org_domain(&self, domain: &str) -> String {
        self.registrable_domain(domain)
            .unwrap_or_else(|| domain.to_ascii_lowercase())
    }

    /// The registrable domain (public suffix plus one label), or `None` when
    /// `domain` is a public suffix or malformed.
    pub fn registrable_domain(&self, domain: &str) -> Option<String> {
        let lower = domain.trim_end_matches('.').to_ascii_lowercase();
        if lower.is_empty() || lower.starts_with('.') || lower.contains("..") {
            return None;
        }
        let found = self.list.domain(lower.as_bytes())?;
        std::str::from_utf8(found.as_bytes())
            .ok()
            .map(str::to_string)
    }
}

/// What one `_dmarc.<domain>` query gave.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// Exactly one DMARC record.
    Record(Arc<DmarcRecord>),
    /// Several DMARC records: all discarded (RFC 9989 §4.10 step 2).
    Several,
    /// No DMARC record; `nxdomain` when `_dmarc.<domain>` does not exist.
    None { nxdomain: bool },
}

/// Asks for `_dmarc.<domain>` and keeps the records that start with
/// `v=DMARC1` (RFC 7489 §6.6.3 step 2, RFC 9989 §4.10 step 2).
///
/// A name that cannot be asked about at all (`_dmarc.<domain>` longer than
/// 255 octets) has no record: that is no transient failure, and discovery
/// goes on to the Organizational Domain (RFC 7489 §6.6.3 step 3, RFC 9989
/// §4.10.1). Only transient failures are errors (RFC 9989 §9.2).
pub(crate) async fn lookup(dns: &Dns, domain: &str, trail: &Trail) -> Result<Lookup, DnsFailure> {
    let name = format!("_dmarc.{domain}");
    let records = match dns.txt(&name, trail).await {
        Ok(TxtAnswer::Records(records)) => records,
        Ok(TxtAnswer::NxDomain) => return Ok(Lookup::None { nxdomain: true }),
        Ok(TxtAnswer::NoData) => return Ok(Lookup::None { nxdomain: false }),
        Err(failure) if !failure.transient => {
            trail.decide_with(|| {
                format!("{failure}: the name cannot be asked about, so it has no DMARC record")
            });
            return Ok(Lookup::None { nxdomain: false });
        }
        Err(failure) => return Err(failure),
    };
    // Records that start with v=DMARC1 count, valid or not (RFC 9989 §4.10
    // step 2); one whose tag-list breaks the grammar is no *valid* record,
    // so discovery goes on as if there were none (RFC 9989 §4.10.1).
    let mut parsed: Vec<Result<DmarcRecord, RecordError>> = records
        .iter()
        .map(|text| DmarcRecord::parse(&String::from_utf8_lossy(text)))
        .filter(|r| !matches!(r, Err(RecordError::Empty | RecordError::BadVersion)))
        .collect();
    Ok(match parsed.len() {
        0 => Lookup::None { nxdomain: false },
        1 => match parsed.pop() {
            Some(Ok(record)) => Lookup::Record(Arc::new(record)),
            Some(Err(error)) => {
                trail.decide_with(|| {
                    format!("{name}: the DMARC record is not valid ({error}): it is ignored (RFC 9989 §4.10.1)")
                });
                Lookup::None { nxdomain: false }
            }
            None => Lookup::None { nxdomain: false },
        },
        n => {
            trail.decide_with(|| format!(
                "{name} has {n} DMARC records: all are discarded (RFC 9989 §4.10 step 2, RFC 7489 §6.6.3 step 5)"
            ));
            Lookup::Several
        }
    })
}

/// The record that applies to an Author Domain.
#[derive(Debug, Clone)]
pub(crate) struct Discovered {
    /// Where the record was found and the record, if any.
    pub(crate) record: Option<(String, Arc<DmarcRecord>)>,
    /// The Author Domain's Organizational Domain; a failure when the tree
    /// walk above an Author Domain that has its own record failed (the
    /// record is known, the Organizational Domain is not).
    pub(crate) org_domain: Result<String, DnsFailure>,
    /// True when `_dmarc.<author>` answered NXDOMAIN (so the author domain's
    /// existence is still unknown; NODATA there proves it exists).
    pub(crate) author_dmarc_nxdomain: bool,
}

/// Finds the policy record of `author` (already a normalised A-label).
pub(crate) async fn discover(
    dns: &Dns,
    psl: &PublicSuffixList,
    method: DiscoveryMethod,
    author: &str,
    trail: &Trail,
) -> Result<Discovered, DnsFailure> {
    match method {
        DiscoveryMethod::Psl => discover_psl(dns, psl, author, trail).await,
        DiscoveryMethod::TreeWalk => discover_tree_walk(dns, author, trail).await,
    }
}

async fn discover_psl(
    dns: &Dns,
    psl: &PublicSuffixList,
    author: &str,
    trail: &Trail,
) -> Result<Discovered, DnsFailure> {
    let org_domain = psl.org_domain(author);
    trail.decide_with(|| {
        format!("organizational domain of {author} by the Public Suffix List: {org_domain}")
    });
    let first = lookup(dns, author, trail).await?;
    let author_dmarc_nxdomain = matches!(first, Lookup::None { nxdomain: true });
    let found = match first {
        Lookup::Record(record) => Some((author.to_string(), record)),
        // RFC 7489 §6.6.3 step 5: several records end discovery.
        Lookup::Several => None,
        Lookup::None { .. } if org_domain != author => match lookup(dns, &org_domain, trail).await?
        {
            Lookup::Record(record) => Some((org_domain.clone(), record)),
            Lookup::Several | Lookup::None { .. } => None,
        },
        Lookup::None { .. } => None,
    };
    Ok(Discovered {
        record: found,
        org_domain: Ok(org_domain),
        author_dmarc_nxdomain,
    })
}

/// The names a tree walk from `domain` queries, longest first (RFC 9989
/// §4.10 steps 3-7): the domain, then, for more than eight labels, the last
/// seven, then one label fewer each time. At most eight names.
pub fn tree_walk_names(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let count = labels.len();
    let mut names = Vec::new();
    if count == 0 {
        return names;
    }
    names.push(labels.join("."));
    let mut keep = if count > 8 { 7 } else { count - 1 };
    while keep >= 1 {
        let start = count - keep;
        names.push(labels.get(start..).unwrap_or_default().join("."));
        keep -= 1;
    }
    names
}

/// The records a tree walk from `domain` finds, longest name first; stops
/// after a record carrying `psd=y` or `psd=n` (RFC 9989 §4.10 steps 2 and 6).
/// `first` is the already known answer for `domain` itself, if any.
async fn walk(
    dns: &Dns,
    domain: &str,
    first: Option<Lookup>,
    trail: &Trail,
) -> Result<Vec<(String, Arc<DmarcRecord>)>, DnsFailure> {
    let mut found = Vec::new();
    let mut first = first;
    for name in tree_walk_names(domain) {
        let answer = match first.take() {
            Some(answer) if name == domain => answer,
            _ => lookup(dns, &name, trail).await?,
        };
        if let Lookup::Record(record) = answer {
            let stop = record.psd() != PsdFlag::Unknown;
            found.push((name, record));
            if stop {
                break;
            }
        }
    }
    Ok(found)
}

/// RFC 9989 §4.10.2: picks the Organizational Domain from a walk's records.
fn select_org_domain(start: &str, found: &[(String, Arc<DmarcRecord>)]) -> String {
    for (name, record) in found {
        match record.psd() {
            // Rule 1: psd=n marks the Organizational Domain.
            PsdFlag::No => return name.clone(),
            // Rule 2: psd=y (other than at the start) marks a PSD; the
            // Organizational Domain is one label below it.
            PsdFlag::Yes if name != start => {
                let below = start
                    .strip_suffix(name.as_str())
                    .and_then(|prefix| prefix.strip_suffix('.'))
                    .and_then(|prefix| prefix.rsplit('.').next())
                    .map(|label| format!("{label}.{name}"));
                if let Some(below) = below {
                    return below;
                }
            }
            PsdFlag::Yes | PsdFlag::Unknown => {}
        }
    }
    // Rule 3: the record at the name with the fewest labels; with no record
    // at all, the starting domain itself.
    found
        .last()
        .map_or_else(|| start.to_string(), |(name, _)| name.clone())
}

async fn discover_tree_walk(
    dns: &Dns,
    author: &str,
    trail: &Trail,
) -> Result<Discovered, DnsFailure> {
    let first = lookup(dns, author, trail).await?;
    let author_dmarc_nxdomain = matches!(first, Lookup::None { nxdomain: true });
    let author_record = match &first {
        Lookup::Record(record) => Some(record.clone()),
        Lookup::Several | Lookup::None { .. } => None,
    };
    let found = match walk(dns, author, Some(first), trail).await {
        Ok(found) => found,
        // RFC 9989 §4.10.1: the Author Domain's own record applies whatever
        // the names above it hold; they only decide its Organizational
        // Domain, which then stays unknown.
        Err(failure) => match author_record {
            Some(record) => {
                trail.decide_with(|| {
                    format!("{failure}: the organizational domain of {author} is unknown; its own record applies")
                });
                return Ok(Discovered {
                    record: Some((author.to_string(), record)),
                    org_domain: Err(failure),
                    author_dmarc_nxdomain,
                });
            }
            None => return Err(failure),
        },
    };
    let org_domain = select_org_domain(author, &found);
    trail.decide_with(|| {
        format!(
            "organizational domain of {author} by the DNS tree walk: {org_domain} (records at: {})",
            if found.is_empty() {
                "none".to_string()
            } else {
                found
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    });
    // RFC 9989 §4.10.1: the Author Domain's record, else the Organizational
    // Domain's, else the Public Suffix Domain's.
    let record = if let Some(record) = author_record {
        Some((author.to_string(), record))
    } else if let Some((name, record)) = found.iter().find(|(name, _)| *name == org_domain) {
        Some((name.clone(), record.clone()))
    } else {
        found
            .iter()
            .find(|(_, record)| record.psd() == PsdFlag::Yes)
            .map(|(name, record)| (name.clone(), record.clone()))
    };
    Ok(Discovered {
        record,
        org_domain: Ok(org_domain),
        author_dmarc_nxdomain,
    })
}

/// The Organizational Domain of an authenticated identifier, for relaxed
/// alignment (RFC 9989 §4.10.2), by the same method as discovery.
pub(crate) async fn org_domain(
    dns: &Dns,
    psl: &PublicSuffixList,
    method: DiscoveryMethod,
    domain: &str,
    trail: &Trail,
) -> Result<String, DnsFailure> {
    match method {
        DiscoveryMethod::Psl => Ok(psl.org_domain(domain)),
        DiscoveryMethod::TreeWalk => {
            let found = walk(dns, domain, None, trail).await?;
            Ok(select_org_domain(domain, &found))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_walk_names_follow_rfc9989_4_10() {
        assert_eq!(
            tree_walk_names("a.mail.example.com"),
            [
                "a.mail.example.com",
                "mail.example.com",
                "example.com",
                "com"
            ]
        );
        assert_eq!(
            tree_walk_names("a.b.c.d.e.f.g.h.i.j.mail.example.com"),
            [
                "a.b.c.d.e.f.g.h.i.j.mail.example.com",
                "g.h.i.j.mail.example.com",
                "h.i.j.mail.example.com",
                "i.j.mail.example.com",
                "j.mail.example.com",
                "mail.example.com",
                "example.com",
                "com"
            ]
        );
        assert_eq!(tree_walk_names("com"), ["com"]);
        assert_eq!(tree_walk_names("a.b.c.d.e.f.g.h").len(), 8);
        assert_eq!(tree_walk_names("a.b.c.d.e.f.g.h.i").len(), 8);
        assert!(tree_walk_names("").is_empty());
    }

    fn rec(text: &str) -> Arc<DmarcRecord> {
        Arc::new(DmarcRecord::parse(text).unwrap())
    }

    #[test]
    fn organizational_domain_selection_rules() {
        let start = "a.mail.example.com";
        // RFC 9989 §4.10.2 examples.
        let found = vec![
            ("mail.example.com".to_string(), rec("v=DMARC1; p=none")),
            ("example.com".to_string(), rec("v=DMARC1; p=none")),
        ];
        assert_eq!(select_org_domain(start, &found), "example.com");
        let found = vec![(
            "mail.example.com".to_string(),
            rec("v=DMARC1; p=none; psd=n"),
        )];
        assert_eq!(select_org_domain(start, &found), "mail.example.com");
        let found = vec![("com".to_string(), rec("v=DMARC1; p=none; psd=y"))];
        assert_eq!(select_org_domain(start, &found), "example.com");
        assert_eq!(select_org_domain(start, &[]), start);
        // psd=y at the start itself does not make it a PSD of itself.
        let found = vec![("example.com".to_string(), rec("v=DMARC1; p=none; psd=y"))];
        assert_eq!(select_org_domain("example.com", &found), "example.com");
    }

    #[test]
    fn bundled_psl_parses_and_places_domains() {
        let psl = PublicSuffixList::bundled();
        assert_eq!(psl.source(), "bundled snapshot");
        assert_eq!(psl.org_domain("mail.example.com"), "example.com");
        assert_eq!(psl.org_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(psl.org_domain("co.uk"), "co.uk");
        assert_eq!(psl.registrable_domain("co.uk"), None);
        assert_eq!(psl.org_domain("Mail.Example.COM"), "example.com");
    }
}
