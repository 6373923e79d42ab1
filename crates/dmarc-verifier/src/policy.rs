//! From the published policy to the policy in force: `p`/`sp`/`np` selection,
//! `pct` sampling and `t` test mode (RFC 7489 §6.6.4, RFC 9989 §4.7 and
//! §4.10.1), and the disposition a receiver applies.

use crate::record::Policy;
use std::fmt;

/// How `pct` is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PctMode {
    /// RFC 7489 §6.6.4 (default): a message not sampled is handled one
    /// level lower (reject → quarantine, quarantine → none).
    #[default]
    Honor,
    /// RFC 9989: `pct` is historic and ignored.
    Ignore,
    /// `pct` below 100 is read as `t=y`, the RFC 9989 replacement.
    AsTestMode,
}

impl PctMode {
    /// `"honor"`, `"ignore"` or `"as-test-mode"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PctMode::Honor => "honor",
            PctMode::Ignore => "ignore",
            PctMode::AsTestMode => "as-test-mode",
        }
    }
}

impl std::str::FromStr for PctMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "honor" => Ok(PctMode::Honor),
            "ignore" => Ok(PctMode::Ignore),
            "as-test-mode" => Ok(PctMode::AsTestMode),
            other => Err(format!(
                "invalid pct mode {other:?} (expected honor, ignore or as-test-mode)"
            )),
        }
    }
}

/// Which tag of the record gave the published policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicySource {
    /// `p`: the Author Domain published the record itself.
    P,
    /// `sp`: the Author Domain is an existing subdomain of the policy domain.
    Sp,
    /// `np`: the Author Domain does not exist (RFC 9989, RFC 8020).
    Np,
}

impl PolicySource {
    /// `"p"`, `"sp"` or `"np"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::P => "p",
            PolicySource::Sp => "sp",
            PolicySource::Np => "np",
        }
    }
}

/// Why the disposition differs from the published policy. The names are
/// those of RFC 9990's `PolicyOverrideType`, for aggregate reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideReason {
    /// The message was not sampled under `pct` (RFC 7489 §6.6.4).
    SampledOut,
    /// The record has `t=y` (or `pct` < 100 read as test mode).
    PolicyTestMode,
    /// Local configuration (monitor mode, temperror handling, a cap, a
    /// `policy_override` for the From domain).
    LocalPolicy,
    /// A trusted forwarder vouched for the message: a trusted ARC sealer,
    /// a trusted client network or DKIM domain (see `overrides`).
    TrustedForwarder,
    /// Authenticated mailing-list mail (see `overrides`).
    MailingList,
    /// Any other reason.
    Other,
}

impl OverrideReason {
    /// The RFC 9990 token.
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideReason::SampledOut => "sampled_out",
            OverrideReason::PolicyTestMode => "policy_test_mode",
            OverrideReason::LocalPolicy => "local_policy",
            OverrideReason::TrustedForwarder => "trusted_forwarder",
            OverrideReason::MailingList => "mailing_list",
            OverrideReason::Other => "other",
        }
    }
}

impl fmt::Display for OverrideReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the receiver does with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Disposition {
    /// Deliver normally.
    Accept,
    /// Deliver to quarantine (spam folder, hold queue).
    Quarantine,
    /// Refuse permanently (SMTP 5xx).
    Reject,
    /// Refuse temporarily (SMTP 4xx) so the sender retries.
    Tempfail,
}

