//! Generates the man pages at build time, so they never drift from the
//! code: dmarc-milter(8) and dmarc-check(1) from the clap definitions in
//! `src/cli.rs` (clap_mangen), and dmarc-milter.toml(5) from
//! `dmarc-milter.toml`, the documented configuration the package installs
//! (a unit test checks that it shows exactly the keys the daemon reads).
//!
//! The pages are written to `$OUT_DIR/man/` and copied to `man/` in the
//! profile's target directory (`target/release/man/`), where cargo-deb's
//! assets take them: cargo has no other place for generated files that are
//! not binaries (no post-build step, rust-lang/cargo#545).

#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

use clap::CommandFactory;
use clap_mangen::Man;
use roff::{bold, roman, Roff};
use std::{env, fs, io, io::Write, path::PathBuf};

/// The manual's title line: source and manual name.
const SOURCE: &str = concat!("dmarc-milter ", env!("CARGO_PKG_VERSION"));

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=dmarc-milter.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    println!(
        "cargo:rustc-env=DMARC_MILTER_MAIL_AUTH_VERSION={}",
        locked_version("../../Cargo.lock", "mail-auth").unwrap_or_else(|| "unknown".to_string())
    );
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR"))?);
    let man = out_dir.join("man");
    fs::create_dir_all(&man)?;

    fs::write(man.join("dmarc-milter.8"), milter_page()?)?;
    fs::write(man.join("dmarc-check.1"), check_page()?)?;
    let sample = fs::read_to_string("dmarc-milter.toml")?;
    fs::write(man.join("dmarc-milter.toml.5"), config_page(&sample))?;

    // $OUT_DIR is <target>/<profile>/build/<package>-<hash>/out. Each page
    // as it is (for `man -l`) and compressed for the package (Debian
    // policy 12.1; cargo-deb compresses only files it did not see built).
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        let dest = profile_dir.join("man");
        fs::create_dir_all(&dest)?;
        for page in ["dmarc-milter.8", "dmarc-check.1", "dmarc-milter.toml.5"] {
            let text = fs::read(man.join(page))?;
            fs::write(dest.join(page), &text)?;
            fs::write(dest.join(format!("{page}.gz")), gzip(&text)?)?;
        }
    }
    Ok(())
}

/// The version of `package` in the lock file at `path` (for the metrics'
/// build information: which mail-auth this binary links); `None` when the
/// file or the package is not there (a build outside the workspace).
fn locked_version(path: &str, package: &str) -> Option<String> {
    let lock = fs::read_to_string(path).ok()?;
    let mut lines = lock.lines();
    let wanted = format!("name = \"{package}\"");
    lines.find(|line| *line == wanted)?;
    let version = lines
        .next()?
        .strip_prefix("version = \"")?
        .strip_suffix('"')?;
    Some(version.to_string())
}

/// gzip -9n: best compression, no file name or time stamp, so that the
/// package builds reproducibly.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

/// The sections clap_mangen renders for a command, in order.
fn command_sections(man: &Man, out: &mut Vec<u8>) -> io::Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    Ok(())
}

/// `after_long_help` (the exit status) as its own section.
fn exit_status(cmd: &clap::Command, roff: &mut Roff) {
    if let Some(text) = cmd.get_after_long_help() {
        let text = text.to_string();
        roff.control("SH", ["EXIT STATUS"]);
        roff.text([roman(text.strip_prefix("Exit status: ").unwrap_or(&text))]);
    }
}

fn milter_page() -> io::Result<Vec<u8>> {
    let cmd = cli::MilterArgs::command();
    let man = Man::new(cmd.clone())
        .section("8")
        .source(SOURCE)
        .manual("System Manager's Manual");
    let mut out = Vec::new();
    command_sections(&man, &mut out)?;
    // The commands, each with its options (clap_mangen's own section
    // points to a page per command, which we do not have).
    for sub in cmd.get_subcommands() {
        let mut roff = Roff::new();
        roff.control(
            "SH",
            [format!("COMMAND: {}", sub.get_name().to_uppercase()).as_str()],
        );
        roff.text([bold(format!("dmarc-milter {} [OPTIONS]", sub.get_name()))]);
        roff.control("PP", [] as [&str; 0]);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            roff.text([roman(about.to_string())]);
        }
        out.extend_from_slice(roff.render().as_bytes());
        let mut sub_page = Vec::new();
        Man::new(sub.clone()).render_options_section(&mut sub_page)?;
        let sub_page = String::from_utf8_lossy(&sub_page).replacen(
            ".SH OPTIONS",
            &format!(".SH \"OPTIONS OF {}\"", sub.get_name().to_uppercase()),
            1,
        );
        out.extend_from_slice(sub_page.as_bytes());
    }
    let mut roff = Roff::new();
    roff.control("SH", ["SIGNALS"]);
    definition(&mut roff, "SIGTERM, SIGINT", "Stop: close the socket (a UNIX socket file is removed), answer new messages with 451 4.3.2, finish the messages in flight (at most shutdown_timeout), exit 0.");
    definition(&mut roff, "SIGHUP", "Read the configuration file again (systemctl reload dmarc-milter). A refused file is logged and the running configuration kept; settings marked restart in dmarc-milter.toml(5) take effect at the next start.");
    exit_status(&cmd, &mut roff);
    files(&mut roff);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("dmarc-check(1), dmarc-milter.toml(5), postconf(5), systemctl(1); /usr/share/doc/dmarc-milter/README.md")]);
    out.extend_from_slice(roff.render().as_bytes());
    Ok(out)
}

