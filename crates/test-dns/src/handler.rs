//! Answers questions from the [`Zone`], applying the faults set by the test.

use std::iter;
use std::sync::Arc;

use dmarc_verifier::dns::zone::{
    canonical_name, name_labels, RecordData, RecordType, Zone, ZoneAnswer, ZoneRecord,
};
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::{Fault, Query, State, Transport};

/// The hickory-server request handler of a [`crate::TestDns`].
pub(crate) struct Handler {
    state: Arc<State>,
}

impl Handler {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Handler { state }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if request.metadata.op_code != OpCode::Query {
            return send_error(request, ResponseCode::NotImp, response_handle).await;
        }
        // RFC 9619: a query holds exactly one question.
        let Ok(info) = request.request_info() else {
            return send_error(request, ResponseCode::FormErr, response_handle).await;
        };
        let name = name_text(&Name::from(info.query.name()));
        let rtype = RecordType::from_code(u16::from(info.query.query_type()));
        let transport = match request.protocol() {
            Protocol::Udp => Transport::Udp,
            _ => Transport::Tcp,
        };
        self.state.log(Query {
            name: name.clone(),
            rtype,
            transport,
        });
        if info.query.query_class() != DNSClass::IN {
            return send_error(request, ResponseCode::Refused, response_handle).await;
        }

        let question = Question {
            name,
            rtype,
            force_nxdomain: false,
        };
        match self.state.fault(&question.name, rtype) {
            None => answer(&self.state.zone(), request, &question, response_handle).await,
            Some(Fault::ServFail) => {
                send_error(request, ResponseCode::ServFail, response_handle).await
            }
            Some(Fault::Refused) => {
                send_error(request, ResponseCode::Refused, response_handle).await
            }
            Some(Fault::NxDomain) => {
                let question = Question {
                    force_nxdomain: true,
                    ..question
                };
                answer(&self.state.zone(), request, &question, response_handle).await
            }
            Some(Fault::Timeout) => unanswered(request),
            Some(Fault::Delay(delay)) => {
                // The answer is sent from a task of its own, so that this
                // handler returns at once and the connection goes on
                // serving other questions (hickory-server handles the
                // questions of one TCP connection one after the other).
                let owned = Request::from_bytes(
                    request.as_slice().to_vec(),
                    request.src(),
                    request.protocol(),
                );
                let Ok(owned) = owned else {
                    return send_error(request, ResponseCode::ServFail, response_handle).await;
                };
                let state = Arc::clone(&self.state);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    answer(&state.zone(), &owned, &question, response_handle).await;
                });
                unanswered(request)
            }
            Some(Fault::Truncate) if transport == Transport::Udp => {
                truncated(request, response_handle).await
            }
            Some(Fault::Truncate) => {
                answer(&self.state.zone(), request, &question, response_handle).await
            }
        }
    }
}

/// A question as the zone sees it.
struct Question {
    /// Lowercase, without the trailing dot.
    name: String,
    /// `None` for a type the zone does not know.
    rtype: Option<RecordType>,
    /// Answer NXDOMAIN whatever the zone holds ([`Fault::NxDomain`]).
    force_nxdomain: bool,
}

/// Answers from the zone: the CNAME chain and the records in the answer
/// section, NXDOMAIN or NOERROR, the SOA in the authority section of a
/// negative answer. Always authoritative.
async fn answer<R: ResponseHandler>(
    zone: &Zone,
    request: &Request,
    question: &Question,
    mut response_handle: R,
) -> ResponseInfo {
    let zone_answer = if question.force_nxdomain {
        ZoneAnswer::NxDomain { chain: Vec::new() }
    } else {
        // A type the zone does not know is answered like a question for
        // CNAME: the CNAME of the name if it has one, else NODATA or
        // NXDOMAIN as the name exists or not.
        zone.lookup(&question.name, question.rtype.unwrap_or(RecordType::Cname))
    };
    let (response_code, records) = match &zone_answer {
        ZoneAnswer::Records { records, .. } => (ResponseCode::NoError, records.as_slice()),
        ZoneAnswer::NoData { .. } => (ResponseCode::NoError, &[][..]),
        // RFC 6604 §2.1: NXDOMAIN is about the last name of the chain.
        ZoneAnswer::NxDomain { .. } => (ResponseCode::NXDomain, &[][..]),
    };
    let answers: Option<Vec<Record>> = zone_answer
        .chain()
        .iter()
        .chain(records)
        .map(|record| to_record(record, record.ttl))
        .collect();
    // RFC 2308 §3: a negative answer carries the SOA of the zone, with the
    // TTL a resolver may cache the negative answer for (RFC 2308 §5). A
    // zone without SOA gets none: the resolver then does not cache it.
    let soa = if records.is_empty() {
        let final_name = zone_answer.final_name(&question.name);
        match (zone.soa(&final_name), zone.negative_ttl(&final_name)) {
            (Some(soa), Some(ttl)) => to_record(soa, ttl),
            _ => None,
        }
    } else {
        None
    };
    let Some(answers) = answers else {
        // A record inserted with a name hickory cannot encode.
        return send_error(request, ResponseCode::ServFail, response_handle).await;
    };

    let edns = response_edns(request);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = true;
    metadata.recursion_available = false;
    metadata.response_code = response_code;
    let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
        metadata,
        answers.iter(),
        iter::empty(),
        soa.iter(),
        iter::empty(),
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => response_info(request, ResponseCode::ServFail),
    }
}

