//! The text output: the verdict first, then one line per check with why,
//! the envelope used, notes, the Authentication-Results header and, with
//! `--explain`, the decision trail.

use crate::Report;
use dmarc_verifier::{
    alignment::Alignment,
    arc::{ArcCheck, ArcResult},
    envelope::Inferred,
    DkimCheck, DkimResult, DmarcResult, Evaluation, SpfCheck, SpfResult, SpfScope,
};
use std::{fmt::Write as _, net::IpAddr};

/// The whole text output, ending with a newline.
pub fn render(report: &Report<'_>) -> String {
    let verdict = report.verdict;
    let mut out = String::new();
    let decisive = verdict.decisive_evaluation();

    // The verdict.
    let disposition = match (verdict.override_reason, &verdict.override_comment) {
        (Some(reason), Some(comment)) => format!(
            "disposition {} (override: {reason}: {comment})",
            verdict.disposition
        ),
        (Some(reason), None) => format!("disposition {} (override: {reason})", verdict.disposition),
        (None, _) => format!("disposition {}", verdict.disposition),
    };
    match (&verdict.author_domains, verdict.evaluations.as_slice()) {
        (Err(error), _) => line(
            &mut out,
            format!(
                "DMARC {}: {error} ({}), {disposition}",
                verdict.dmarc.as_str(),
                error.kind()
            ),
        ),
        (Ok(_), [only]) => line(
            &mut out,
            format!(
                "DMARC {} for {}: {}, {disposition}",
                only.result.as_str(),
                only.author_domain,
                policy_in_force(only)
            ),
        ),
        (Ok(domains), evaluations) => {
            line(
                &mut out,
                format!(
                    "DMARC {} for {}: {disposition}",
                    verdict.dmarc.as_str(),
                    domains.join(", ")
                ),
            );
            for evaluation in evaluations {
                line(
                    &mut out,
                    format!(
                        "  {} for {}: {}, disposition {}",
                        evaluation.result.as_str(),
                        evaluation.author_domain,
                        policy_in_force(evaluation),
                        evaluation.disposition
                    ),
                );
            }
        }
    }

    // One line per check, alignment against the decisive Author Domain.
    line(
        &mut out,
        spf_line(
            &verdict.spf,
            report.inferred.envelope.client_ip,
            decisive.and_then(|e| e.spf_alignment.as_ref()),
        ),
    );
    if verdict.dkim.is_empty() {
        line(
            &mut out,
            "DKIM none: the message has no DKIM signature".into(),
        );
    }
    for (i, check) in verdict.dkim.iter().enumerate() {
        let alignment = decisive
            .and_then(|e| e.dkim_alignments.get(i))
            .and_then(Option::as_ref);
        line(&mut out, dkim_line(check, alignment));
    }
    if verdict.arc.result != ArcResult::None {
        arc_lines(&mut out, &verdict.arc);
    }

    out.push('\n');
    envelope_lines(&mut out, report.inferred);
    for note in report.notes() {
        line(&mut out, format!("Note: {note}"));
    }

    out.push('\n');
    line(&mut out, verdict.authentication_results_header("\n"));

    if report.explain {
        out.push('\n');
        line(&mut out, "Decision trail:".into());
        for step in &verdict.trail {
            line(&mut out, format!("  {step}"));
        }
    }
    out
}

fn line(out: &mut String, text: String) {
    out.push_str(&text);
    out.push('\n');
}

/// `p=reject`, `sp=quarantine (record at _dmarc.example.com)`,
/// `p=reject, quarantine in force (pct=50, not sampled)`, or why there is no
/// policy.
fn policy_in_force(evaluation: &Evaluation) -> String {
    let Some(policy) = evaluation.policy else {
        return match (evaluation.result, evaluation.reason.as_deref()) {
            (DmarcResult::None, _) => "no DMARC record".to_string(),
            (DmarcResult::TempError, Some("dns-error")) => {
                "the DMARC record could not be fetched (DNS error)".to_string()
            }
            (DmarcResult::PermError, Some("invalid-record")) => {
                "the DMARC record has no valid policy and no valid rua".to_string()
            }
            (_, Some(reason)) => reason.to_string(),
            (_, None) => "no policy".to_string(),
        };
    };
    let mut text = format!("{}={}", policy.source.as_str(), policy.published);
    if let Some(domain) = evaluation
        .policy_domain
        .as_deref()
        .filter(|d| *d != evaluation.author_domain)
    {
        let _ = write!(text, " (record at _dmarc.{domain})");
    }
    if policy.applied != policy.published {
        let pct = evaluation.record.as_ref().map_or(100, |r| r.pct());
        let why = if policy.testing && evaluation.record.as_ref().is_some_and(|r| r.testing()) {
            "t=y test mode".to_string()
        } else if policy.testing {
            format!("pct={pct} read as test mode")
        } else {
            format!("pct={pct}, not sampled")
        };
        let _ = write!(text, ", {} in force ({why})", policy.applied);
    }
    if evaluation.result == DmarcResult::TempError {
        if let Some(reason) = &evaluation.reason {
            let _ = write!(text, ", {reason}");
        }
    }
    text
}

