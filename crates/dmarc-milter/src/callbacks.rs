//! The indymilter callbacks. Each is thin: it calls one [`Session`] method
//! and turns an error into a tempfail with a log line (and a count in the
//! metrics). None of them can panic on anything the MTA sends.

use crate::{metrics::ErrorKind, session::Session, state::Shared, Error};
use indymilter::{Callbacks, Status};
use std::sync::Arc;

/// Logs an error met while handling a message and answers tempfail: a
/// warning when the MTA broke the protocol, an error when we could not
/// provide service.
fn tempfail(shared: &Shared, stage: &str, error: &Error) -> Status {
    let kind = match error {
        Error::Protocol(_) => {
            tracing::warn!(stage, "{error}; answering tempfail");
            ErrorKind::Protocol
        }
        _ => {
            tracing::error!(stage, "{error}; answering tempfail");
            ErrorKind::Internal
        }
    };
    if let Some(metrics) = shared.metrics() {
        metrics.error(kind);
    }
    Status::Tempfail
}

/// A callback came without a session: the MTA skipped negotiation.
fn no_session(shared: &Shared, stage: &str) -> Status {
    tracing::warn!(stage, "the MTA sent a command before negotiating");
    if let Some(metrics) = shared.metrics() {
        metrics.error(ErrorKind::Protocol);
    }
    Status::Tempfail
}

/// The callbacks of one [`crate::run`].
pub(crate) fn callbacks(shared: Arc<Shared>) -> Callbacks<Session> {
    // Each callback that can fail holds the shared state, to count.
    let [s_connect, s_helo, s_mail, s_rcpt, s_header, s_body, s_eom] =
        std::array::from_fn(|_| Arc::clone(&shared));
    Callbacks::new()
        .on_negotiate(move |cx, actions, opts| {
            let shared = Arc::clone(&shared);
            Box::pin(async move {
                let session = Session::negotiate(shared, cx, actions, opts);
                cx.data = Some(session);
                Status::Continue
            })
        })
        .on_connect(move |cx, hostname, socket| {
            let shared = Arc::clone(&s_connect);
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.connect(&hostname, &socket, &cx.macros),
                    None => no_session(&shared, "connect"),
                }
            })
        })
        .on_helo(move |cx, name| {
            let shared = Arc::clone(&s_helo);
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.helo(&name),
                    None => no_session(&shared, "helo"),
                }
            })
        })
        .on_mail(move |cx, args| {
            let shared = Arc::clone(&s_mail);
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => match session.mail(&args, &cx.macros, &mut cx.reply) {
                        Ok(status) => status,
                        Err(e) => tempfail(&shared, "mail", &e),
                    },
                    None => no_session(&shared, "mail"),
                }
            })
        })
        .on_rcpt(move |cx, args| {
            let shared = Arc::clone(&s_rcpt);
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.rcpt(&args),
                    None => no_session(&shared, "rcpt"),
                }
            })
        })
        .on_header(move |cx, name, value| {
            let shared = Arc::clone(&s_header);
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.header(&name, &value),
                    None => no_session(&shared, "header"),
                }
            })
        })
        .on_body(move |cx, chunk| {
            let shared = Arc::clone(&s_body);
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.body(&chunk),
                    None => no_session(&shared, "body"),
                }
            })
        })
        .on_eom(move |cx| {
            let shared = Arc::clone(&s_eom);
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => {
                        match session.eom(&cx.macros, &cx.actions, &mut cx.reply).await {
                            Ok(status) => status,
                            Err(e) => tempfail(&shared, "eom", &e),
                        }
                    }
                    None => no_session(&shared, "eom"),
                }
            })
        })
        .on_abort(|cx| {
            Box::pin(async move {
                if let Some(session) = cx.data.as_mut() {
                    session.abort();
                }
                Status::Continue
            })
        })
        .on_close(|cx| {
            Box::pin(async move {
                if let Some(session) = cx.data.as_mut() {
                    session.close();
                }
                Status::Continue
            })
        })
}
