//! One report run: the aggregate reports of a period built from the store
//! and queued for their `rua` destinations (RFC 9990 §3), then everything
//! pending delivered ([`crate::deliver`]).
//!
//! A run is safe to repeat: a policy domain whose report for the period
//! exists is skipped (the store's unique key on domain and period decides,
//! so two hosts sharing a PostgreSQL store make one report), and delivery
//! only touches messages still pending.

use crate::{
    aggregate::{AggregateReport, ReportFormat, ReporterInfo},
    model::ReportDestination,
    store::{MessageKind, OutgoingMessage, ReportEntry, Store, StoreError},
};

/// What aggregate reports to make.
#[derive(Clone)]
pub struct AggregateSettings<'a> {
    /// Who we are.
    pub reporter: &'a ReporterInfo,
    /// RFC 9990 or RFC 7489 XML.
    pub format: ReportFormat,
    /// The envelope sender and From of report mail.
    pub sender: &'a str,
    /// Policy domains never reported to (`true` = excluded).
    pub excluded: &'a dyn Fn(&str) -> bool,
    /// Addresses that are ours: never a destination (a report about our
    /// own domain sent to ourselves would be recorded and reported again).
    pub own_addresses: &'a [String],
}

impl std::fmt::Debug for AggregateSettings<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateSettings")
            .field("reporter", &self.reporter)
            .field("format", &self.format)
            .field("sender", &self.sender)
            .field("own_addresses", &self.own_addresses)
            .finish_non_exhaustive()
    }
}

/// What generation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Policy domains with evaluations in the period.
    pub domains: u64,
    /// Reports made in this run.
    pub reports: u64,
    /// Domains whose report for the period already existed.
    pub already_done: u64,
    /// Domains excluded by configuration.
    pub excluded: u64,
    /// Domains whose record has no usable `rua` (a `mailto:` address not
    /// ours): nothing to send, the report is recorded as made.
    pub no_destination: u64,
    /// Messages queued (one per destination).
    pub queued: u64,
    /// Destinations skipped because the report is larger than their
    /// `!size` limit (RFC 7489 §6.2).
    pub too_large: u64,
}

/// Builds and queues the aggregate report of every policy domain with
/// evaluations in `[begin, end)`.
///
/// # Errors
///
/// [`StoreError`] when the store fails; reports queued before stay queued.
pub fn queue_aggregate_reports(
    store: &mut dyn Store,
    settings: &AggregateSettings<'_>,
    begin: i64,
    end: i64,
    now: i64,
) -> Result<GenerateSummary, StoreError> {
    let mut summary = GenerateSummary::default();
    for domain in store.policy_domains(begin, end)? {
        summary.domains += 1;
        if (settings.excluded)(&domain) {
            summary.excluded += 1;
            continue;
        }
        if store.report_exists(&domain, begin, end)? {
            summary.already_done += 1;
            continue;
        }
        let records = store.records(&domain, begin, end)?;
        let Some(report) = AggregateReport::build(
            settings.reporter,
            &domain,
            begin,
            end,
            &records,
            settings.format,
        ) else {
            continue;
        };
        let size = report.size_bytes();
        let mut messages = Vec::new();
        for destination in &report.policy().rua {
            let Some(address) = usable_address(destination, settings.own_addresses) else {
                continue;
            };
            // RFC 7489 §6.2: a report larger than the destination's limit is
            // not sent there (RFC 9989 dropped the limits; honouring one that
            // is still published is harmless).
            if destination.max_size.is_some_and(|max| size > max) {
                summary.too_large += 1;
                tracing::info!(
                    policy_domain = %domain,
                    destination = %destination.uri,
                    size,
                    "aggregate report larger than the destination's size limit: not sent there"
                );
                continue;
            }
            messages.push(OutgoingMessage {
                kind: MessageKind::Aggregate,
                policy_domain: domain.clone(),
                sender: settings.sender.to_string(),
                recipient: address.to_string(),
                payload: report.report_mail(
                    settings.sender,
                    address,
                    now,
                    &settings.reporter.domain,
                ),
                created: now,
            });
        }
        if messages.is_empty() {
            summary.no_destination += 1;
        }
        let entry = ReportEntry {
            policy_domain: domain.clone(),
            begin,
            end,
            report_id: report.report_id().to_string(),
            message_count: report.message_count(),
            created: now,
        };
        let queued = u64::try_from(messages.len()).unwrap_or(u64::MAX);
        if store.add_report(&entry, &messages)? {
            summary.reports += 1;
            summary.queued += queued;
            tracing::info!(
                policy_domain = %domain,
                report_id = %entry.report_id,
                messages = entry.message_count,
                destinations = queued,
                "aggregate report made"
            );
        } else {
            summary.already_done += 1;
        }
    }
    Ok(summary)
}

/// The address of a `mailto:` destination that is not ours, lower-cased
/// domain; `None` for other schemes (RFC 9990 §3: only `mailto:` is
/// defined) and for our own addresses.
fn usable_address<'d>(destination: &'d ReportDestination, own: &[String]) -> Option<&'d str> {
    let address = destination.mailto_address()?;
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    if own.iter().any(|mine| mine.eq_ignore_ascii_case(address)) {
        return None;
    }
    Some(address)
}

/// The previous full UTC day before `now`: `[midnight, midnight + 86400)`
/// (RFC 9990 §3.2: reports cover a UTC day by default).
pub fn previous_utc_day(now: i64) -> (i64, i64) {
    let today = now.div_euclid(86_400) * 86_400;
    (today - 86_400, today)
}

/// Parses `YYYY-MM-DD` into the UTC day `[begin, end)`.
///
/// # Errors
///
/// A message saying what was expected.
pub fn utc_day(text: &str) -> Result<(i64, i64), String> {
    let bad = || format!("{text:?} is not a date (YYYY-MM-DD)");
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (year, month, day): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if !(1970..=9999).contains(&year) || day < 1 || day > days_in_month || y.len() != 4 {
        return Err(bad());
    }
    let begin = days_from_civil(year, month, day) * 86_400;
    Ok((begin, begin + 86_400))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(utc_day("1970-01-01"), Ok((0, 86_400)));
        assert_eq!(utc_day("2026-11-22"), Ok((1_795_305_600, 1_795_392_000)));
        assert_eq!(utc_day("2024-02-29").map(|d| d.0), Ok(1_709_164_800));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-11",
            "26-11-22",
            "x",
            "2026-11-22-1",
        ] {
            assert!(utc_day(bad).is_err(), "{bad}");
        }
        assert_eq!(
            previous_utc_day(1_795_305_600 + 3_600),
            (1_795_219_200, 1_795_305_600)
        );
        assert_eq!(
            previous_utc_day(1_795_305_600),
            (1_795_219_200, 1_795_305_600)
        );
    }

    #[test]
    fn destinations_are_mailto_and_not_ours() {
        let own = vec!["dmarc@mx.example.net".to_string()];
        let dest = |uri: &str| ReportDestination {
            uri: uri.to_string(),
            max_size: None,
        };
        assert_eq!(
            usable_address(&dest("mailto:rua@example.com"), &own),
            Some("rua@example.com")
        );
        assert_eq!(
            usable_address(&dest("mailto:DMARC@mx.example.net"), &own),
            None
        );
        assert_eq!(usable_address(&dest("https://example.com/rua"), &own), None);
    }
}
