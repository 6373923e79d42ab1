//! The evaluation of check_host(): records, terms, limits, the time
//! budget and the explanation (RFC 7208 §4 to §7).
//!
//! `include` is evaluated without recursion: the included record is
//! pushed on a stack of frames, and its result is folded into the
//! including record when it finishes (§5.2). `redirect` replaces the
//! frame's record (§6.1). Records come read from the memo of
//! [`record::read`]; nothing allocates per term, and per record only the
//! string of its domain (reused once its frame is done). The reason is
//! written once, at the decision.

use super::{
    lookup::{Answer, LookupError, SpfLookup},
    macros::{self, Scratch, Vars},
    name,
    record::{self, Directive, DomainSpec, Mechanism, Parsed, Qualifier, Selected, Span},
    reverse_name, SpfOptions, SpfOutcome, SpfRecordText, SpfRequest, SpfResult, DNS_LOOKUP_LIMIT,
    MX_NAME_LIMIT, PTR_NAME_LIMIT, VOID_LOOKUP_LIMIT,
};
use smallvec::SmallVec;
use std::{
    borrow::Cow,
    future::{poll_fn, Future},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    pin::pin,
    sync::Arc,
    task::Poll,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A result that ends the evaluation, with its reason.
type Stop = (SpfResult, String);

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
        name: String::with_capacity(128),
        target: String::new(),
        scratch: Scratch::default(),
        ptr_names: None,
        asking: None,
        top_record: None,
        spare: Vec::new(),
    };
    let mut clock = Clock {
        budget: options.time_budget,
        deadline: None,
    };
    let decision = clock.run(evaluator.evaluate(&outcome.domain)).await;
    let decision = decision.unwrap_or_else(|| Decision {
        result: SpfResult::TempError,
        reason: format!(
            "time limit of {:?} exceeded{} (RFC 7208 §4.6.4)",
            options.time_budget,
            evaluator.waiting_on()
        ),
        exp: None,
    });
    outcome.result = decision.result;
    outcome.reason = decision.reason;
    outcome.dns_lookups = evaluator.lookups;
    outcome.void_lookups = evaluator.voids;
    outcome.record = evaluator.top_record.take().map(SpfRecordText);
    // RFC 7208 §6.2: the explanation of a fail; any failure to get it
    // leaves none, and so does running out of time.
    if let Some(exp) = decision.exp.filter(|_| outcome.result == SpfResult::Fail) {
        // Boxed: only a fail with exp= carries it.
        outcome.explanation = clock
            .run(Box::pin(evaluator.explanation(&exp)))
            .await
            .flatten();
    }
    outcome
}

/// The time budget of a check (§4.6.4), enforced with Tokio's timer.
///
/// The clock starts at the first lookup that has to wait: answers that
/// are ready at once (a warm cache) cost no clock reading and no timer,
/// and the CPU time spent before the first wait is not counted. Outside a
/// Tokio runtime nothing is enforced.
struct Clock {
    budget: Duration,
    deadline: Option<tokio::time::Instant>,
}

impl Clock {
    /// Runs `future` to its end, or until the budget runs out (`None`).
    async fn run<F: Future>(&mut self, future: F) -> Option<F::Output> {
        let mut future = pin!(future);
        // One poll: done at once when every answer is at hand.
        let first = poll_fn(|context| Poll::Ready(future.as_mut().poll(context))).await;
        if let Poll::Ready(output) = first {
            return Some(output);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Some(future.await);
        }
        let deadline = match self.deadline {
            Some(deadline) => deadline,
            None => match tokio::time::Instant::now().checked_add(self.budget) {
                Some(deadline) => *self.deadline.insert(deadline),
                None => return Some(future.await),
            },
        };
        tokio::time::timeout_at(deadline, future).await.ok()
    }
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
    record: Arc<Parsed>,
    spec: DomainSpec,
    /// `<domain>` of that record (`%{d}`).
    domain: String,
}

/// A record being evaluated.
struct Frame {
    /// `<domain>` of the record: lower case, without trailing dot.
    domain: String,
    /// The SPF record of `<domain>`, read (without syntax error).
    record: Arc<Parsed>,
    /// The next directive to evaluate.
    next: usize,
    /// For an included record, the `include` of the including record.
    via: Option<Via>,
}

