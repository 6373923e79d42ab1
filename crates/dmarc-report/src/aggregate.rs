//! RFC 9990 aggregate reports: rows grouped from evaluation records, the
//! XML document, its file name, and the report mail.
