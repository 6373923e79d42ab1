//! The evaluation of check_host(): records, terms, limits, the time
//! budget and the explanation (RFC 7208 §4 to §7).
//!
//! `include` is evaluated without recursion: the included record is
//! pushed on a stack of frames, and its result is folded into the
//! including record when it finishes (§5.2). `redirect` replaces the
//! frame's record (§6.1). Nothing allocates per term besides the names
//! and records the DNS answers, once the name buffers have grown.

use super::{
    lookup::{Answer, LookupError, SpfLookup},
    macros::{self, Scratch, Vars},
    name,
    record::{self, Directive, Mechanism, Qualifier, Record, Selection, Span},
    reverse_name, SpfOptions, SpfOutcome, SpfRequest, SpfResult, DNS_LOOKUP_LIMIT, MX_NAME_LIMIT,
    PTR_NAME_LIMIT, VOID_LOOKUP_LIMIT,
};
use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A result that ends the evaluation, with its reason.
type Stop = (SpfResult, String);

/// The TXT records of a name, as the lookup answered them.
type TxtRecords = Arc<[Box<[u8]>]>;

/// check_host() itself; see [`super::check_host`].
pub(super) async fn check_host<L: SpfLookup>(
    lookup: &L,
    request: &SpfRequest<'_>,
    options: &SpfOptions,
) -> SpfOutcome {
    let domain = request
        .domain
        .strip_suffix('.')
        .unwrap_or(request.domain)
        .to_ascii_lowercase();
    let mut outcome = SpfOutcome {
        result: SpfResult::None,
        scope: request.scope,
        domain,
        reason: String::new(),
        explanation: None,
        record: None,
        dns_lookups: 0,
        void_lookups: 0,
    };
    // RFC 7208 §4.3: a malformed <domain> is `none`, without a query.
    if let Some(problem) = name::domain_problem(&outcome.domain) {
        outcome.reason = if outcome.domain.is_empty() {
            "no domain to check".to_string()
        } else {
            format!(
                "{:?} is not a domain SPF can check: {problem} (RFC 7208 §4.3)",
                request.domain
            )
        };
        return outcome;
    }
    // RFC 7208 §4.3: a <sender> without local-part is postmaster@.
    let (local_part, sender_domain) = request
        .sender
        .rsplit_once('@')
        .unwrap_or((request.sender, outcome.domain.as_str()));
    let (sender, local_part) = if local_part.is_empty() {
        (
            Cow::Owned(format!("postmaster@{sender_domain}")),
            "postmaster",
        )
    } else {
        (Cow::Borrowed(request.sender), local_part)
    };
    let mut evaluator = Evaluator {
        lookup,
        // RFC 7208 §5: an IPv4-mapped IPv6 address is an IPv4 client.
        ip: request.ip.to_canonical(),
        sender: &sender,
        local_part,
        sender_domain,
        helo: request.helo,
        receiver: options.receiver.as_deref().unwrap_or("unknown"),
        lookups: 0,
        voids: 0,
        name: String::new(),
        target: String::new(),
        scratch: Scratch::default(),
        ptr_names: None,
        asking: None,
        top_record: None,
    };
    let deadline = deadline(options.time_budget);
    let decision = match deadline {
        Some(deadline) => {
            match tokio::time::timeout_at(deadline, evaluator.evaluate(&outcome.domain)).await {
                Ok(decision) => decision,
                Err(_) => Decision {
                    result: SpfResult::TempError,
                    reason: format!(
                        "time limit of {:?} exceeded{} (RFC 7208 §4.6.4)",
                        options.time_budget,
                        evaluator.waiting_on()
                    ),
                    exp: None,
                },
            }
        }
        None => evaluator.evaluate(&outcome.domain).await,
    };
    outcome.result = decision.result;
    outcome.reason = decision.reason;
    outcome.dns_lookups = evaluator.lookups;
    outcome.void_lookups = evaluator.voids;
    if let Some((txt, index)) = &evaluator.top_record {
        outcome.record = txt
            .get(*index)
            .map(|text| String::from_utf8_lossy(text).into_owned());
    }
    // RFC 7208 §6.2: the explanation of a fail; any failure to get it
    // leaves none, and so does running out of time.
    if let Some(exp) = decision.exp.filter(|_| outcome.result == SpfResult::Fail) {
        outcome.explanation = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, evaluator.explanation(&exp))
                .await
                .ok()
                .flatten(),
            None => evaluator.explanation(&exp).await,
        };
    }
    outcome
}

