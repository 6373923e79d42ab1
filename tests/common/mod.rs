//! Running the check-eml example as a process, as a postmaster does: the
//! binary next to the test's, its exit status and output.

#![allow(dead_code)]

use serde_json::Value;
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

/// The repository root: the working directory of every run, so that the
/// README's relative paths are used as written.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The example binary next to this test's: `<target>/<profile>/deps/
/// check_eml-<hash>` → `<target>/<profile>/examples/check-eml`.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in <target>/<profile>/deps");
    let binary = profile
        .join("examples")
        .join(format!("check-eml{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "the check-eml example is not built ({}: {e}): run `cargo test` for the whole \
                 package, or `cargo build --ignore-rust-version --example check-eml` first",
                binary.display()
            )
        });
    let sources = root().join("examples/check-eml");
    for entry in std::fs::read_dir(&sources).expect("examples/check-eml/") {
        let path = entry.expect("a directory entry").path();
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        assert!(
            modified <= built,
            "{} is newer than {}: rebuild the example (`cargo test` for the whole package, \
             or `cargo build --ignore-rust-version --example check-eml`)",
            path.display(),
            binary.display()
        );
    }
    binary
}

/// What one run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts a completed evaluation (exit 0, nothing on stderr).
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{self:#?}");
        assert_eq!(self.stderr, "", "{self:#?}");
        self
    }

    /// Asserts exit status 2 with one line on stderr and nothing on stdout;
    /// returns that line.
    pub fn usage_error(self) -> String {
        assert_eq!(self.code, Some(2), "{self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:#?}");
        assert!(self.stderr.starts_with("check-eml: "), "{self:#?}");
        self.stderr.trim_end().to_string()
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs check-eml with `args` (and `stdin` as its standard input).
pub fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("check-eml starts");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // The process may exit without reading (bad arguments): ignore EPIPE.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let output = child.wait_with_output().expect("check-eml runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

pub fn run(args: &[&str]) -> Run {
    run_with_stdin(args, b"")
}
