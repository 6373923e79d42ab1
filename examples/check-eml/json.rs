//! The `--json` output: one object, documented in docs/check-eml.md. Result
//! words are the RFC 8601 ones the library's `as_str()` gives.

use crate::Report;
use dmarc_verifier::{arc::ArcCheck, Evaluation, Verdict};
use serde_json::{json, Map, Value};

/// The JSON object of one run.
pub fn render(report: &Report<'_>) -> Value {
    let verdict = report.verdict;
    let envelope = &report.inferred.envelope;
    let decisive = verdict.decisive_evaluation();

    let mut inferred = Map::new();
    for (key, source) in [
        ("client_ip", report.inferred.client_ip),
        ("helo", report.inferred.helo),
        ("mail_from", report.inferred.mail_from),
    ] {
        if let Some(header) = source.header() {
            inferred.insert(key.to_string(), header.into());
        }
    }

    let dkim: Vec<Value> = verdict
        .dkim
        .iter()
        .enumerate()
        .map(|(i, check)| {
            let aligned = decisive
                .and_then(|e| e.dkim_alignments.get(i))
                .and_then(Option::as_ref)
                .is_some_and(|a| a.aligned);
            json!({
                "result": check.result.as_str(),
                "domain": non_empty(&check.domain),
                "selector": non_empty(&check.selector),
                "algorithm": non_empty(&check.algorithm),
                "aligned": aligned,
                "key_bits": check.key_bits,
                "reason": check.reason,
            })
        })
        .collect();

    let dmarc = match decisive {
        Some(evaluation) => evaluation_json(evaluation),
        None => no_evaluation_json(verdict, report),
    };

    let mut out = json!({
        "file": report.name,
        "envelope": {
            "client_ip": envelope.client_ip.map(|ip| ip.to_string()),
            "helo": envelope.helo,
            "mail_from": envelope.mail_from,
        },
        "inferred": inferred,
        "notes": report.notes().collect::<Vec<_>>(),
        "spf": {
            "result": verdict.spf.result.as_str(),
            "domain": non_empty(&verdict.spf.domain),
            "scope": verdict.spf.scope.as_str(),
            "reason": verdict.spf.reason,
            "record": verdict.spf.record,
        },
        "dkim": dkim,
        "arc": arc_json(&verdict.arc),
        "dmarc": dmarc,
        "disposition": verdict.disposition.as_str(),
        "override_reason": verdict.override_reason.map(|r| r.as_str()),
        "override_comment": verdict.override_comment,
        "authentication_results": verdict.authentication_results_header("\n"),
    });
    if let Some(object) = out.as_object_mut() {
        if verdict.evaluations.len() > 1 {
            object.insert(
                "evaluations".to_string(),
                verdict.evaluations.iter().map(evaluation_json).collect(),
            );
        }
        if report.explain {
            object.insert(
                "trail".to_string(),
                verdict.trail.iter().map(|s| s.to_string()).collect(),
            );
        }
    }
    out
}

/// The `arc` object: the chain validation status, `oldest-pass` (RFC
/// 8617 §5.2, for a chain that passed) and each set in instance order.
fn arc_json(arc: &ArcCheck) -> Value {
    let chain: Vec<Value> = arc
        .chain
        .iter()
        .map(|set| {
            json!({
                "instance": set.instance,
                "sealer": set.sealer,
                "selector": set.selector,
                "cv": set.cv.as_str(),
                "ams": set.ams.as_str(),
            })
        })
        .collect();
    json!({
        "result": arc.result.as_str(),
        "oldest_pass": arc.oldest_pass,
        "chain": chain,
    })
}

/// The `dmarc` object of one Author Domain.
fn evaluation_json(evaluation: &Evaluation) -> Value {
    let policy = evaluation.policy;
    json!({
        "result": evaluation.result.as_str(),
        "header_from": evaluation.author_domain,
        "policy_domain": evaluation.policy_domain,
        "org_domain": evaluation.org_domain,
        "record": evaluation.record.as_ref().map(|r| r.raw()),
        "policy": policy.map(|p| p.applied.as_str()),
        "published_policy": policy.map(|p| p.published.as_str()),
        "policy_source": policy.map(|p| p.source.as_str()),
        "spf_aligned": evaluation.spf_aligned,
        "dkim_aligned": evaluation.dkim_aligned,
        "sampled": policy.map(|p| p.sampled),
        "testing": policy.map(|p| p.testing),
        "discovery": evaluation.discovery.as_str(),
        "disposition": evaluation.disposition.as_str(),
        "override_reason": evaluation.override_reason.map(|r| r.as_str()),
        "override_comment": evaluation.override_comment,
        "reason": evaluation.reason,
    })
}

/// The `dmarc` object when no Author Domain was evaluated: an unusable From
/// (the reason is its token, e.g. `multiple-from`).
fn no_evaluation_json(verdict: &Verdict, report: &Report<'_>) -> Value {
    let reason = verdict.author_domains.as_ref().err().map(|e| e.kind());
    json!({
        "result": verdict.dmarc.as_str(),
        "header_from": null,
        "policy_domain": null,
        "org_domain": null,
        "record": null,
        "policy": null,
        "published_policy": null,
        "policy_source": null,
        "spf_aligned": false,
        "dkim_aligned": false,
        "sampled": null,
        "testing": null,
        "discovery": report.discovery.as_str(),
        "disposition": verdict.disposition.as_str(),
        "override_reason": verdict.override_reason.map(|r| r.as_str()),
        "override_comment": verdict.override_comment,
        "reason": reason,
    })
}

fn non_empty(text: &str) -> Option<&str> {
    Some(text).filter(|t| !t.is_empty())
}
