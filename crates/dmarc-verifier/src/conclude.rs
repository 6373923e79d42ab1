//! The last steps of the pipeline: the message's disposition from its
//! evaluations (with several Author Domains the strictest decides), monitor
//! mode, and our Authentication-Results header (RFC 8601 §2.2; `arc=` as
//! RFC 8617 §4.4 defines it).

use crate::{
    arc::ArcCheck,
    auth_results::{self, AuthResults},
    config::{Enforcement, InvalidFromResult, VerifierConfig},
    message::FromError,
    policy::{Disposition, OverrideReason},
    trail::Trail,
    verdict::{DkimCheck, DmarcResult, Evaluation, ShadowDifference, SpfCheck, Verdict},
};

/// What the checks of one message found, for the verdict.
pub(crate) struct Checks {
    pub(crate) client_ip: Option<std::net::IpAddr>,
    pub(crate) spf: SpfCheck,
    pub(crate) dkim: Vec<DkimCheck>,
    pub(crate) arc: ArcCheck,
}

/// Combines the evaluations into the verdict and formats the header.
pub(crate) fn conclude(
    config: &VerifierConfig,
    authserv_id: &str,
    checks: Checks,
    authors: Result<Vec<String>, FromError>,
    evaluations: Vec<Evaluation>,
    shadow: Vec<ShadowDifference>,
    trail: Trail,
) -> Verdict {
    let Checks {
        client_ip,
        spf,
        dkim,
        arc,
    } = checks;
    let mut ar = AuthResults::new(authserv_id);
    ar.push(auth_results::spf_resinfo(&spf));
    if dkim.is_empty() {
        ar.push(auth_results::dkim_none_resinfo());
    }
    for check in &dkim {
        ar.push(auth_results::dkim_resinfo(check));
    }
    ar.push(auth_results::arc_resinfo(&arc, client_ip));

    let (dmarc, mut disposition, mut override_reason, decisive) = match &authors {
        Err(error) => {
            let result = match config.invalid_from_result {
                InvalidFromResult::PermError => DmarcResult::PermError,
                InvalidFromResult::None => DmarcResult::None,
            };
            ar.push(auth_results::dmarc_error_resinfo(
                result.as_str(),
                error.kind(),
            ));
            (result, config.invalid_from_disposition, None, None)
        }
        Ok(_) => {
            for evaluation in &evaluations {
                ar.push(auth_results::dmarc_resinfo(evaluation));
            }
            // Several Author Domains: the strictest disposition decides.
            let decisive = (0..evaluations.len()).max_by_key(|&i| {
                let severity = evaluations.get(i).map_or(0, |e| e.disposition.severity());
                (severity, std::cmp::Reverse(i))
            });
            let dmarc = DmarcResult::overall(&evaluations);
            match decisive.and_then(|i| evaluations.get(i)) {
                Some(e) => (dmarc, e.disposition, e.override_reason, decisive),
                None => (dmarc, Disposition::Accept, None, None),
            }
        }
    };
    if config.enforcement == Enforcement::Monitor && disposition != Disposition::Accept {
        trail.decide_with(|| format!("monitor mode: {disposition} becomes accept"));
        disposition = Disposition::Accept;
        override_reason = Some(OverrideReason::LocalPolicy);
    }
    trail.decide_with(|| {
        format!(
            "DMARC {}: disposition {disposition}{}",
            dmarc.as_str(),
            override_reason
                .map(|r| format!(" (override: {r})"))
                .unwrap_or_default()
        )
    });
    // The decisive evaluation's comment, unless monitor mode replaced
    // its reason.
    let override_comment = decisive
        .and_then(|i| evaluations.get(i))
        .filter(|e| e.override_reason == override_reason)
        .and_then(|e| e.override_comment.clone());
    Verdict {
        spf,
        dkim,
        arc,
        override_comment,
        author_domains: authors,
        evaluations,
        decisive,
        dmarc,
        disposition,
        override_reason,
        authentication_results: ar.value(),
        trail: trail.into_steps(),
        shadow,
    }
}
