//! empty-milter: the protocol ceiling for dmarc-milter's benchmarks. An
//! indymilter milter that negotiates exactly what dmarc-milter negotiates
//! (the same actions, no-reply for CONNECT, HELO, RCPT, header and body
//! chunks, no DATA/EOH/UNKNOWN, leading space kept, the same macros), so
//! the MTA sends it the same commands, receives every header and body chunk,
//! keeps nothing, and accepts every message at end of message. What it
//! costs per message is the floor of milter protocol work on that transport.
//!
//! ```text
//! empty-milter inet:127.0.0.1:8899
//! empty-milter unix:/tmp/empty.sock
//! ```
//!
//! Runs until SIGTERM or SIGINT.

use indymilter::{Actions, Callbacks, Config, MacroStage, ProtoOpts, Status};
use std::{collections::HashMap, ffi::CString, process::ExitCode};
use tokio::signal::unix::{signal, SignalKind};

const NO_REPLY: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_HELO)
    .union(ProtoOpts::NOREPLY_RCPT)
    .union(ProtoOpts::NOREPLY_DATA)
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_EOH)
    .union(ProtoOpts::NOREPLY_BODY)
    .union(ProtoOpts::NOREPLY_UNKNOWN);
const NO_STAGE: ProtoOpts = ProtoOpts::NO_DATA
    .union(ProtoOpts::NO_EOH)
    .union(ProtoOpts::NO_UNKNOWN);
const ACTIONS: Actions = Actions::ADD_HEADER
    .union(Actions::CHANGE_HEADER)
    .union(Actions::QUARANTINE);

fn callbacks() -> Callbacks<()> {
    Callbacks::new()
        .on_negotiate(|cx, actions, opts| {
            Box::pin(async move {
                cx.requested_actions = ACTIONS & actions;
                cx.requested_opts =
                    (cx.requested_opts | NO_STAGE | NO_REPLY | ProtoOpts::LEADING_SPACE)
                        & !ProtoOpts::SKIP
                        & opts;
                let macros: &[(MacroStage, &str)] = &[
                    (MacroStage::Connect, "j {daemon_name} {client_addr}"),
                    (MacroStage::Mail, "{auth_authen}"),
                    (MacroStage::Eom, "i"),
                ];
                cx.requested_macros = macros
                    .iter()
                    .filter_map(|(stage, names)| CString::new(*names).ok().map(|n| (*stage, n)))
                    .collect::<HashMap<_, _>>();
                Status::Continue
            })
        })
        .on_connect(|_, _, _| Box::pin(async { Status::Noreply }))
        .on_helo(|_, _| Box::pin(async { Status::Noreply }))
        .on_mail(|_, _| Box::pin(async { Status::Continue }))
        .on_rcpt(|_, _| Box::pin(async { Status::Noreply }))
        .on_header(|_, _, _| Box::pin(async { Status::Noreply }))
        .on_body(|_, _| Box::pin(async { Status::Noreply }))
        .on_eom(|_| Box::pin(async { Status::Accept }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(socket) = std::env::args().nth(1) else {
        eprintln!("usage: empty-milter inet:HOST:PORT|unix:PATH");
        return ExitCode::from(2);
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("empty-milter: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let config = Config {
        max_connections: 256,
        ..Config::default()
    };
    let result = if let Some(addr) = socket.strip_prefix("inet:") {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => indymilter::run(l, callbacks(), config, shutdown).await,
            Err(e) => Err(e),
        }
    } else if let Some(path) = socket.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        match tokio::net::UnixListener::bind(path) {
            Ok(l) => {
                let r = indymilter::run(l, callbacks(), config, shutdown).await;
                let _ = std::fs::remove_file(path);
                r
            }
            Err(e) => Err(e),
        }
    } else {
        eprintln!("empty-milter: the socket must be inet:HOST:PORT or unix:PATH");
        return ExitCode::from(2);
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("empty-milter: {e}");
            ExitCode::FAILURE
        }
    }
}