/// When the time budget runs out, inside a Tokio runtime (whose timer
/// enforces it); `None` elsewhere, or for a budget too long to add.
fn deadline(budget: Duration) -> Option<tokio::time::Instant> {
    tokio::runtime::Handle::try_current().ok()?;
    tokio::time::Instant::now().checked_add(budget)
}

/// How the evaluation ended, before the explanation.
struct Decision {
    result: SpfResult,
    reason: String,
    /// For a fail of the top-level record: where its `exp=` is.
    exp: Option<Explanation>,
}

impl From<Stop> for Decision {
    fn from((result, reason): Stop) -> Self {
        Decision {
            result,
            reason,
            exp: None,
        }
    }
}

/// The `exp=` of the record that decided a fail (§6.2).
struct Explanation {
    txt: TxtRecords,
    index: usize,
    spec: Span,
    /// <domain> of that record (`%{d}`).
    domain: String,
}

/// A record being evaluated.
struct Frame {
    /// <domain> of the record: lower case, without trailing dot.
    domain: String,
    /// The TXT records of <domain>; the SPF record is at `index`.
    txt: TxtRecords,
    index: usize,
    record: Record,
    /// The next directive to evaluate.
    next: usize,
    /// For an included record, the `include` of the including record.
    via: Option<Via>,
}

impl Frame {
    fn text(&self) -> &[u8] {
        self.txt.get(self.index).map_or(&[], |text| text)
    }

    fn term(&self, term: Span) -> &str {
        term.str(self.text())
    }
}

/// The `include` directive a frame was pushed by.
#[derive(Clone, Copy)]
struct Via {
    qualifier: Qualifier,
    term: Span,
}

/// What evaluating one directive gives.
enum Step {
    NoMatch,
    Match,
    /// An `include` whose record is to be evaluated.
    Include(Frame),
}

/// What an address lookup (A or AAAA) found.
enum Addresses {
    /// NXDOMAIN or NODATA.
    Void,
    Match,
    NoMatch,
}

/// The state of one check_host().
struct Evaluator<'a, L> {
    lookup: &'a L,
    /// <ip>, an IPv4-mapped address as IPv4.
    ip: IpAddr,
    sender: &'a str,
    local_part: &'a str,
    sender_domain: &'a str,
    helo: &'a str,
    receiver: &'a str,
    /// Terms that asked the DNS (§4.6.4).
    lookups: u8,
    /// Of those, the void ones.
    voids: u8,
    /// The name being asked.
    name: String,
    /// The target of a `ptr` being evaluated.
    target: String,
    scratch: Scratch,
    /// The validated names of <ip> for `%{p}`, once looked up.
    ptr_names: Option<Vec<Box<str>>>,
    /// The type being asked of `name` (or of <ip>, for PTR), for the
    /// reason of a timeout.
    asking: Option<&'static str>,
    /// The TXT records of <domain> and the index of its SPF record.
    top_record: Option<(TxtRecords, usize)>,
}

