//! The indymilter callbacks. Each is thin: it calls one [`Session`] method
//! and turns an error into a tempfail with a log line. None of them can
//! panic on anything the MTA sends.

use crate::{session::Session, state::Shared, Error};
use indymilter::{Callbacks, Context, Status};
use std::sync::Arc;

/// Logs an error met while handling a message and answers tempfail: a
/// warning when the MTA broke the protocol, an error when we could not
/// provide service.
fn tempfail(stage: &str, error: &Error) -> Status {
    match error {
        Error::Protocol(_) => tracing::warn!(stage, "{error}; answering tempfail"),
        _ => tracing::error!(stage, "{error}; answering tempfail"),
    }
    Status::Tempfail
}

/// A callback came without a session: the MTA skipped negotiation.
fn no_session<T: Send>(_cx: &Context<T>, stage: &str) -> Status {
    tracing::warn!(stage, "the MTA sent a command before negotiating");
    Status::Tempfail
}

/// The callbacks of one [`crate::run`].
pub(crate) fn callbacks(shared: Arc<Shared>) -> Callbacks<Session> {
    Callbacks::new()
        .on_negotiate(move |cx, actions, opts| {
            let shared = Arc::clone(&shared);
            Box::pin(async move {
                let session = Session::negotiate(shared, cx, actions, opts);
                cx.data = Some(session);
                Status::Continue
            })
        })
        .on_connect(|cx, hostname, socket| {
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.connect(&hostname, &socket, &cx.macros),
                    None => no_session(cx, "connect"),
                }
            })
        })
        .on_helo(|cx, name| {
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.helo(&name),
                    None => no_session(cx, "helo"),
                }
            })
        })
        .on_mail(|cx, args| {
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => match session.mail(&args, &cx.macros, &mut cx.reply) {
                        Ok(status) => status,
                        Err(e) => tempfail("mail", &e),
                    },
                    None => no_session(cx, "mail"),
                }
            })
        })
        .on_rcpt(|cx, args| {
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.rcpt(&args),
                    None => no_session(cx, "rcpt"),
                }
            })
        })
        .on_header(|cx, name, value| {
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.header(&name, &value),
                    None => no_session(cx, "header"),
                }
            })
        })
        .on_body(|cx, chunk| {
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => session.body(&chunk),
                    None => no_session(cx, "body"),
                }
            })
        })
        .on_eom(|cx| {
            Box::pin(async move {
                match cx.data.as_mut() {
                    Some(session) => {
                        match session.eom(&cx.macros, &cx.actions, &mut cx.reply).await {
                            Ok(status) => status,
                            Err(e) => tempfail("eom", &e),
                        }
                    }
                    None => {
                        tracing::warn!("the MTA ended a message before negotiating");
                        Status::Tempfail
                    }
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
