//! The workspace root package of dmarc-milter: it holds the workspace-level
//! integration tests (`tests/`) and examples (`examples/check-eml`). It has
//! no code of its own; see the `dmarc-verifier` and `dmarc-milter` crates.