impl Frame {
    #[inline]
    fn text(&self) -> &str {
        &self.record.text
    }

    #[inline]
    fn directives(&self) -> &[Directive] {
        self.record
            .record
            .as_ref()
            .map_or(&[], |record| &record.directives)
    }

    fn redirect(&self) -> Option<(DomainSpec, Span)> {
        self.record
            .record
            .as_ref()
            .ok()
            .and_then(|record| record.redirect)
    }

    fn exp(&self) -> Option<DomainSpec> {
        self.record
            .record
            .as_ref()
            .ok()
            .and_then(|record| record.exp)
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
    /// `<ip>`, an IPv4-mapped address as IPv4.
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
    /// The validated names of `<ip>` for `%{p}`, once looked up.
    ptr_names: Option<Vec<Box<str>>>,
    /// The type being asked of `name` (or of `<ip>`, for PTR), for the
    /// reason of a timeout.
    asking: Option<&'static str>,
    /// The SPF record of `<domain>`.
    top_record: Option<Arc<Parsed>>,
    /// Strings of finished frames, to hold the domains of new ones.
    spare: Vec<String>,
}

impl<L: SpfLookup> Evaluator<'_, L> {
    /// Evaluates the record of `<domain>` to a result (§4.4 to §4.7).
    async fn evaluate(&mut self, domain: &str) -> Decision {
        self.name.clear();
        self.name.push_str(domain);
        let top = match self.fetch(domain.to_owned(), true).await {
            Ok(frame) => frame,
            Err(stop) => return stop.into(),
        };
        // Include chains are rarely deeper than 4: no allocation then.
        let mut stack: SmallVec<[Frame; 4]> = SmallVec::new();
        stack.push(top);
        loop {
            let Some(frame) = stack.last_mut() else {
                return (SpfResult::PermError, "no record to evaluate".to_string()).into();
            };
            // The result the frame finishes with, and the directive that
            // decided it (none: nothing matched).
            let (mut result, decisive) =
                if let Some(&directive) = frame.directives().get(frame.next) {
                    frame.next += 1;
                    let step = match immediate(self.ip, directive.mechanism) {
                        Some(matched) => Ok(step(matched)),
                        None => self.directive(frame, directive).await,
                    };
                    match step {
                        Ok(Step::NoMatch) => continue,
                        Ok(Step::Match) => (directive.qualifier.result(), Some(directive.term)),
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
                } else if let Some((spec, term)) = frame.redirect() {
                    // §6.1: redirect when no mechanism matched (an `all`
                    // always matches, so redirect is never reached then).
                    match self.redirect(frame, spec, term).await {
                        Ok(mut target) => {
                            target.via = frame.via;
                            let replaced = std::mem::replace(frame, target);
                            self.spare.push(replaced.domain);
                            continue;
                        }
                        Err(stop) => return stop.into(),
                    }
                } else {
                    // §4.7: no match and no redirect is neutral.
                    (SpfResult::Neutral, None)
                };
            // The frame is finished with `result`: fold it into the
            // frames that included it (§5.2). `level` is the frame
            // finished, `decisive` the directive of it that decided.
            let mut level = stack.len().saturating_sub(1);
            loop {
                let Some(frame) = stack.get(level) else {
                    return (SpfResult::PermError, "no record to evaluate".to_string()).into();
                };
                let Some(via) = frame.via else {
                    // The top-level record is finished: the decision.
                    let exp = match (result, frame.exp()) {
                        (SpfResult::Fail, Some(spec)) => Some(Explanation {
                            record: Arc::clone(&frame.record),
                            spec,
                            domain: frame.domain.clone(),
                        }),
                        _ => None,
                    };
                    return Decision {
                        result,
                        reason: reason(&stack, decisive),
                        exp,
                    };
                };
                match (result, level.checked_sub(1)) {
                    // The include matched: the including record is
                    // finished too, with the include's qualifier.
                    (SpfResult::Pass, Some(parent)) => {
                        result = via.qualifier.result();
                        level = parent;
                    }
                    // Not a match: the including record goes on.
                    _ => {
                        for done in stack.drain(level..) {
                            self.spare.push(done.domain);
                        }
                        break;
                    }
                }
            }
        }
    }

    /// A string holding `text`, reusing a spare one.
    fn string(&mut self, text: &str) -> String {
        let mut string = self.spare.pop().unwrap_or_default();
        string.clear();
        string.push_str(text);
        string
    }

    /// Looks up and reads the SPF record of `domain` (§4.4, §4.5, §4.6).
    /// `Err` with `none` when there is none (NXDOMAIN, no TXT record, no
    /// `v=spf1` record), `temperror` when the lookup failed, `permerror`
    /// for several records or a syntax error.
    /// `self.name` holds `domain` (for the reason of a timeout).
    async fn fetch(&mut self, domain: String, top: bool) -> Result<Frame, Stop> {
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
        let record = match record::select_and_read(&txt) {
            Selected::One(record) => record,
            Selected::None => return Err((SpfResult::None, format!("no SPF record at {domain}"))),
            Selected::Several(count) => {
                return Err((
                    SpfResult::PermError,
                    format!("{count} SPF records at {domain} (RFC 7208 §4.5)"),
                ))
            }
        };
        if top {
            self.top_record = Some(Arc::clone(&record));
        }
        if let Err(error) = &record.record {
            return Err((
                SpfResult::PermError,
                format!(
                    "syntax error in the SPF record of {domain}: {} in {:?} (RFC 7208 §4.6)",
                    error.problem, error.term
                ),
            ));
        }
        Ok(Frame {
            domain,
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
                if !self.target(frame, target).await.queryable {
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
            // Rare (RFC 7208 §5.5: "SHOULD NOT be used"): boxed, so that
            // every other directive carries a smaller future.
            Mechanism::Ptr(target) => Ok(Box::pin(self.ptr(frame, target)).await),
            Mechanism::Exists(target) => {
                if !self.target(frame, Some(target)).await.queryable {
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
            // §5.2: the included record, evaluated for its result.
            Mechanism::Include(target) => self
                .target_record(frame, target, term, "§5.2")
                .await
                .map(Step::Include),
        }
    }

    /// §6.1: the record of the `redirect=` target, to evaluate in place of
    /// `frame`'s.
    async fn redirect(
        &mut self,
        frame: &Frame,
        spec: DomainSpec,
        term: Span,
    ) -> Result<Frame, Stop> {
        self.count(frame, term)?;
        self.target_record(frame, spec, term, "§6.1").await
    }

    /// The record of an `include:` (§5.2) or `redirect=` (§6.1) target:
    /// a target that is not a domain SPF can check, or one without a
    /// record, is a permerror citing `section`.
    async fn target_record(
        &mut self,
        frame: &Frame,
        spec: DomainSpec,
        term: Span,
        section: &str,
    ) -> Result<Frame, Stop> {
        if let Some(problem) = self.target(frame, Some(spec)).await.problem {
            return Err((
                SpfResult::PermError,
                format!(
                    "{} of {}: the target {:?} is not a domain SPF can check: {problem} \
                     (RFC 7208 {section})",
                    frame.term(term),
                    frame.domain,
                    self.name
                ),
            ));
        }
        let target = std::mem::take(&mut self.name);
        self.name = self.string(&target);
        match self.fetch(target, false).await {
            Ok(record) => Ok(record),
            Err((SpfResult::None, reason)) => Err((
                SpfResult::PermError,
                format!(
                    "{} of {}: {reason} (RFC 7208 {section})",
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
        target: Option<DomainSpec>,
        cidr4: u8,
        cidr6: u8,
    ) -> Result<Step, Stop> {
        if !self.target(frame, target).await.queryable {
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

    /// §5.5: a validated name of `<ip>` at or below the target. DNS errors
    /// make the mechanism not match (the PTR lookup) or skip a name (an
    /// address lookup); they are never temperror.
    async fn ptr(&mut self, frame: &Frame, target: Option<DomainSpec>) -> Step {
        if !self.target(frame, target).await.queryable {
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

    /// The validated names of `<ip>` for `%{p}` (§7.3): the first 10 PTR
    /// names whose addresses include `<ip>`. Looked up once per check.
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
    /// `<domain>`) into `self.name`, finished as §7.3 says, and checks it:
    /// whether it can be asked of the DNS, whether it can be a `<domain>`.
    async fn target(&mut self, frame: &Frame, spec: Option<DomainSpec>) -> name::NameCheck {
        match spec {
            // <domain> itself, checked when its record was fetched.
            None => {
                self.name.clear();
                self.name.push_str(&frame.domain);
                return name::NameCheck {
                    queryable: true,
                    problem: None,
                };
            }
            // Without macros, the domain-spec is the name (checked ASCII).
            Some(spec) if !spec.has_macros => {
                self.name.clear();
                self.name.push_str(spec.str(frame.text()));
                if let Some(check) = spec.finished {
                    return check;
                }
            }
            Some(spec) => {
                if spec.uses_ptr {
                    // Rare (RFC 7208 §7.3: "do not use"): boxed, so that
                    // every other evaluation carries a smaller future.
                    Box::pin(self.resolve_ptr_names()).await;
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
                let spec = spec.span.of(frame.text().as_bytes());
                macros::expand(spec, &vars, &mut self.name, &mut self.scratch);
            }
        }
        name::finish_target(&mut self.name);
        name::check(&self.name)
    }

    /// The A (IPv4 client) or AAAA (IPv6 client) records of `self.name`,
    /// compared with `<ip>` under the CIDR length.
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
        let spec = exp.spec.span.of(exp.record.text.as_bytes());
        if exp.spec.uses_ptr {
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

/// The reason of a decision: the directive of each record on the stack
/// that decided, the top-level record's first; `decisive` is the one of the
/// innermost (none: nothing matched, neutral by default).
fn reason(stack: &[Frame], decisive: Option<Span>) -> String {
    // "mechanism ", " of ", " matched" and ": ", or the neutral words.
    const WORDS: usize = 56;
    let capacity = stack
        .iter()
        .map(|frame| frame.domain.len() + frame.text().len().min(64) + WORDS)
        .sum();
    let mut reason = String::with_capacity(capacity);
    for (index, frame) in stack.iter().enumerate() {
        if index > 0 {
            reason.push_str(": ");
        }
        // The term of this frame that decided: the include of the next
        // frame, or the innermost's own directive.
        let term = match stack.get(index + 1) {
            Some(next) => next.via.map(|via| via.term),
            None => decisive,
        };
        match term {
            Some(term) => {
                reason.push_str("mechanism ");
                reason.push_str(frame.term(term));
                reason.push_str(" of ");
                reason.push_str(&frame.domain);
                reason.push_str(" matched");
            }
            None => {
                reason.push_str("no mechanism of ");
                reason.push_str(&frame.domain);
                reason.push_str(" matched (neutral by default, RFC 7208 §4.7)");
            }
        }
    }
    reason
}

/// The result of a directive that needs no lookup (`all`, `ip4`, `ip6`),
/// or none for the others.
fn immediate(ip: IpAddr, mechanism: Mechanism) -> Option<bool> {
    match (mechanism, ip) {
        (Mechanism::All, _) => Some(true),
        (Mechanism::Ip4 { network, cidr }, IpAddr::V4(ip)) => Some(in_v4(ip, network, cidr)),
        // §5: ip6 never matches an IPv4 client, ip4 never an IPv6 one.
        (Mechanism::Ip6 { network, cidr }, IpAddr::V6(ip)) => Some(in_v6(ip, network, cidr)),
        (Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. }, _) => Some(false),
        _ => None,
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
pub(super) fn in_v4(ip: Ipv4Addr, network: Ipv4Addr, cidr: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(cidr)))
        .unwrap_or(0);
    (u32::from(ip) ^ u32::from(network)) & mask == 0
}

/// Whether `ip` is in `network/cidr`.
pub(super) fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, cidr: u8) -> bool {
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

/// `%{p}` (§7.3): `<domain>` if validated, else a validated name below it,
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