impl<L: SpfLookup> Evaluator<'_, L> {
    /// Evaluates the record of <domain> to a result (§4.4 to §4.7).
    async fn evaluate(&mut self, domain: &str) -> Decision {
        let top = match self.fetch(domain, true).await {
            Ok(frame) => frame,
            Err(stop) => return stop.into(),
        };
        let mut stack = Vec::with_capacity(4);
        stack.push(top);
        loop {
            let Some(frame) = stack.last_mut() else {
                return (SpfResult::PermError, "no record to evaluate".to_string()).into();
            };
            let (mut result, mut reason) =
                if let Some(&directive) = frame.record.directives.get(frame.next) {
                    frame.next += 1;
                    match self.directive(frame, directive).await {
                        Ok(Step::NoMatch) => continue,
                        Ok(Step::Match) => {
                            let result = directive.qualifier.result();
                            // Only a pass of an included record, or a
                            // top-level decision, is ever told.
                            let reason = if frame.via.is_none() || result == SpfResult::Pass {
                                format!(
                                    "mechanism {} of {} matched",
                                    frame.term(directive.term),
                                    frame.domain
                                )
                            } else {
                                String::new()
                            };
                            (result, reason)
                        }
                        Ok(Step::Include(mut child)) => {
                            child.via = Some(Via {
                                qualifier: directive.qualifier,
                                term: directive.term,
                            });
                            stack.push(child);
                            continue;
                        }
                        Err(stop) => return stop.into(),
                    }
                } else if let Some((spec, term)) = frame.record.redirect {
                    // §6.1: redirect when no mechanism matched (an `all`
                    // always matches, so redirect is never reached then).
                    match self.redirect(frame, spec, term).await {
                        Ok(mut target) => {
                            target.via = frame.via;
                            *frame = target;
                            continue;
                        }
                        Err(stop) => return stop.into(),
                    }
                } else {
                    // §4.7: no match and no redirect is neutral.
                    let reason = if frame.via.is_none() {
                        format!(
                            "no mechanism of {} matched (neutral by default, RFC 7208 §4.7)",
                            frame.domain
                        )
                    } else {
                        String::new()
                    };
                    (SpfResult::Neutral, reason)
                };
            // The frame is finished with `result`: fold it into the
            // frames that included it (§5.2).
            loop {
                let Some(done) = stack.pop() else {
                    return (SpfResult::PermError, "no record to evaluate".to_string()).into();
                };
                let Some(via) = done.via else {
                    let exp = match (result, done.record.exp) {
                        (SpfResult::Fail, Some(spec)) => Some(Explanation {
                            txt: done.txt,
                            index: done.index,
                            spec,
                            domain: done.domain,
                        }),
                        _ => None,
                    };
                    return Decision {
                        result,
                        reason,
                        exp,
                    };
                };
                let Some(parent) = stack.last() else {
                    return (SpfResult::PermError, "no including record".to_string()).into();
                };
                match result {
                    SpfResult::Pass => {
                        result = via.qualifier.result();
                        reason = if parent.via.is_none() || result == SpfResult::Pass {
                            format!(
                                "mechanism {} of {} matched: {reason}",
                                parent.term(via.term),
                                parent.domain
                            )
                        } else {
                            String::new()
                        };
                        // The including record is finished too.
                    }
                    // Not a match: the including record goes on.
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => break,
                    SpfResult::TempError | SpfResult::PermError => return (result, reason).into(),
                    // Not reached: a record was selected.
                    SpfResult::None => {
                        return (
                            SpfResult::PermError,
                            format!("{} of {}: none", parent.term(via.term), parent.domain),
                        )
                            .into()
                    }
                }
            }
        }
    }

    /// Looks up and reads the SPF record of `domain` (§4.4, §4.5, §4.6).
    /// `Err` with `none` when there is none (NXDOMAIN, no TXT record, no
    /// `v=spf1` record), `temperror` when the lookup failed, `permerror`
    /// for several records or a syntax error.
    async fn fetch(&mut self, domain: &str, top: bool) -> Result<Frame, Stop> {
        self.name.clear();
        self.name.push_str(domain);
        self.asking = Some("TXT");
        let answer = self.lookup.txt(&self.name).await;
        self.asking = None;
        let txt = match answer {
            Ok(Answer::Records(txt)) => txt,
            Ok(Answer::NxDomain) => {
                return Err((SpfResult::None, format!("{domain} does not exist")))
            }
            Ok(Answer::NoData) => {
                return Err((SpfResult::None, format!("no SPF record at {domain}")))
            }
            Err(error) => {
                return Err((
                    SpfResult::TempError,
                    format!("DNS lookup of TXT {domain} failed: {error}"),
                ))
            }
        };
        let index = match record::select(&txt) {
            Selection::One(index) => index,
            Selection::None => return Err((SpfResult::None, format!("no SPF record at {domain}"))),
            Selection::Several(count) => {
                return Err((
                    SpfResult::PermError,
                    format!("{count} SPF records at {domain} (RFC 7208 §4.5)"),
                ))
            }
        };
        if top {
            self.top_record = Some((Arc::clone(&txt), index));
        }
        let text = txt.get(index).map_or(&[][..], |text| text);
        let record = record::parse(text).map_err(|error| {
            (
                SpfResult::PermError,
                format!(
                    "syntax error in the SPF record of {domain}: {} in {:?} (RFC 7208 §4.6)",
                    error.problem, error.term
                ),
            )
        })?;
        Ok(Frame {
            domain: domain.to_owned(),
            txt,
            index,
            record,
            next: 0,
            via: None,
        })
    }

    /// Evaluates one directive of `frame` (§5).
    async fn directive(&mut self, frame: &Frame, directive: Directive) -> Result<Step, Stop> {
        if directive.asks_dns() {
            self.count(frame, directive.term)?;
        }
        let term = directive.term;
        match directive.mechanism {
            Mechanism::All => Ok(Step::Match),
            Mechanism::Ip4 { network, cidr } => Ok(step(match self.ip {
                IpAddr::V4(ip) => in_v4(ip, network, cidr),
                IpAddr::V6(_) => false,
            })),
            // §5: ip6 never matches an IPv4 client.
            Mechanism::Ip6 { network, cidr } => Ok(step(match self.ip {
                IpAddr::V6(ip) => in_v6(ip, network, cidr),
                IpAddr::V4(_) => false,
            })),
            Mechanism::A {
                target,
                cidr4,
                cidr6,
            } => {
                if !self.target(frame, target).await {
                    return Ok(Step::NoMatch);
                }
                match self.addresses(cidr4, cidr6).await {
                    Ok(Addresses::Match) => Ok(Step::Match),
                    Ok(Addresses::NoMatch) => Ok(Step::NoMatch),
                    Ok(Addresses::Void) => {
                        self.void(frame, term)?;
                        Ok(Step::NoMatch)
                    }
                    Err(error) => Err(self.failed(frame, term, &error)),
                }
            }
            Mechanism::Mx {
                target,
                cidr4,
                cidr6,
            } => self.mx(frame, term, target, cidr4, cidr6).await,
            Mechanism::Ptr(target) => Ok(self.ptr(frame, target).await),
            Mechanism::Exists(target) => {
                if !self.target(frame, Some(target)).await {
                    return Ok(Step::NoMatch);
                }
                // §5.7: A records, whatever the client's family.
                self.asking = Some("A");
                let answer = self.lookup.a(&self.name).await;
                match answer {
                    Ok(answer) if answer.is_void() => {
                        self.asking = None;
                        self.void(frame, term)?;
                        Ok(Step::NoMatch)
                    }
                    Ok(_) => {
                        self.asking = None;
                        Ok(Step::Match)
                    }
                    Err(error) => Err(self.failed(frame, term, &error)),
                }
            }
            Mechanism::Include(target) => {
                self.target(frame, Some(target)).await;
                if let Some(problem) = name::domain_problem(&self.name) {
                    return Err((
                        SpfResult::PermError,
                        format!(
                            "{} of {}: the target {:?} is not a domain SPF can check: {problem} \
                             (RFC 7208 §5.2)",
                            frame.term(term),
                            frame.domain,
                            self.name
                        ),
                    ));
                }
                let target = self.name.clone();
                match self.fetch(&target, false).await {
                    Ok(child) => Ok(Step::Include(child)),
                    // §5.2: an included none is permerror.
                    Err((SpfResult::None, reason)) => Err((
                        SpfResult::PermError,
                        format!(
                            "{} of {}: {reason} (RFC 7208 §5.2)",
                            frame.term(term),
                            frame.domain
                        ),
                    )),
                    Err(stop) => Err(stop),
                }
            }
        }
    }

    /// §6.1: the record of the `redirect=` target, to evaluate in place of
    /// `frame`'s.
    async fn redirect(&mut self, frame: &Frame, spec: Span, term: Span) -> Result<Frame, Stop> {
        self.count(frame, term)?;
        self.target(frame, Some(spec)).await;
        if let Some(problem) = name::domain_problem(&self.name) {
            return Err((
                SpfResult::PermError,
                format!(
                    "{} of {}: the target {:?} is not a domain SPF can check: {problem} \
                     (RFC 7208 §6.1)",
                    frame.term(term),
                    frame.domain,
                    self.name
                ),
            ));
        }
        let target = self.name.clone();
        match self.fetch(&target, false).await {
            Ok(record) => Ok(record),
            // §6.1: a target without record is permerror.
            Err((SpfResult::None, reason)) => Err((
                SpfResult::PermError,
                format!(
                    "{} of {}: {reason} (RFC 7208 §6.1)",
                    frame.term(term),
                    frame.domain
                ),
            )),
            Err(stop) => Err(stop),
        }
    }

    /// §5.4: the MX names of the target, each one's addresses.
    async fn mx(
        &mut self,
        frame: &Frame,
        term: Span,
        target: Option<Span>,
        cidr4: u8,
        cidr6: u8,
    ) -> Result<Step, Stop> {
        if !self.target(frame, target).await {
            return Ok(Step::NoMatch);
        }
        self.asking = Some("MX");
        let answer = match self.lookup.mx(&self.name).await {
            Ok(answer) => answer,
            Err(error) => return Err(self.failed(frame, term, &error)),
        };
        self.asking = None;
        let exchanges = answer.records();
        if exchanges.is_empty() {
            self.void(frame, term)?;
            return Ok(Step::NoMatch);
        }
        // Tried by preference, then name: the order the DNS answered in
        // does not change the result. (At most 11 passes over the set.)
        let mut asked = 0;
        let mut previous: Option<(&(u16, Box<str>), usize)> = None;
        while let Some((index, (_, exchange))) = exchanges
            .iter()
            .enumerate()
            .filter(|&(index, mx)| previous.is_none_or(|last| (mx, index) > last))
            .min_by_key(|&(index, mx)| (mx, index))
        {
            previous = exchanges.get(index).map(|mx| (mx, index));
            self.name.clear();
            self.name.push_str(exchange);
            name::finish_target(&mut self.name);
            // A null MX (RFC 7505, the root) or a name that cannot be
            // asked has no address.
            if !name::is_queryable(&self.name) {
                continue;
            }
            // §4.6.4: an mx that would ask for the addresses of an 11th
            // name is permerror.
            if asked == MX_NAME_LIMIT {
                return Err((
                    SpfResult::PermError,
                    format!(
                        "{} of {}: more than {MX_NAME_LIMIT} MX names to try (RFC 7208 §4.6.4)",
                        frame.term(term),
                        frame.domain,
                    ),
                ));
            }
            asked += 1;
            match self.addresses(cidr4, cidr6).await {
                Ok(Addresses::Match) => return Ok(Step::Match),
                Ok(Addresses::NoMatch | Addresses::Void) => {}
                Err(error) => return Err(self.failed(frame, term, &error)),
            }
        }
        Ok(Step::NoMatch)
    }

    /// §5.5: a validated name of <ip> at or below the target. DNS errors
    /// make the mechanism not match (the PTR lookup) or skip a name (an
    /// address lookup); they are never temperror.
    async fn ptr(&mut self, frame: &Frame, target: Option<Span>) -> Step {
        if !self.target(frame, target).await {
            return Step::NoMatch;
        }
        std::mem::swap(&mut self.name, &mut self.target);
        self.asking = Some("PTR");
        let answer = self.lookup.ptr(self.ip).await;
        self.asking = None;
        let Ok(answer) = answer else {
            return Step::NoMatch;
        };
        let names = answer.records();
        let (first, count) = first_names(names);
        for &index in first.iter().take(count) {
            let Some(ptr_name) = names.get(index) else {
                continue;
            };
            self.name.clear();
            self.name.push_str(ptr_name);
            name::finish_target(&mut self.name);
            if !name::is_at_or_below(&self.name, &self.target) || !name::is_queryable(&self.name) {
                continue;
            }
            if let Ok(Addresses::Match) = self.addresses(32, 128).await {
                return Step::Match;
            }
        }
        Step::NoMatch
    }

    /// The validated names of <ip> for `%{p}` (§7.3): the first 10 PTR
    /// names whose addresses include <ip>. Looked up once per check.
    async fn resolve_ptr_names(&mut self) {
        if self.ptr_names.is_some() {
            return;
        }
        let mut validated = Vec::new();
        self.asking = Some("PTR");
        let answer = self.lookup.ptr(self.ip).await;
        self.asking = None;
        if let Ok(answer) = answer {
            let names = answer.records();
            let (first, count) = first_names(names);
            for &index in first.iter().take(count) {
                let Some(ptr_name) = names.get(index) else {
                    continue;
                };
                self.name.clear();
                self.name.push_str(ptr_name);
                name::finish_target(&mut self.name);
                if !name::is_queryable(&self.name) {
                    continue;
                }
                if let Ok(Addresses::Match) = self.addresses(32, 128).await {
                    validated.push(self.name.as_str().into());
                }
            }
        }
        self.ptr_names = Some(validated);
    }

    /// Expands a domain-spec (or, without one, takes the frame's
    /// <domain>) into `self.name`, finished as §7.3 says. Whether the name
    /// can be asked of the DNS.
    async fn target(&mut self, frame: &Frame, spec: Option<Span>) -> bool {
        match spec {
            None => {
                self.name.clear();
                self.name.push_str(&frame.domain);
            }
            Some(spec) => {
                let text = spec.of(frame.text());
                if macros::check(text, macros::Context::Record).is_ok_and(|syntax| syntax.uses_ptr)
                {
                    self.resolve_ptr_names().await;
                }
                self.name.clear();
                let vars = Vars {
                    sender: self.sender,
                    local_part: self.local_part,
                    sender_domain: self.sender_domain,
                    domain: &frame.domain,
                    ip: self.ip,
                    helo: self.helo,
                    ptr: validated_name(self.ptr_names.as_deref(), &frame.domain),
                    receiver: self.receiver,
                    now: 0,
                };
                macros::expand(text, &vars, &mut self.name, &mut self.scratch);
                name::finish_target(&mut self.name);
            }
        }
        name::is_queryable(&self.name)
    }

    /// The A (IPv4 client) or AAAA (IPv6 client) records of `self.name`,
    /// compared with <ip> under the CIDR length.
    async fn addresses(&mut self, cidr4: u8, cidr6: u8) -> Result<Addresses, LookupError> {
        let found = match self.ip {
            IpAddr::V4(ip) => {
                self.asking = Some("A");
                let answer = self.lookup.a(&self.name).await?;
                (!answer.is_void()).then(|| {
                    answer
                        .records()
                        .iter()
                        .any(|&network| in_v4(ip, network, cidr4))
                })
            }
            IpAddr::V6(ip) => {
                self.asking = Some("AAAA");
                let answer = self.lookup.aaaa(&self.name).await?;
                (!answer.is_void()).then(|| {
                    answer
                        .records()
                        .iter()
                        .any(|&network| in_v6(ip, network, cidr6))
                })
            }
        };
        self.asking = None;
        Ok(match found {
            None => Addresses::Void,
            Some(true) => Addresses::Match,
            Some(false) => Addresses::NoMatch,
        })
    }

    /// §6.2: the explanation string, or `None` when anything fails.
    async fn explanation(&mut self, exp: &Explanation) -> Option<String> {
        let text = exp.txt.get(exp.index)?;
        let spec = exp.spec.of(text);
        if macros::check(spec, macros::Context::Record).is_ok_and(|syntax| syntax.uses_ptr) {
            self.resolve_ptr_names().await;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        self.name.clear();
        let vars = Vars {
            sender: self.sender,
            local_part: self.local_part,
            sender_domain: self.sender_domain,
            domain: &exp.domain,
            ip: self.ip,
            helo: self.helo,
            ptr: validated_name(self.ptr_names.as_deref(), &exp.domain),
            receiver: self.receiver,
            now,
        };
        macros::expand(spec, &vars, &mut self.name, &mut self.scratch);
        name::finish_target(&mut self.name);
        if !name::is_queryable(&self.name) {
            return None;
        }
        let answer = self.lookup.txt(&self.name).await.ok()?;
        // Exactly one TXT record, an explain-string.
        let [record] = answer.records() else {
            return None;
        };
        let syntax = macros::check(record, macros::Context::Explanation).ok()?;
        if syntax.uses_ptr {
            self.resolve_ptr_names().await;
        }
        let vars = Vars {
            sender: self.sender,
            local_part: self.local_part,
            sender_domain: self.sender_domain,
            domain: &exp.domain,
            ip: self.ip,
            helo: self.helo,
            ptr: validated_name(self.ptr_names.as_deref(), &exp.domain),
            receiver: self.receiver,
            now,
        };
        let mut explanation = String::new();
        macros::expand(record, &vars, &mut explanation, &mut self.scratch);
        Some(explanation)
    }

    /// Counts a term that asks the DNS (§4.6.4).
    fn count(&mut self, frame: &Frame, term: Span) -> Result<(), Stop> {
        self.lookups = self.lookups.saturating_add(1);
        if self.lookups > DNS_LOOKUP_LIMIT {
            return Err((
                SpfResult::PermError,
                format!(
                    "DNS lookup limit ({DNS_LOOKUP_LIMIT}) exceeded at {} of {} (RFC 7208 §4.6.4)",
                    frame.term(term),
                    frame.domain
                ),
            ));
        }
        Ok(())
    }

    /// Counts a void lookup (§4.6.4).
    fn void(&mut self, frame: &Frame, term: Span) -> Result<(), Stop> {
        self.voids = self.voids.saturating_add(1);
        if self.voids > VOID_LOOKUP_LIMIT {
            return Err((
                SpfResult::PermError,
                format!(
                    "void lookup limit ({VOID_LOOKUP_LIMIT}) exceeded at {} of {}: nothing at {} \
                     (RFC 7208 §4.6.4)",
                    frame.term(term),
                    frame.domain,
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// §5: a lookup of a term that failed is temperror.
    fn failed(&self, frame: &Frame, term: Span, error: &LookupError) -> Stop {
        (
            SpfResult::TempError,
            format!(
                "DNS lookup of {} {} failed ({error}) at {} of {}",
                self.asking.unwrap_or("a record"),
                self.name,
                frame.term(term),
                frame.domain
            ),
        )
    }

    /// What the evaluation was waiting for, for the reason of a timeout.
    fn waiting_on(&self) -> String {
        match self.asking {
            Some("PTR") => format!(" waiting for PTR {}", reverse_name(self.ip)),
            Some(rtype) => format!(" waiting for {rtype} {}", self.name),
            None => String::new(),
        }
    }
}

fn step(matched: bool) -> Step {
    if matched {
        Step::Match
    } else {
        Step::NoMatch
    }
}

/// Whether `ip` is in `network/cidr`.
fn in_v4(ip: Ipv4Addr, network: Ipv4Addr, cidr: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(cidr)))
        .unwrap_or(0);
    (u32::from(ip) ^ u32::from(network)) & mask == 0
}

/// Whether `ip` is in `network/cidr`.
fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, cidr: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(cidr)))
        .unwrap_or(0);
    (u128::from(ip) ^ u128::from(network)) & mask == 0
}