/// `SPF fail for example.com: 198.51.100.200 is not authorized`, or with
/// the alignment of a pass.
fn spf_line(spf: &SpfCheck, ip: Option<IpAddr>, alignment: Option<&Alignment>) -> String {
    let mut text = format!("SPF {}", spf.result.as_str());
    let null_sender = spf.scope == SpfScope::Helo;
    match (spf.domain.is_empty(), null_sender) {
        (false, false) => {
            let _ = write!(text, " for {}", spf.domain);
        }
        (false, true) => {
            let _ = write!(text, " for HELO {}", spf.domain);
        }
        (true, _) => {}
    }
    let client = ip.map_or_else(|| "the client".to_string(), |ip| ip.to_string());
    let why = match (spf.result, &spf.reason) {
        (_, Some(reason)) => reason.clone(),
        (SpfResult::Pass, None) => format!("{client} is authorized"),
        (SpfResult::Fail, None) => format!("{client} is not authorized"),
        (SpfResult::SoftFail, None) => format!("{client} is probably not authorized"),
        (SpfResult::Neutral, None) => format!("no assertion about {client}"),
        (SpfResult::None, None) => "no SPF record".to_string(),
        (SpfResult::TempError, None) => "DNS error".to_string(),
        (SpfResult::PermError, None) => {
            "the SPF record is invalid or needs too many lookups".to_string()
        }
    };
    // RFC 7208 §2.4: a null reverse-path is checked as postmaster@HELO.
    match (alignment, null_sender) {
        (Some(alignment), true) => {
            let _ = write!(text, " (null sender: {why}), {}", aligned_with(alignment));
        }
        (Some(alignment), false) => {
            let _ = write!(text, " ({why}), {}", aligned_with(alignment));
        }
        (None, true) => {
            let _ = write!(text, " (null sender): {why}");
        }
        (None, false) => {
            let _ = write!(text, ": {why}");
        }
    }
    text
}

/// `DKIM pass for d=example.com s=news2048 a=rsa-sha256 (2048-bit key),
/// aligned with example.com (relaxed: example.com = example.com)`.
fn dkim_line(check: &DkimCheck, alignment: Option<&Alignment>) -> String {
    let mut text = format!("DKIM {}", check.result.as_str());
    if check.domain.is_empty() {
        text.push_str(" for an unreadable signature");
    } else {
        let _ = write!(
            text,
            " for d={} s={} a={}",
            check.domain, check.selector, check.algorithm
        );
    }
    if let Some(bits) = check.key_bits {
        let _ = write!(text, " ({bits}-bit key)");
    }
    if let Some(reason) = &check.reason {
        let _ = write!(text, ": {reason}");
    } else if check.result != DkimResult::Pass {
        text.push_str(": no reason given");
    }
    if let Some(alignment) = alignment {
        let _ = write!(text, ", {}", aligned_with(alignment));
    }
    text
}

/// `ARC pass: 2 sets, oldest-pass 0` or `ARC fail: why`, then one
/// indented line per set: `i=1 sealed by lists.example.org (s=arc,
/// cv=none), AMS pass`.
fn arc_lines(out: &mut String, arc: &ArcCheck) {
    let head = match (&arc.reason, arc.oldest_pass) {
        (Some(reason), _) => format!("ARC {}: {reason}", arc.result.as_str()),
        (None, Some(oldest)) => format!(
            "ARC {}: {} sets, oldest-pass {oldest}",
            arc.result.as_str(),
            arc.chain.len()
        ),
        (None, None) => format!("ARC {}", arc.result.as_str()),
    };
    line(out, head);
    for set in &arc.chain {
        let mut text = format!(
            "  i={} sealed by {} (s={}, cv={}), AMS {}",
            set.instance,
            set.sealer,
            set.selector,
            set.cv.as_str(),
            set.ams.as_str()
        );
        if let Some(reason) = &set.ams_reason {
            let _ = write!(text, ": {reason}");
        }
        line(out, text);
    }
}

/// `aligned with example.com (relaxed: ...)` or `not aligned with ...`.
fn aligned_with(alignment: &Alignment) -> String {
    format!(
        "{} with {} ({})",
        if alignment.aligned {
            "aligned"
        } else {
            "not aligned"
        },
        alignment.author,
        alignment.explain()
    )
}

fn envelope_lines(out: &mut String, inferred: &Inferred) {
    let envelope = &inferred.envelope;
    let client_ip = envelope
        .client_ip
        .map_or_else(|| "none".to_string(), |ip| ip.to_string());
    line(
        out,
        format!("Client IP: {client_ip} ({})", inferred.client_ip.describe()),
    );
    let helo = if envelope.helo.is_empty() {
        "none"
    } else {
        envelope.helo.as_str()
    };
    line(
        out,
        format!("HELO:      {helo} ({})", inferred.helo.describe()),
    );
    line(
        out,
        format!(
            "MAIL FROM: <{}> ({})",
            envelope.mail_from,
            inferred.mail_from.describe()
        ),
    );
}