/// Answers with TC set and no records ([`Fault::Truncate`] over UDP).
async fn truncated<R: ResponseHandler>(request: &Request, mut response_handle: R) -> ResponseInfo {
    let edns = response_edns(request);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = true;
    metadata.truncation = true;
    let response =
        MessageResponseBuilder::new(&request.queries, edns.as_ref()).build_no_records(metadata);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => response_info(request, ResponseCode::ServFail),
    }
}

/// Answers with an error code and no records.
async fn send_error<R: ResponseHandler>(
    request: &Request,
    response_code: ResponseCode,
    mut response_handle: R,
) -> ResponseInfo {
    let edns = response_edns(request);
    let response = MessageResponseBuilder::new(&request.queries, edns.as_ref())
        .error_msg(&request.metadata, response_code);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => response_info(request, ResponseCode::ServFail),
    }
}

/// What the handler reports for a question it does not answer now.
fn unanswered(request: &Request) -> ResponseInfo {
    response_info(request, ResponseCode::NoError)
}

fn response_info(request: &Request, response_code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = response_code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// RFC 6891 §6.1.1: a response to a request with an OPT record carries one.
/// Its payload size lets long TXT records fit in a UDP answer.
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|request_edns| {
        let mut edns = Edns::new();
        edns.set_max_payload(request_edns.max_payload().max(512));
        edns.set_version(0);
        edns
    })
}

/// A name as the zone writes it: lowercase, without the trailing dot, an
/// octet of a label that is a dot, a backslash or not printable ASCII
/// escaped (see `dmarc_verifier::dns::zone`), so that a label holding a
/// space or a dot finds its record.
fn name_text(name: &Name) -> String {
    canonical_name(name.iter())
}

/// A zone name as hickory's: absolute, its labels decoded from the zone's
/// text (escapes included); `None` when a label cannot go on the wire.
fn to_name(name: &str) -> Option<Name> {
    let labels = name_labels(name)?;
    if labels.is_empty() {
        return Some(Name::root());
    }
    Name::from_labels(labels).ok()
}

/// A zone record as hickory's, with `ttl`; `None` when a name cannot be
/// encoded.
fn to_record(record: &ZoneRecord, ttl: u32) -> Option<Record> {
    let data = match &record.data {
        RecordData::A(address) => RData::A(A(*address)),
        RecordData::Aaaa(address) => RData::AAAA(AAAA(*address)),
        RecordData::Cname(target) => RData::CNAME(CNAME(to_name(target)?)),
        RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, to_name(exchange)?)),
        RecordData::Ns(target) => RData::NS(NS(to_name(target)?)),
        RecordData::Ptr(target) => RData::PTR(PTR(to_name(target)?)),
        RecordData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => RData::SOA(SOA::new(
            to_name(mname)?,
            to_name(rname)?,
            *serial,
            // The wire fields are 32 bits (RFC 1035 §3.3.13); hickory types
            // the timers as i32.
            i32::try_from(*refresh).unwrap_or(i32::MAX),
            i32::try_from(*retry).unwrap_or(i32::MAX),
            i32::try_from(*expire).unwrap_or(i32::MAX),
            *minimum,
        )),
        RecordData::Txt(strings) => {
            RData::TXT(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
        }
    };
    Some(Record::from_rdata(to_name(&record.name)?, ttl, data))
}