/// The indexes of the first [`PTR_NAME_LIMIT`] names in name order, and
/// how many there are (§4.6.4: the others are ignored). Name order makes
/// "the first 10" independent of the order the DNS answered in.
pub(super) fn first_names(names: &[Box<str>]) -> ([usize; PTR_NAME_LIMIT], usize) {
    let mut first = [0usize; PTR_NAME_LIMIT];
    let mut count = 0;
    for (index, name) in names.iter().enumerate() {
        // Insertion into the sorted prefix, dropping the largest.
        let position = first
            .iter()
            .take(count)
            .position(|&kept| names.get(kept).is_some_and(|kept| name < kept))
            .unwrap_or(count);
        if position >= PTR_NAME_LIMIT {
            continue;
        }
        let end = count.min(PTR_NAME_LIMIT - 1);
        if let Some(slots) = first.get_mut(position..=end) {
            slots.rotate_right(1);
            if let Some(slot) = slots.first_mut() {
                *slot = index;
            }
        }
        count = (count + 1).min(PTR_NAME_LIMIT);
    }
    (first, count)
}

/// `%{p}` (§7.3): <domain> if validated, else a validated name below it,
/// else any validated name, else `unknown`.
fn validated_name<'n>(names: Option<&'n [Box<str>]>, domain: &str) -> &'n str {
    let Some(names) = names else {
        return "unknown";
    };
    names
        .iter()
        .find(|name| ***name == *domain)
        .or_else(|| names.iter().find(|name| name::is_at_or_below(name, domain)))
        .or_else(|| names.first())
        .map_or("unknown", |name| name)
}
