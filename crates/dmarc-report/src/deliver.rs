//! Report runs: choosing destinations from `rua`/`ruf`, external
//! destination verification (RFC 9990 §4), size limits, and delivery over
//! SMTP or into a directory.
