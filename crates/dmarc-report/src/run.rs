//! One report run: the aggregate reports of a period built from the store
//! and queued for their `rua` destinations (RFC 9990 §3), then everything
//! pending delivered ([`crate::deliver`]).
//!
//! A run is safe to repeat: a policy domain whose report for the period
//! exists is skipped (the store's unique key on domain and period decides,
//! so two hosts sharing a PostgreSQL store make one report), and delivery
//! only touches messages still pending.

use crate::{
    aggregate::{ReportFormat, ReportWriter, ReporterInfo},
    destination::{self, address_domain},
    store::{MessageKind, OutgoingMessage, ReportEntry, Store, StoreError},
};
use std::collections::HashMap;

/// Default [`AggregateSettings::max_per_destination_domain`].
pub const DEFAULT_MAX_PER_DESTINATION_DOMAIN: usize = 1000;

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
    /// The most `rua` destinations of one record that get its report
    /// (repeats count once; default [`destination::DEFAULT_MAX_RUA`]).
    pub max_rua: usize,
    /// The most report messages queued in one run for one destination
    /// domain, as `destination_group` groups them (default
    /// [`DEFAULT_MAX_PER_DESTINATION_DOMAIN`]): fifty subdomains under a
    /// wildcard `_dmarc`, each naming addresses at one domain, make at
    /// most this many report mails to it, not fifty times ten.
    pub max_per_destination_domain: usize,
    /// The group of a destination domain for that cap: its
    /// Organizational Domain (so that addresses at many subdomains of one
    /// domain count together).
    pub destination_group: &'a dyn Fn(&str) -> String,
}

impl std::fmt::Debug for AggregateSettings<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateSettings")
            .field("reporter", &self.reporter)
            .field("format", &self.format)
            .field("sender", &self.sender)
            .field("own_addresses", &self.own_addresses)
            .field("max_rua", &self.max_rua)
            .field(
                "max_per_destination_domain",
                &self.max_per_destination_domain,
            )
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
    /// Destinations left out: repeated, unusable, or over the per-record
    /// cap ([`AggregateSettings::max_rua`]).
    pub destinations_dropped: u64,
    /// Report messages not queued: their destination domain already had
    /// [`AggregateSettings::max_per_destination_domain`] in this run.
    pub over_destination_cap: u64,
}

/// Builds and queues the aggregate report of every policy domain with
/// evaluations in `[begin, end)`.
///
/// Each report is written as the store hands its rows over
/// ([`Store::report_rows`]: grouped and sorted by the database), so the
/// memory of a run holds one compressed report at a time, whatever the
/// number of records. Its destinations are the usable `mailto:` addresses
/// of the latest policy's `rua`, each once, at most
/// [`AggregateSettings::max_rua`], never ours, within the per-destination
/// domain cap of the run.
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
    let mut per_group: HashMap<String, usize> = HashMap::new();
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
        let Some(policy) = store.latest_policy(&domain, begin, end)? else {
            continue;
        };
        let mut writer = ReportWriter::new(settings.reporter, &policy, begin, end, settings.format);
        store.report_rows(&domain, begin, end, &mut |row, count| {
            writer.push(&row, count)
        })?;
        let Some(report) = writer.finish() else {
            continue;
        };
        let size = report.size_bytes();
        let (destinations, dropped) = destination::normalize(&policy.rua, settings.max_rua);
        summary.destinations_dropped += u64::try_from(dropped).unwrap_or(u64::MAX);
        let mut recipients = Vec::new();
        for destination in &destinations {
            let Some(address) = destination::usable_address(&destination.uri) else {
                continue;
            };
            if settings
                .own_addresses
                .iter()
                .any(|mine| mine.eq_ignore_ascii_case(&address))
            {
                continue;
            }
            // RFC 7489 §6.2: a report larger than the destination's limit is
            // not sent there (RFC 9989 dropped the limits; honouring one that
            // is still published is harmless).
            if destination.max_size.is_some_and(|max| size > max) {
                summary.too_large += 1;
                tracing::info!(
                    policy_domain = %domain,
                    destination = %address,
                    size,
                    "aggregate report larger than the destination's size limit: not sent there"
                );
                continue;
            }
            let group = (settings.destination_group)(address_domain(&address));
            let sent_to_group = per_group.entry(group).or_insert(0);
            if *sent_to_group >= settings.max_per_destination_domain {
                summary.over_destination_cap += 1;
                continue;
            }
            *sent_to_group += 1;
            recipients.push(address);
        }
        if recipients.is_empty() {
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
        let queued = u64::try_from(recipients.len()).unwrap_or(u64::MAX);
        // One mail at a time, stored as it is made.
        let mut messages = recipients.into_iter().map(|address| OutgoingMessage {
            kind: MessageKind::Aggregate,
            policy_domain: domain.clone(),
            sender: settings.sender.to_string(),
            payload: report.report_mail(settings.sender, &address, now, &settings.reporter.domain),
            recipient: address,
            created: now,
        });
        if store.add_report_with(&entry, &mut messages)? {
            summary.reports += 1;
            summary.queued += queued;
            tracing::info!(
                policy_domain = %domain,
                report_id = %entry.report_id,
                messages = entry.message_count,
                rows = report.row_count(),
                destinations = queued,
                "aggregate report made"
            );
        } else {
            summary.already_done += 1;
        }
    }
    if summary.over_destination_cap > 0 {
        tracing::warn!(
            not_queued = summary.over_destination_cap,
            max_per_destination_domain = settings.max_per_destination_domain,
            "aggregate reports over the per-destination-domain cap of this run were not queued"
        );
    }
    Ok(summary)
}

/// Refuses a period that has not ended at `now` (UTC): reporting it would
/// mark it done, and the mail that still comes in it would never be
/// reported.
///
/// # Errors
///
/// A message for the operator.
pub fn ended(period: (i64, i64), now: i64) -> Result<(), String> {
    if period.1 > now {
        Err(format!(
            "the period {} to {} UTC has not ended yet; report a day once it is over",
            crate::aggregate::mail::utc_text(period.0),
            crate::aggregate::mail::utc_text(period.1.saturating_sub(1))
        ))
    } else {
        Ok(())
    }
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
    fn a_period_must_have_ended() {
        let (begin, end) = utc_day("2026-11-22").unwrap();
        assert!(ended((begin, end), end).is_ok());
        assert!(ended((begin, end), end + 1).is_ok());
        let error = ended((begin, end), end - 1).unwrap_err();
        assert!(error.contains("2026-11-22 00:00:00"), "{error}");
        assert!(error.contains("has not ended"), "{error}");
    }
}
