//! ARC chains made by dkimpy (`tools/arc_chains.py make`), with keys made
//! for this run, and dkimpy's verdict on a chain (`tools/arc_chains.py
//! verify`). Shared by the ARC tests of the library, check-eml and the
//! milter (`#[path]`-included), so every crate tests against the same
//! independent implementation.
//!
//! Needs `python3` with dkimpy, authres, dnspython and cryptography (`pip
//! install dkimpy authres dnspython cryptography`). A test first asks
//! [`available`]: without them it is skipped with a loud message, unless
//! `DMARC_ARC_TOOLS=require` is set (as `.ci/run` does), when it fails.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// Whether dkimpy can run here (see the module documentation): false,
/// after a loud message, when it cannot and `DMARC_ARC_TOOLS` is not
/// `require`; a panic when it is.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import dkim, authres, dns, cryptography"])
            .output()
            .is_ok_and(|output| output.status.success())
    });
    if !available {
        let what = "python3 with dkimpy, authres, dnspython and cryptography is not installed (pip install dkimpy authres dnspython cryptography)";
        if std::env::var("DMARC_ARC_TOOLS").is_ok_and(|v| v == "require") {
            panic!("DMARC_ARC_TOOLS=require but {what}");
        }
        eprintln!(
            "\n########## SKIPPED: an ARC test against dkimpy: {what}.\n########## Set DMARC_ARC_TOOLS=require to make this a failure.\n"
        );
    }
    available
}

/// The script, from any crate of the workspace.
pub fn script() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("tools/arc_chains.py");
        if candidate.is_file() {
            return candidate;
        }
        assert!(dir.pop(), "tools/arc_chains.py not found above the crate");
    }
}

/// The chains of one test run, in `target/tmp/arc-chains-<test binary>`
/// (made again, with new keys, by every run).
pub struct Chains {
    dir: PathBuf,
}

impl Chains {
    /// The chains, made once per test binary.
    pub fn get() -> &'static Chains {
        static CHAINS: OnceLock<Chains> = OnceLock::new();
        CHAINS.get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
                "arc-chains-{}",
                env!("CARGO_CRATE_NAME")
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let output = Command::new("python3")
                .arg(script())
                .arg("make")
                .arg(&dir)
                .output()
                .expect("python3 is needed for the ARC tests");
            assert!(
                output.status.success(),
                "tools/arc_chains.py make failed (pip install dkimpy authres cryptography dnspython): {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Chains { dir }
        })
    }

    /// The zone text: keys, SPF and DMARC records.
    pub fn zone(&self) -> String {
        std::fs::read_to_string(self.dir.join("arc.zone")).expect("arc.zone")
    }

    /// The zone file.
    pub fn zone_path(&self) -> PathBuf {
        self.dir.join("arc.zone")
    }

    /// The message of a scenario (see the script's documentation).
    pub fn message(&self, scenario: &str) -> Vec<u8> {
        std::fs::read(self.path(scenario)).unwrap_or_else(|e| panic!("{scenario}: {e}"))
    }

    /// The file of a scenario.
    pub fn path(&self, scenario: &str) -> PathBuf {
        self.dir.join(format!("{scenario}.eml"))
    }

    /// Every scenario name.
    pub fn scenarios(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("scenarios.txt"))
            .expect("scenarios.txt")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// dkimpy's `arc_verify` of `message` with the keys of `zone` (a
    /// file): its JSON line (`{"cv": "pass", "instances": [...]}`).
    pub fn dkimpy_verify(&self, zone: &Path, message: &[u8]) -> String {
        let file = self.dir.join(format!(
            "verify-{}.eml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::write(&file, message).expect("write the message");
        let output = Command::new("python3")
            .arg(script())
            .arg("verify")
            .arg(zone)
            .arg(&file)
            .output()
            .expect("python3");
        let _ = std::fs::remove_file(&file);
        assert!(
            output.status.success(),
            "tools/arc_chains.py verify failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }
}
