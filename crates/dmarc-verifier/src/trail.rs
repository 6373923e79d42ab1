//! The decision trail: how a verdict was reached, step by step.
//!
//! Every DNS question and answer, each record considered and why it applied
//! or not, each alignment check, the policy before and after `pct`/`t` and any
//! override. The CLI's `--explain`, the debug log and the tests read the same
//! steps.

use crate::dns::DnsEvent;
use std::{fmt, sync::Mutex};

/// One step of the decision trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A DNS question and its answer.
    Dns(DnsEvent),
    /// A conclusion drawn, in words (which record applied and why, an
    /// alignment verdict, the policy after pct and t, an override).
    Decision(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Dns(event) => write!(f, "dns: {event}"),
            Step::Decision(text) => f.write_str(text),
        }
    }
}

/// Collects steps while a message is checked; shared by concurrent lookups.
///
/// When disabled (`VerifierConfig::trail` false and the trail's debug log
/// off) nothing is formatted: the steps are built by closures only called
/// when enabled.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    steps: Mutex<Vec<Step>>,
    disabled: bool,
}

impl Trail {
    /// A trail that records when `record` is set or the trail's debug log
    /// (target `dmarc_verifier::trail`) is on.
    pub(crate) fn new(record: bool) -> Trail {
        let log = tracing::enabled!(target: "dmarc_verifier::trail", tracing::Level::DEBUG);
        Trail {
            steps: Mutex::default(),
            disabled: !(record || log),
        }
    }

    pub(crate) fn dns_with(&self, event: impl FnOnce() -> DnsEvent) {
        if self.disabled {
            return;
        }
        let event = event();
        tracing::debug!(target: "dmarc_verifier::trail", "dns: {event}");
        self.push(Step::Dns(event));
    }

    pub(crate) fn decide(&self, text: &str) {
        self.decide_with(|| text.to_string());
    }

    pub(crate) fn decide_with(&self, text: impl FnOnce() -> String) {
        if self.disabled {
            return;
        }
        let text = text();
        tracing::debug!(target: "dmarc_verifier::trail", "{text}");
        self.push(Step::Decision(text));
    }

    fn push(&self, step: Step) {
        self.steps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(step);
    }

    pub(crate) fn into_steps(self) -> Vec<Step> {
        self.steps
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
