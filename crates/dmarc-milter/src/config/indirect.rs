//! The keys of indirect mail flows (issue 13): the overrides a DMARC
//! failure may get (`trusted_arc_sealers`, `arc_override_action`,
//! `trusted_forwarders`, `trusted_forwarder_action`, `mailing_list_action`,
//! `[[policy_override]]`, all set in the verifier's
//! [`OverrideConfig`]) and our own ARC sealing (`[arc_seal]`).
//!
//! A table's errors name the line of its header: TOML values do not keep
//! the lines of their own keys.

use super::{ConfigError, ConfigErrorKind, RawConfig, RawEntry};
use dmarc_verifier::{message::normalize_domain, Disposition, OverrideConfig, PolicyOverride};
use std::path::PathBuf;
use toml::Value;

/// `[arc_seal]`: seal every delivered message with this domain, selector
/// and private key (RFC 8617 §5.1). The key is read, and its permissions
/// checked, when the configuration is put in force (start, reload,
/// `--check-config`), never here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcSealConfig {
    /// `d=` of our seals.
    pub domain: String,
    /// `s=` of our seals: the key record is `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// The private key, PEM (RSA of at least 2048 bits, or Ed25519).
    pub key_file: PathBuf,
}

const MILD: &str = "accept or quarantine";