impl Disposition {
    /// `"accept"`, `"quarantine"`, `"reject"` or `"tempfail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Accept => "accept",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
            Disposition::Tempfail => "tempfail",
        }
    }

    /// The disposition enforcing a policy: none → accept.
    pub fn for_policy(policy: Policy) -> Disposition {
        match policy {
            Policy::None => Disposition::Accept,
            Policy::Quarantine => Disposition::Quarantine,
            Policy::Reject => Disposition::Reject,
        }
    }

    /// Accept < quarantine < tempfail < reject: of several Author Domains,
    /// a definite reject wins over a domain that could not be checked.
    pub(crate) fn severity(self) -> u8 {
        match self {
            Disposition::Accept => 0,
            Disposition::Quarantine => 1,
            Disposition::Tempfail => 2,
            Disposition::Reject => 3,
        }
    }

    /// The `dis=` token of RFC 9989 Authentication-Results comments and
    /// RFC 9990 reports: `none`, `quarantine` or `reject`.
    pub fn report_token(self) -> &'static str {
        match self {
            Disposition::Accept | Disposition::Tempfail => "none",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
        }
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy in force for a message after `pct` and `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppliedPolicy {
    /// The policy the record requests for this Author Domain.
    pub published: Policy,
    /// The tag it came from.
    pub source: PolicySource,
    /// The policy after `pct` and `t` (RFC 9989's `policy.dmarc`).
    pub applied: Policy,
    /// False when `pct` sampling left the message out.
    pub sampled: bool,
    /// True when test mode (`t=y`, or `pct` read as test mode) applied.
    pub testing: bool,
    /// Why `applied` is lower than `published`, if it is.
    pub reason: Option<OverrideReason>,
}

/// Applies `pct` and `t` to a published policy.
///
/// `draw` is the sampling draw in `0..100`; the message is sampled when
/// `draw < pct` (RFC 7489 §6.6.4: "(random mod 100) < pct").
pub fn apply_pct_and_t(
    published: Policy,
    source: PolicySource,
    pct: u8,
    testing: bool,
    mode: PctMode,
    draw: u8,
) -> AppliedPolicy {
    let mut out = AppliedPolicy {
        published,
        source,
        applied: published,
        sampled: true,
        testing,
        reason: None,
    };
    if mode == PctMode::AsTestMode && pct < 100 {
        out.testing = true;
    }
    if mode == PctMode::Honor && draw >= pct {
        out.sampled = false;
    }
    // RFC 9989 §4.7: t=y has no effect on p=none; it lowers the policy one
    // level. RFC 7489 §6.6.4: an unsampled message is lowered one level. Both
    // together lower it once: they express the same wish to go slow.
    if (out.testing || !out.sampled) && published != Policy::None {
        out.applied = published.downgraded();
        out.reason = Some(if out.testing {
            OverrideReason::PolicyTestMode
        } else {
            OverrideReason::SampledOut
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Policy::*;

    #[test]
    fn pct_and_t_table() {
        // (published, pct, t, mode, draw) → (applied, sampled, testing, reason)
        type Row = (
            Policy,
            u8,
            bool,
            PctMode,
            u8,
            Policy,
            bool,
            bool,
            Option<OverrideReason>,
        );
        let sampled_out = Some(OverrideReason::SampledOut);
        let test_mode = Some(OverrideReason::PolicyTestMode);
        let rows: &[Row] = &[
            (
                Reject,
                100,
                false,
                PctMode::Honor,
                99,
                Reject,
                true,
                false,
                Option::None,
            ),
            (
                Reject,
                0,
                false,
                PctMode::Honor,
                0,
                Quarantine,
                false,
                false,
                sampled_out,
            ),
            (
                Quarantine,
                0,
                false,
                PctMode::Honor,
                0,
                None,
                false,
                false,
                sampled_out,
            ),
            (
                None,
                0,
                false,
                PctMode::Honor,
                0,
                None,
                false,
                false,
                Option::None,
            ),
            (
                Reject,
                50,
                false,
                PctMode::Honor,
                49,
                Reject,
                true,
                false,
                Option::None,
            ),
            (
                Reject,
                50,
                false,
                PctMode::Honor,
                50,
                Quarantine,
                false,
                false,
                sampled_out,
            ),
            (
                Reject,
                50,
                false,
                PctMode::Ignore,
                99,
                Reject,
                true,
                false,
                Option::None,
            ),
            (
                Reject,
                0,
                false,
                PctMode::Ignore,
                99,
                Reject,
                true,
                false,
                Option::None,
            ),
            (
                Reject,
                50,
                false,
                PctMode::AsTestMode,
                0,
                Quarantine,
                true,
                true,
                test_mode,
            ),
            (
                Reject,
                100,
                false,
                PctMode::AsTestMode,
                0,
                Reject,
                true,
                false,
                Option::None,
            ),
            (
                Reject,
                100,
                true,
                PctMode::Honor,
                0,
                Quarantine,
                true,
                true,
                test_mode,
            ),
            (
                Quarantine,
                100,
                true,
                PctMode::Honor,
                0,
                None,
                true,
                true,
                test_mode,
            ),
            (
                None,
                100,
                true,
                PctMode::Honor,
                0,
                None,
                true,
                true,
                Option::None,
            ),
            // Test mode and unsampled together lower the policy once.
            (
                Reject,
                0,
                true,
                PctMode::Honor,
                0,
                Quarantine,
                false,
                true,
                test_mode,
            ),
        ];
        for &(published, pct, t, mode, draw, applied, sampled, testing, reason) in rows {
            let got = apply_pct_and_t(published, PolicySource::P, pct, t, mode, draw);
            assert_eq!(
                (got.applied, got.sampled, got.testing, got.reason),
                (applied, sampled, testing, reason),
                "{published:?} pct={pct} t={t} {mode:?} draw={draw}"
            );
        }
    }

    #[test]
    fn a_reject_is_stricter_than_a_tempfail() {
        assert!(Disposition::Reject.severity() > Disposition::Tempfail.severity());
        assert!(Disposition::Tempfail.severity() > Disposition::Quarantine.severity());
        assert!(Disposition::Quarantine.severity() > Disposition::Accept.severity());
    }

    #[test]
    fn applied_never_exceeds_published() {
        for published in [None, Quarantine, Reject] {
            for pct in [0u8, 1, 50, 99, 100] {
                for draw in [0u8, 49, 50, 99] {
                    for t in [false, true] {
                        for mode in [PctMode::Honor, PctMode::Ignore, PctMode::AsTestMode] {
                            let got =
                                apply_pct_and_t(published, PolicySource::Sp, pct, t, mode, draw);
                            assert!(got.applied <= published);
                        }
                    }
                }
            }
        }
    }
}
