//! A milter session fed arbitrary packet sequences.
//!
//! The milter runs in-process (`dmarc_milter::run` on a UNIX socket, DNS from
//! test-dns). Each input is written to a fresh connection as raw milter
//! protocol bytes, the write side is shut, and the milter must close the
//! connection within 10 s (whatever it answered is read and dropped).
//! Then a well-formed session (indymilter-test, as Postfix speaks) must
//! still get its end-of-message answer within 10 s: a panicking session
//! aborts the process (libfuzzer-sys's panic hook), a hang or a leaked
//! session (the milter serves only a few connections at once) is a
//! timeout, reported as a crash with its input.
//!
//! Input: the first byte picks the framing.
//! - bit 0 clear: the rest is written verbatim (length prefixes, command
//!   bytes and all).
//! - bit 0 set: the rest is read as `[command][length][payload]` chunks
//!   (length one byte, cut to what remains) and each is written as a
//!   well-framed packet, so the fuzzer reaches the callbacks rather than
//!   the framing; with bit 1 set too, a valid option negotiation (protocol
//!   version 6, every action and option offered) goes first.
#![no_main]

use dmarc_fuzz::milter_world;
use indymilter_test::{MacroStage, TestConnection};
use libfuzzer_sys::fuzz_target;
use std::{path::Path, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

const DEADLINE: Duration = Duration::from_secs(10);

fn packet(out: &mut Vec<u8>, command: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len() + 1).expect("small payload");
    out.extend_from_slice(&len.to_be_bytes());
    out.push(command);
    out.extend_from_slice(payload);
}

/// SMFIC_OPTNEG: version 6, all actions (0x1ff), all protocol options
/// (0x1fffff).
fn negotiation(out: &mut Vec<u8>) {
    let mut payload = Vec::new();
    payload.extend_from_slice(&6u32.to_be_bytes());
    payload.extend_from_slice(&0x1ffu32.to_be_bytes());
    payload.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
    packet(out, b'O', &payload);
}

fn wire_bytes(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode & 1 == 0 {
        return rest.to_vec();
    }
    let mut out = Vec::new();
    if mode & 2 != 0 {
        negotiation(&mut out);
    }
    let mut rest = rest;
    while let [command, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        packet(&mut out, *command, payload);
        rest = next;
    }
    out
}

/// Writes `bytes`, shuts the write side and reads until the milter closes.
async fn abuse(socket: &Path, bytes: &[u8]) {
    let stream = UnixStream::connect(socket)
        .await
        .expect("connect to the milter");
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut sink = Vec::new();
        // An error (reset) is a closed connection too.
        let _ = read.read_to_end(&mut sink).await;
    });
    // The milter may close before reading everything: not an error.
    let _ = write.write_all(bytes).await;
    let _ = write.shutdown().await;
    tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the milter did not close the connection within 10 s after EOF")
        .expect("reader task");
}

/// One ordinary message; panics when the milter does not answer.
async fn health_check(socket: &Path) {
    let check = async {
        let mut conn = TestConnection::configure()
            .exact_leading_space(true)
            .open_unix(socket)
            .await?;
        conn.macros(MacroStage::Connect, [("j", "mx.fuzz.example")])
            .await?;
        conn.connect("client.example", ([192, 0, 2, 99], 40000))
            .await?;
        conn.helo("client.example").await?;
        conn.mail(["<a@example.org>"]).await?;
        conn.rcpt(["<b@example.net>"]).await?;
        conn.header("From", " a@example.org").await?;
        conn.body("Hi.\r\n").await?;
        let (_, status) = conn.eom().await?;
        conn.close().await?;
        Ok::<_, indymilter_test::TestError>(status)
    };
    match tokio::time::timeout(DEADLINE, check).await {
        Ok(Ok(_status)) => {}
        Ok(Err(e)) => panic!("health check after the input failed: {e}"),
        Err(_) => panic!("health check after the input: no answer within 10 s"),
    }
}

fuzz_target!(|data: &[u8]| {
    let world = milter_world();
    let bytes = wire_bytes(data);
    world.dns.rt.block_on(async {
        abuse(&world.socket, &bytes).await;
        health_check(&world.socket).await;
    });
});