fn check_page() -> io::Result<Vec<u8>> {
    let cmd = cli::CheckArgs::command();
    let man = Man::new(cmd.clone())
        .section("1")
        .source(SOURCE)
        .manual("User Commands");
    let mut out = Vec::new();
    command_sections(&man, &mut out)?;
    let mut roff = Roff::new();
    exit_status(&cmd, &mut roff);
    roff.control("SH", ["EXAMPLES"]);
    roff.control("nf", [] as [&str; 0]);
    roff.text([roman("dmarc-check message.eml\n")]);
    roff.text([roman(
        "postcat -bh -q 4XyZ2def | dmarc-check --client-ip 203.0.113.5 --helo mail.example.org -\n",
    )]);
    roff.text([roman("dmarc-check --json --explain message.eml\n")]);
    roff.control("fi", [] as [&str; 0]);
    files(&mut roff);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("dmarc-milter(8), dmarc-milter.toml(5), postcat(1)")]);
    out.extend_from_slice(roff.render().as_bytes());
    Ok(out)
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    definition(
        roff,
        cli::DEFAULT_CONFIG_PATH,
        "The configuration, see dmarc-milter.toml(5).",
    );
    definition(
        roff,
        "/var/lib/dmarc-milter",
        "The state directory: the SQLite report store when report_store points there.",
    );
    definition(
        roff,
        "/run/dmarc-milter",
        "The runtime directory, for a UNIX socket outside Postfix's chroot.",
    );
}

/// `.TP` with a bold term and its text.
fn definition(roff: &mut Roff, term: &str, text: &str) {
    roff.control("TP", [] as [&str; 0]);
    roff.text([bold(term)]);
    roff.text([roman(text)]);
}

/// dmarc-milter.toml(5) from the documented configuration file.
///
/// The file's shape: a header comment (the description), sections opened
/// by `# --- Title ---`, and blocks separated by blank lines, each a
/// comment (the text) followed by the keys it describes, set (`key =
/// value`) or shown commented out (`#key = value`). Comment lines indented
/// by more than one space are examples, kept as they are.
fn config_page(sample: &str) -> String {
    let mut roff = Roff::new();
    roff.control(
        "TH",
        ["DMARC-MILTER.TOML", "5", "", SOURCE, "File Formats Manual"],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "dmarc-milter.toml - configuration of dmarc-milter(8) and dmarc-check(1)",
    )]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([bold(cli::DEFAULT_CONFIG_PATH)]);
    roff.control("SH", ["DESCRIPTION"]);

    let mut blocks = sample
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty());
    if let Some(header) = blocks.next() {
        let lines: Vec<&str> = header.lines().filter_map(comment_text).collect();
        paragraphs(&mut roff, &lines);
    }
    for block in blocks {
        let mut text: Vec<&str> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for line in block.lines() {
            if let Some(title) = section_title(line) {
                roff.control("SH", [title.to_uppercase().as_str()]);
                continue;
            }
            match key_line(line) {
                Some(key) => keys.push(key),
                None => text.extend(comment_text(line)),
            }
        }
        if keys.is_empty() {
            paragraphs(&mut roff, &text);
            continue;
        }
        // One tag per key line: .TP for the first, groff's .TQ for more.
        for (i, key) in keys.iter().enumerate() {
            roff.control(if i == 0 { "TP" } else { "TQ" }, [] as [&str; 0]);
            roff.text([bold(key.clone())]);
        }
        paragraphs(&mut roff, &text);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("dmarc-milter(8), dmarc-check(1); the key reference in /usr/share/doc/dmarc-milter/README.md")]);
    roff.render()
}

/// `Daemon` from `# --- Daemon -----`.
fn section_title(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# --- ")?;
    let title = rest.trim_end_matches('-').trim();
    (!title.is_empty()).then_some(title)
}

/// `socket = "inet:127.0.0.1:8895"` (or commented out) shown as it is,
/// with a trailing comment kept.
fn key_line(line: &str) -> Option<String> {
    let setting = line.strip_prefix('#').unwrap_or(line);
    let (key, _) = setting.split_once(" = ")?;
    key.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        .then(|| setting.trim_end().to_string())
}

/// The text of a comment line (`# text` → `text`; `#` → empty).
fn comment_text(line: &str) -> Option<&str> {
    let text = line.strip_prefix('#')?;
    Some(text.strip_prefix(' ').unwrap_or(text))
}

/// Comment lines as paragraphs: runs of text joined (roff fills them),
/// indented lines (examples) kept verbatim, blank comment lines between
/// paragraphs.
fn paragraphs(roff: &mut Roff, lines: &[&str]) {
    let mut text = String::new();
    let flush = |roff: &mut Roff, text: &mut String| {
        if !text.is_empty() {
            roff.text([roman(text.trim_end().to_string())]);
            text.clear();
        }
    };
    for line in lines {
        if line.is_empty() {
            flush(roff, &mut text);
            roff.control("PP", [] as [&str; 0]);
        } else if line.starts_with(' ') {
            flush(roff, &mut text);
            roff.control("nf", [] as [&str; 0]);
            roff.text([roman(line.trim_start().to_string())]);
            roff.control("fi", [] as [&str; 0]);
        } else {
            text.push_str(line);
            text.push(' ');
        }
    }
    flush(roff, &mut text);
}
