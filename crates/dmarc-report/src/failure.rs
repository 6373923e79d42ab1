//! RFC 9991 failure reports (AFRF, RFC 6591): when `fo` asks for one, and
//! the report message with the original message's body redacted.
