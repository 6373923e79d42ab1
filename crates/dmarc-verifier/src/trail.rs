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
#[derive(Debug, Default)]
pub(crate) struct Trail(Mutex<Vec<Step>>);

impl Trail {
    pub(crate) fn dns(&self, event: DnsEvent) {
        tracing::debug!(target: "dmarc_verifier::trail", "dns: {event}");
        self.push(Step::Dns(event));
    }

    pub(crate) fn decide(&self, text: impl Into<String>) {
        let text = text.into();
        tracing::debug!(target: "dmarc_verifier::trail", "{text}");
        self.push(Step::Decision(text));
    }

    fn push(&self, step: Step) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(step);
    }

    pub(crate) fn into_steps(self) -> Vec<Step> {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