/// Reads the keys of this module into `overrides`; returns `[arc_seal]`.
pub(super) fn build(
    raw: &mut RawConfig,
    overrides: &mut OverrideConfig,
) -> Result<Option<ArcSealConfig>, ConfigError> {
    let mild = [
        ("accept", Disposition::Accept),
        ("quarantine", Disposition::Quarantine),
    ];
    overrides.trusted_arc_sealers = domains(raw, "trusted_arc_sealers")?;
    if let Some(action) = raw.choice("arc_override_action", &mild, MILD)? {
        overrides.arc_override_action = action;
    }
    if let Some(entry) = raw.take("trusted_forwarders") {
        let expected = "a list of \"IP\", \"IP/LEN\" or \"dkim:DOMAIN\" strings";
        let Value::Array(items) = &entry.value else {
            return Err(raw.invalid(&entry, "trusted_forwarders", expected));
        };
        overrides.trusted_forwarders = items
            .iter()
            .map(|item| {
                item.as_str()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| raw.invalid_item(&entry, item, "trusted_forwarders", expected))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(action) = raw.choice("trusted_forwarder_action", &mild, MILD)? {
        overrides.trusted_forwarder_action = action;
    }
    if let Some(action) = raw.choice(
        "mailing_list_action",
        &[
            ("quarantine", Some(Disposition::Quarantine)),
            ("accept", Some(Disposition::Accept)),
            ("off", None),
        ],
        "quarantine, accept or off",
    )? {
        overrides.mailing_list_action = action;
    }
    overrides.policy_overrides = policy_overrides(raw)?;
    arc_seal(raw)
}

/// A list of domain names (exact, as A-labels).
fn domains(raw: &mut RawConfig, key: &'static str) -> Result<Vec<String>, ConfigError> {
    let Some(entry) = raw.take(key) else {
        return Ok(Vec::new());
    };
    let expected = "a list of domain names such as \"lists.example.org\"";
    let Value::Array(items) = &entry.value else {
        return Err(raw.invalid(&entry, key, expected));
    };
    items
        .iter()
        .map(|item| {
            item.as_str()
                .and_then(|text| normalize_domain(text).ok())
                .ok_or_else(|| raw.invalid_item(&entry, item, key, expected))
        })
        .collect()
}

/// `[[policy_override]]` tables: `from_domain` and `action`.
fn policy_overrides(raw: &mut RawConfig) -> Result<Vec<PolicyOverride>, ConfigError> {
    let Some(entry) = raw.take("policy_override") else {
        return Ok(Vec::new());
    };
    let Value::Array(tables) = &entry.value else {
        return Err(raw.invalid(
            &entry,
            "policy_override",
            "[[policy_override]] tables with from_domain and action",
        ));
    };
    let mut out: Vec<PolicyOverride> = Vec::new();
    for table in tables {
        let Value::Table(table) = table else {
            return Err(raw.invalid_item(
                &entry,
                table,
                "policy_override",
                "[[policy_override]] tables with from_domain and action",
            ));
        };
        if let Some(key) = table
            .keys()
            .find(|k| !["from_domain", "action"].contains(&k.as_str()))
        {
            return Err(unknown(raw, &entry, &format!("policy_override.{key}")));
        }
        let from_domain = match table.get("from_domain") {
            Some(value) => value
                .as_str()
                .and_then(|text| normalize_domain(text).ok())
                .ok_or_else(|| {
                    raw.invalid_item(
                        &entry,
                        value,
                        "policy_override.from_domain",
                        "a domain name",
                    )
                })?,
            None => return Err(missing(raw, &entry, "policy_override.from_domain")),
        };
        let action = match table.get("action") {
            Some(value) => match value.as_str() {
                Some("accept") => Disposition::Accept,
                Some("quarantine") => Disposition::Quarantine,
                _ => return Err(raw.invalid_item(&entry, value, "policy_override.action", MILD)),
            },
            None => return Err(missing(raw, &entry, "policy_override.action")),
        };
        if out.iter().any(|p| p.from_domain == from_domain) {
            return Err(raw.invalid_item(
                &entry,
                &Value::String(from_domain),
                "policy_override.from_domain",
                "each from_domain once",
            ));
        }
        out.push(PolicyOverride {
            from_domain,
            action,
        });
    }
    Ok(out)
}

/// `[arc_seal]`: `domain`, `selector`, `key_file` (absolute).
fn arc_seal(raw: &mut RawConfig) -> Result<Option<ArcSealConfig>, ConfigError> {
    let Some(entry) = raw.take("arc_seal") else {
        return Ok(None);
    };
    let Value::Table(table) = &entry.value else {
        return Err(raw.invalid(
            &entry,
            "arc_seal",
            "an [arc_seal] table with domain, selector and key_file",
        ));
    };
    if let Some(key) = table
        .keys()
        .find(|k| !["domain", "selector", "key_file"].contains(&k.as_str()))
    {
        return Err(unknown(raw, &entry, &format!("arc_seal.{key}")));
    }
    let domain = match table.get("domain") {
        Some(value) => value
            .as_str()
            .and_then(|text| normalize_domain(text).ok())
            .ok_or_else(|| raw.invalid_item(&entry, value, "arc_seal.domain", "a domain name"))?,
        None => return Err(missing(raw, &entry, "arc_seal.domain")),
    };
    let selector = match table.get("selector") {
        Some(value) => value
            .as_str()
            .filter(|s| is_selector(s))
            .map(str::to_string)
            .ok_or_else(|| {
                raw.invalid_item(
                    &entry,
                    value,
                    "arc_seal.selector",
                    "a DKIM selector (letters, digits, '-', '_' and dots)",
                )
            })?,
        None => return Err(missing(raw, &entry, "arc_seal.selector")),
    };
    let key_file = match table.get("key_file") {
        Some(value) => value
            .as_str()
            .filter(|path| path.starts_with('/'))
            .map(PathBuf::from)
            .ok_or_else(|| {
                raw.invalid_item(&entry, value, "arc_seal.key_file", "an absolute file name")
            })?,
        None => return Err(missing(raw, &entry, "arc_seal.key_file")),
    };
    Ok(Some(ArcSealConfig {
        domain,
        selector,
        key_file,
    }))
}

/// A DKIM selector: dot-separated labels of letters, digits, `-`, `_`.
fn is_selector(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn unknown(raw: &RawConfig, entry: &RawEntry, key: &str) -> ConfigError {
    raw.error(entry.line, ConfigErrorKind::UnknownKey(key.to_string()))
}

fn missing(raw: &RawConfig, entry: &RawEntry, key: &'static str) -> ConfigError {
    let table = key.split('.').next().unwrap_or(key);
    raw.error(
        entry.line,
        ConfigErrorKind::MissingKey {
            key,
            needed_by: format!("[{table}]"),
        },
    )
}

impl super::Config {
    /// The ARC sealer of `[arc_seal]`, `None` without the table: reads the
    /// key file and refuses one other users may read or write (the key is
    /// never logged, nor shown in an error). Start, reload and
    /// `--check-config` call this, so a configuration whose key cannot be
    /// used is refused before it replaces a working one.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key file: unreadable, open to other
    /// users, or not a usable key.
    pub fn arc_sealer(&self) -> Result<Option<dmarc_verifier::arc::ArcSealer>, ConfigError> {
        let Some(seal) = &self.arc_seal else {
            return Ok(None);
        };
        let file = seal.key_file.display().to_string();
        let error = |kind| ConfigError {
            file: file.clone(),
            line: None,
            kind,
        };
        let metadata =
            std::fs::metadata(&seal.key_file).map_err(|e| error(ConfigErrorKind::Read(e)))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777;
        if mode & 0o007 != 0 {
            return Err(error(ConfigErrorKind::InvalidValue {
                key: "arc_seal.key_file",
                value: format!("mode {mode:04o}"),
                expected: "a key file other users cannot read or write (chmod 0600, or 0640 with the milter's group)",
            }));
        }
        let pem =
            std::fs::read_to_string(&seal.key_file).map_err(|e| error(ConfigErrorKind::Read(e)))?;
        dmarc_verifier::arc::ArcSealer::from_pem(&seal.domain, &seal.selector, &pem)
            .map(Some)
            .map_err(|e| error(ConfigErrorKind::Library(e)))
    }
}
