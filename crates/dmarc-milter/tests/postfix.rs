//! End to end with a real Postfix (Debian's postfix package) and swaks: a
//! private Postfix instance (its own configuration, queue and data
//! directories under a temporary directory, smtpd on free loopback ports)
//! uses the milter started in-process, with DNS from the demo zone on
//! test-dns. Clients are given the demo addresses with XCLIENT.
//!
//! The instance is set up as the README says: the milter on the inbound
//! smtpd only (`-o smtpd_milters=` in master.cf), a second smtpd (the
//! relay port of our own hosts) without it, and `non_smtpd_milters` for
//! local submissions.
//!
//! Needs root (Postfix's master runs as root and drops to `postfix`). When
//! postfix or swaks is missing, or we are not root, the test is skipped
//! with a loud message, unless `DMARC_MILTER_E2E=require` is set: then it
//! fails.

#[path = "../../dmarc-verifier/tests/chains/mod.rs"]
mod chains;
mod common;

use common::*;
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

const MYHOSTNAME: &str = "mx.e2e.test";

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

struct Tools {
    postfix: PathBuf,
    postqueue: PathBuf,
    sendmail: PathBuf,
    swaks: PathBuf,
}

/// The tools, or `None` (skip) after saying loudly why.
fn tools() -> Option<Tools> {
    let required = std::env::var("DMARC_MILTER_E2E").is_ok_and(|v| v == "require");
    let found = (
        find_tool("postfix"),
        find_tool("postqueue"),
        find_tool("sendmail"),
        find_tool("swaks"),
    );
    // The effective uid, from /proc (no libc needed).
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let missing = match (&found, root) {
        ((Some(_), Some(_), Some(_), Some(_)), true) => None,
        ((Some(_), Some(_), Some(_), Some(_)), false) => Some("not running as root".to_string()),
        _ => Some(format!(
            "postfix, postqueue, sendmail or swaks not installed (found {:?})",
            found
        )),
    };
    match missing {
        None => {
            let (Some(postfix), Some(postqueue), Some(sendmail), Some(swaks)) = found else {
                unreachable!("checked above")
            };
            Some(Tools {
                postfix,
                postqueue,
                sendmail,
                swaks,
            })
        }
        Some(why) if required => panic!("DMARC_MILTER_E2E=require but {why}"),
        Some(why) => {
            eprintln!(
                "\n########## SKIPPED: Postfix end-to-end test: {why}.\n########## Install them (apt-get install postfix swaks) and run as root, or set DMARC_MILTER_E2E=require to make this a failure.\n"
            );
            None
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    output
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn id(flag: &str) -> u32 {
    let out = run(Command::new("id").args([flag, "postfix"]));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("postfix user exists (the postfix package creates it)")
}

/// A private Postfix instance, stopped when dropped.
struct Postfix {
    tools: Tools,
    dir: TempDir,
    conf: PathBuf,
    port: u16,
    /// An smtpd without the milter, as the README's submission/relay port.
    relay_port: u16,
}

impl Postfix {
    fn create(tools: Tools, milter: &str) -> Postfix {
        let dir = TempDir::new("postfix");
        let root = dir.path().to_path_buf();
        let conf = root.join("conf");
        for sub in ["conf", "queue", "data", "mail"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        let (uid, gid) = (id("-u"), id("-g"));
        for sub in ["data", "mail"] {
            let out = run(Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(root.join(sub)));
            assert!(out.status.success(), "chown: {out:?}");
        }
        let port = free_port();
        let relay_port = free_port();
        let root_s = root.display();
        std::fs::write(
            conf.join("main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {root_s}/queue
data_directory = {root_s}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {MYHOSTNAME}
mydomain = e2e.test
myorigin = e2e.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_authorized_xclient_hosts = 127.0.0.0/8
virtual_mailbox_domains = e2e.test
virtual_mailbox_base = {root_s}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
maillog_file_prefixes = {root_s}
maillog_file = {root_s}/maillog
non_smtpd_milters = {milter}
milter_protocol = 6
milter_default_action = tempfail
"
            ),
        )
        .expect("main.cf");
        std::fs::write(
            conf.join("master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd
  -o smtpd_milters={milter}
127.0.0.1:{relay_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
            ),
        )
        .expect("master.cf");
        Postfix {
            tools,
            dir,
            conf,
            port,
            relay_port,
        }
    }

    fn postfix(&self, verb: &str) -> Output {
        run(Command::new(&self.tools.postfix)
            .arg("-c")
            .arg(&self.conf)
            .arg(verb))
    }

    fn running(&self) -> bool {
        self.postfix("status").status.success()
    }

    async fn start(&self) {
        let out = self.postfix("start");
        assert!(
            out.status.success(),
            "postfix start failed: {out:?}\nmaillog:\n{}",
            self.maillog()
        );
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until("smtpd to listen", async || {
            tokio::net::TcpStream::connect(&addr).await.is_ok()
        })
        .await;
    }

    async fn stop(&self) {
        let _ = self.postfix("stop");
        wait_until("Postfix to stop", async || !self.running()).await;
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("mail/inbox/new")
    }

    fn delivered(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.inbox())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The queue as `postqueue -j` shows it, one JSON object per line.
    fn queue(&self) -> String {
        let out = run(Command::new(&self.tools.postqueue)
            .arg("-c")
            .arg(&self.conf)
            .arg("-j"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends `file` with swaks to the inbound smtpd, the client address
    /// set with XCLIENT.
    fn swaks(&self, client: &str, helo: &str, mail_from: &str, file: &Path) -> String {
        self.swaks_to(self.port, client, "[UNAVAILABLE]", helo, mail_from, file)
    }

    /// Sends `file` with swaks to `port`, the client's address and
    /// verified host name set with XCLIENT (`[UNAVAILABLE]`: none).
    fn swaks_to(
        &self,
        port: u16,
        client: &str,
        name: &str,
        helo: &str,
        mail_from: &str,
        file: &Path,
    ) -> String {
        let out = run(Command::new(&self.tools.swaks)
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args(["--helo", helo])
            .args(["--xclient-addr", client])
            .args(["--xclient-name", name])
            .args(["--xclient-helo", helo])
            .args(["--from", mail_from])
            .args(["--to", "reader@e2e.test"])
            .args(["--timeout", "60"])
            .arg("--data")
            .arg(format!("@{}", file.display())));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.running() && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
}

/// Splits a delivered message (LF line ends) into its header fields.
fn header_fields(message: &str) -> Vec<String> {
    let head = message.split("\n\n").next().unwrap_or_default();
    let mut fields: Vec<String> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push('\n');
                last.push_str(line);
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postfix_end_to_end() {
    let Some(tools) = tools() else { return };
    // A relay of ours known by name (ignore_hosts), besides loopback.
    let milter =
        Milter::start("ignore_hosts = [\"127.0.0.0/8\", \"::1\", \"relay.e2e.test\"]").await;
    let postfix = Postfix::create(tools, &format!("inet:{}", milter.addr));
    postfix.start().await;
    let work = TempDir::new("e2e-mail");

    // 1. A forged message from a domain with p=reject: 550 at DATA.
    let forged = repo().join("examples/data/forged.eml");
    let out = postfix.swaks(
        "198.51.100.200",
        "unknown.example.net",
        "ceo@example.com",
        &forged,
    );
    assert!(
        out.contains("<** 550 5.7.1 DMARC policy of example.com rejects this message"),
        "swaks:\n{out}\nmaillog:\n{}",
        postfix.maillog()
    );

    // 2. A passing message carrying a forged A-R with our authserv-id and
    //    a foreign one: delivered with ours at the top, the forged one gone.
    let newsletter = String::from_utf8(example("newsletter.eml")).expect("utf-8");
    let with_forgery = format!(
        "Authentication-Results: {MYHOSTNAME}; dmarc=pass header.from=example.com\nAuthentication-Results: other.example; spf=pass smtp.mailfrom=example.com\n{newsletter}"
    );
    let file = work.path().join("newsletter-forged-ar.eml");
    std::fs::write(&file, with_forgery).expect("write");
    let out = postfix.swaks(
        "192.0.2.10",
        "mail.example.com",
        "bounce-123@bounce.example.net",
        &file,
    );
    assert!(
        out.contains("<~  250") || out.contains("<-  250 2.0.0 Ok: queued"),
        "swaks:\n{out}"
    );
    wait_until("delivery", async || !postfix.delivered().is_empty()).await;
    let delivered = std::fs::read_to_string(&postfix.delivered()[0]).expect("read");
    let fields = header_fields(&delivered);
    let ours = format!(
        "Authentication-Results: {MYHOSTNAME};\n\tspf=pass smtp.mailfrom=bounce.example.net;\n\tdkim=pass header.d=example.com header.s=news2048 header.b=jiYhJP1T;\n\tarc=none;\n\tdmarc=pass (p=reject sp=quarantine dis=none) header.from=example.com policy.dmarc=reject"
    );
    let ar: Vec<&String> = fields
        .iter()
        .filter(|f| {
            f.to_ascii_lowercase()
                .starts_with("authentication-results:")
        })
        .collect();
    assert_eq!(
        ar,
        vec![
            &ours,
            &"Authentication-Results: other.example; spf=pass smtp.mailfrom=example.com"
                .to_string()
        ],
        "delivered:\n{delivered}"
    );
    // Ours is above every field the message arrived with: only the fields
    // of delivery (Return-Path, Delivered-To, ...) and Postfix's own
    // Received come first.
    let position = |prefix: &str| fields.iter().position(|f| f.starts_with(prefix));
    let ours_at = position("Authentication-Results: mx.e2e.test;").expect("ours");
    let first_original = position("Received: from mail.example.com").expect("original Received");
    assert!(ours_at < first_original, "delivered:\n{delivered}");

    // 3. sp=quarantine: the message lands in the hold queue.
    let subdomain = repo().join("examples/data/subdomain.eml");
    let out = postfix.swaks(
        "198.51.100.77",
        "smtp.billing.example.com",
        "billing@billing.example.com",
        &subdomain,
    );
    assert!(out.contains("250 2.0.0 Ok: queued"), "swaks:\n{out}");
    wait_until("the hold queue", async || {
        postfix.queue().contains("\"queue_name\": \"hold\"")
    })
    .await;
    let queue = postfix.queue();
    assert!(queue.contains("billing@billing.example.com"), "{queue}");

    // 4. Postfix restarts; the milter serves the new instance.
    postfix.stop().await;
    postfix.start().await;
    let out = postfix.swaks(
        "192.0.2.10",
        "mail.example.com",
        "bounce-123@bounce.example.net",
        &file,
    );
    assert!(out.contains("250 2.0.0 Ok: queued"), "swaks:\n{out}");
    wait_until("the second delivery", async || {
        postfix.delivered().len() == 2
    })
    .await;
    let second = std::fs::read_to_string(&postfix.delivered()[1]).expect("read");
    assert!(header_fields(&second).contains(&ours), "{second}");

    // 5. Local submission (sendmail, non_smtpd_milters): Postfix presents
    //    it as coming from 127.0.0.1, an ignored host by default; a forged
    //    header is still removed, and none of ours is added
    //    (add_header_to_skipped = false: it would leave with outbound mail).
    let local = format!(
        "Authentication-Results: {MYHOSTNAME}; dmarc=pass\nFrom: root@e2e.test\nTo: reader@e2e.test\nSubject: local\n\nHello.\n"
    );
    let mut child = Command::new(&postfix.tools.sendmail)
        .arg("-C")
        .arg(&postfix.conf)
        .args(["-f", "root@e2e.test", "reader@e2e.test"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sendmail");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(local.as_bytes()).expect("write");
    }
    assert!(child.wait().expect("sendmail").success());
    wait_until("the local delivery", async || {
        postfix.delivered().len() == 3
    })
    .await;
    let third = postfix
        .delivered()
        .into_iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .find(|m| m.contains("Subject: local"))
        .expect("local message delivered");
    let ar: Vec<String> = header_fields(&third)
        .into_iter()
        .filter(|f| f.starts_with("Authentication-Results"))
        .collect();
    assert_eq!(ar, Vec::<String>::new(), "{third}");

    // 6. Our own hosts' outbound mail, in the README's two safe setups.
    //    a) Through the smtpd without the milter: mail of example.com from
    //       a host outside example.com's SPF, which port 25 rejects, is
    //       relayed untouched.
    let out = postfix.swaks_to(
        postfix.relay_port,
        "198.51.100.200",
        "[UNAVAILABLE]",
        "unknown.example.net",
        "ceo@example.com",
        &forged,
    );
    assert!(out.contains("250 2.0.0 Ok: queued"), "swaks:\n{out}");
    //    b) Through port 25 from a relay in ignore_hosts by its name as
    //       Postfix verified it: not checked, no header of ours, the forged
    //       one removed.
    let relayed = format!(
        "Authentication-Results: {MYHOSTNAME}; dmarc=pass\n{}",
        String::from_utf8(example("forged.eml")).expect("utf-8")
    );
    let relayed_file = work.path().join("relayed.eml");
    std::fs::write(
        &relayed_file,
        relayed.replace("Subject:", "X-Relayed: yes\nSubject:"),
    )
    .expect("write");
    let out = postfix.swaks_to(
        postfix.port,
        "198.51.100.200",
        "relay.e2e.test",
        "relay.e2e.test",
        "ceo@example.com",
        &relayed_file,
    );
    assert!(out.contains("250 2.0.0 Ok: queued"), "swaks:\n{out}");
    wait_until("the relayed deliveries", async || {
        postfix.delivered().len() == 5
    })
    .await;
    let relayed = postfix
        .delivered()
        .into_iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .find(|m| m.contains("X-Relayed: yes"))
        .expect("relayed message delivered");
    let ar: Vec<String> = header_fields(&relayed)
        .into_iter()
        .filter(|f| f.starts_with("Authentication-Results"))
        .collect();
    assert_eq!(ar, Vec::<String>::new(), "{relayed}");
    //    The same relay without its name (unverified) is checked: 550.
    let out = postfix.swaks(
        "198.51.100.200",
        "relay.e2e.test",
        "ceo@example.com",
        &forged,
    );
    assert!(out.contains("<** 550 5.7.1"), "swaks:\n{out}");

    // The milter never failed Postfix: milter_default_action never applied.
    let log = postfix.maillog();
    let milter_warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("warning") && l.to_ascii_lowercase().contains("milter"))
        .collect();
    assert_eq!(milter_warnings, Vec::<&str>::new(), "maillog:\n{log}");
    assert!(!log.contains("Service unavailable"), "maillog:\n{log}");
    assert!(
        log.contains("milter-reject: END-OF-MESSAGE"),
        "maillog:\n{log}"
    );
    assert!(
        log.contains("milter-hold: END-OF-MESSAGE"),
        "maillog:\n{log}"
    );

    postfix.stop().await;
    drop(postfix);
    milter.stop().await.expect("clean stop");
}

/// Another milter before ours in `smtpd_milters` that inserts header
/// fields: an Authentication-Results of its own at the very top, one
/// appended at the end, and an unrelated field in the middle.
async fn start_inserting_milter() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    use indymilter::{Actions, Callbacks, ContextActions, Status};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let callbacks = Callbacks::<()>::new()
        .on_negotiate(|cx, _, _| {
            Box::pin(async move {
                cx.requested_actions |= Actions::ADD_HEADER | Actions::CHANGE_HEADER;
                Status::Continue
            })
        })
        .on_eom(|cx| {
            Box::pin(async move {
                let actions = &cx.actions;
                let inserted = [
                    actions
                        .insert_header(
                            0,
                            "Authentication-Results",
                            "inserter.example; spf=pass smtp.mailfrom=example.com",
                        )
                        .await,
                    actions
                        .insert_header(3, "X-Inserted", "by the milter before ours")
                        .await,
                    actions
                        .add_header("Authentication-Results", "appender.example; none")
                        .await,
                ];
                if inserted.iter().any(Result::is_err) {
                    return Status::Tempfail;
                }
                Status::Continue
            })
        });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(indymilter::run(
        listener,
        callbacks,
        Default::default(),
        stopped,
    ));
    (addr, stop)
}

/// Issue 11 §7: Postfix numbers the fields of `chgheader` (deletion)
/// counting the fields other milters inserted before ours in the chain
/// (OpenDKIM CVE-2022-48521 deleted the wrong ones). Postfix hands each
/// milter the message as the milters before it left it, so our numbering
/// includes their fields: exactly the forged Authentication-Results go, in
/// every position, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_results_go_and_nothing_else_behind_another_milter() {
    let Some(tools) = tools() else { return };
    let milter = Milter::start("").await;
    let (inserter, stop_inserter) = start_inserting_milter().await;
    let postfix = Postfix::create(tools, &format!("inet:{inserter},inet:{}", milter.addr));
    postfix.start().await;
    let work = TempDir::new("chain-mail");
    let newsletter = String::from_utf8(example("newsletter.eml")).expect("utf-8");
    let forged = |n: usize| {
        format!("Authentication-Results: {MYHOSTNAME}; dmarc=pass header.from=example.com ({n})")
    };
    let other = |n: usize| format!("Authentication-Results: other.example; dkim=pass ({n})");
    // Where the forgeries and the others' fields sit among the original
    // header fields: top, between, in the middle, at the end.
    let layouts: Vec<Vec<String>> = vec![
        vec![forged(1)],
        vec![other(1), forged(1), other(2)],
        vec![forged(1), forged(2), other(1), forged(3)],
        vec![other(1), other(2), forged(1)],
        vec![
            forged(1),
            other(1),
            forged(2),
            other(2),
            forged(3),
            other(3),
        ],
    ];
    let lines: Vec<&str> = newsletter.lines().collect();
    let header_end = lines.iter().position(|l| l.is_empty()).expect("a body");
    for (i, layout) in layouts.iter().enumerate() {
        // Spread the fields over the original header: each goes before the
        // original field at an even index, the rest at the end.
        let mut header: Vec<String> = Vec::new();
        let mut extra = layout.iter();
        for (j, line) in lines[..header_end].iter().enumerate() {
            if j % 2 == 0 && !line.starts_with([' ', '\t']) {
                if let Some(field) = extra.next() {
                    header.push(field.clone());
                }
            }
            header.push(line.to_string());
        }
        header.extend(extra.cloned());
        let message = format!("{}\n{}", header.join("\n"), lines[header_end..].join("\n"));
        let file = work.path().join(format!("layout-{i}.eml"));
        std::fs::write(&file, &message).expect("write");
        let before = postfix.delivered().len();
        let out = postfix.swaks(
            "192.0.2.10",
            "mail.example.com",
            "bounce-123@bounce.example.net",
            &file,
        );
        assert!(
            out.contains("250 2.0.0 Ok: queued"),
            "layout {i}: swaks:\n{out}\n{}",
            postfix.maillog()
        );
        wait_until("delivery", async || postfix.delivered().len() > before).await;
        let delivered = std::fs::read_to_string(&postfix.delivered()[before]).expect("read");
        let fields = header_fields(&delivered);
        let results: Vec<String> = fields
            .iter()
            .filter(|f| {
                f.to_ascii_lowercase()
                    .starts_with("authentication-results:")
            })
            .map(|f| f.lines().next().unwrap_or_default().to_string())
            .collect();
        // Ours (first line), the others' in their order, the inserted ones.
        let mut expected = vec![format!("Authentication-Results: {MYHOSTNAME};")];
        expected.extend(layout.iter().filter(|f| !f.contains(MYHOSTNAME)).cloned());
        expected.push(
            "Authentication-Results: inserter.example; spf=pass smtp.mailfrom=example.com"
                .to_string(),
        );
        expected.push("Authentication-Results: appender.example; none".to_string());
        let mut got = results.clone();
        let mut want = expected.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "layout {i}:\n{delivered}");
        // Every other original field survived, once.
        for line in lines[..header_end]
            .iter()
            .filter(|l| !l.starts_with([' ', '\t']))
        {
            assert_eq!(
                fields
                    .iter()
                    .filter(|f| f.lines().next() == Some(*line))
                    .count(),
                1,
                "layout {i}: {line}\n{delivered}"
            );
        }
        assert!(
            fields
                .iter()
                .any(|f| f == "X-Inserted: by the milter before ours"),
            "{delivered}"
        );
    }
    postfix.stop().await;
    drop(postfix);
    let _ = stop_inserter.send(());
}

/// Indirect mail flows (issue 13) through a real Postfix: a list's message
/// sealed by a trusted sealer is delivered with `arc=pass` and the override
/// in our header, and our own ARC seal on the delivered message (above our
/// header) validates with dkimpy, an independent implementation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postfix_delivers_trusted_list_mail_sealed() {
    let Some(tools) = tools() else { return };
    if !chains::available() {
        return;
    }
    let chains = chains::Chains::get();
    let work = TempDir::new("e2e-arc");
    let (key, record) = openssl_key(work.path());
    let zone = format!(
        "{}\narc2026._domainkey.e2e.test. 300 IN TXT {record}\n",
        chains.zone()
    );
    let zone_file = work.path().join("zone");
    std::fs::write(&zone_file, &zone).expect("zone");
    let dns = test_dns::TestDns::start(&zone).await.expect("test DNS");
    let milter = Milter::start_with_dns(
        dns,
        &format!(
            "trusted_arc_sealers = [\"lists.example.org\"]\n[arc_seal]\ndomain = \"e2e.test\"\nselector = \"arc2026\"\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .await;
    let postfix = Postfix::create(tools, &format!("inet:{}", milter.addr));
    postfix.start().await;

    // A forged ARC-Authentication-Results sealed by someone else: rejected,
    // nothing added.
    let out = postfix.swaks(
        "198.51.100.7",
        "mail.lists.example.org",
        "dev-bounces@lists.example.org",
        &chains.path("forged-aar"),
    );
    assert!(
        out.contains("<** 550 5.7.1 DMARC policy of example.com rejects this message"),
        "swaks:\n{out}\nmaillog:\n{}",
        postfix.maillog()
    );

    let out = postfix.swaks(
        "198.51.100.7",
        "mail.lists.example.org",
        "dev-bounces@lists.example.org",
        &chains.path("list-trusted"),
    );
    assert!(out.contains("250 2.0.0 Ok: queued"), "swaks:\n{out}");
    wait_until("delivery", async || !postfix.delivered().is_empty()).await;
    let delivered = std::fs::read_to_string(&postfix.delivered()[0]).expect("read");
    let fields = header_fields(&delivered);
    let ours = fields
        .iter()
        .find(|f| f.starts_with(&format!("Authentication-Results: {MYHOSTNAME};")))
        .unwrap_or_else(|| panic!("our header:\n{delivered}"));
    assert!(
        ours.contains("\n\tarc=pass header.oldest-pass=0 smtp.remote-ip=198.51.100.7;\n\tdmarc=fail (p=reject sp=reject dis=none override=trusted_forwarder: arc=pass i=1 sealer=lists.example.org) header.from=example.com"),
        "{ours}"
    );
    // Our set is on top of our header, ARC-Seal first.
    let position = |prefix: &str| {
        fields
            .iter()
            .position(|f| f.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}:\n{delivered}"))
    };
    let seal = position("ARC-Seal: i=2;");
    let ams = position("ARC-Message-Signature: i=2;");
    let aar = position(&format!(
        "ARC-Authentication-Results: i=2;\n\t{MYHOSTNAME};"
    ));
    let ar = position(&format!("Authentication-Results: {MYHOSTNAME};"));
    assert!(seal < ams && ams < aar && aar < ar, "{delivered}");
    assert!(fields[seal].contains("d=e2e.test") && fields[seal].contains("cv=pass"));

    let dkimpy: serde_json::Value =
        serde_json::from_str(&chains.dkimpy_verify(&zone_file, delivered.as_bytes()))
            .expect("dkimpy JSON");
    assert_eq!(dkimpy["cv"], "pass", "{dkimpy}\n{delivered}");
    assert_eq!(dkimpy["instances"][0]["d"], "e2e.test", "{dkimpy}");
    assert_eq!(dkimpy["instances"][0]["ams"], true, "{dkimpy}");
    assert_eq!(dkimpy["instances"][1]["d"], "lists.example.org", "{dkimpy}");

    postfix.stop().await;
    drop(postfix);
    milter.stop().await.expect("clean stop");
}
