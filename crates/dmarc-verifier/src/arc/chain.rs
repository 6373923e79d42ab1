//! Reading the ARC sets of a message and checking their structure (RFC 8617
//! §5.2 steps 1 to 3) before any DNS question or signature check.
//!
//! Every field whose name reads as one of the three ARC names (white space
//! before the colon does not hide one, [`header_name_is`]) is parsed with
//! mail-auth's parsers. The chain is refused (`arc=fail`) when:
//!
//! - there are more ARC fields than 50 complete sets hold, or a set number
//!   (`i=`) is outside 1 to 50 (RFC 8617 §4.2.1): reading stops there, so
//!   a message with thousands of ARC fields costs no more than 150 parses;
//! - a field does not parse, an AMS has no `i=` or carries `l=` (RFC 6376
//!   §8.2: a body length lets anyone append content);
//! - two fields of one kind share a set number, or a set between 1 and the
//!   highest one lacks one of its three fields (§5.2 step 3.1, 3.2);
//! - a seal's `cv=` is `fail`, is not `none` on set 1 or not `pass` on a
//!   later one (§5.2 steps 2 and 3.3).

use crate::message::header_name_is;
use mail_auth::arc::{ArcAuthResults, ChainValidation, Seal, Signature};

/// The most ARC sets a message may carry (RFC 8617 §4.2.1).
pub(crate) const MAX_SETS: usize = 50;

/// One ARC set as read from the message.
pub(crate) struct RawSet<'m> {
    /// The ARC-Seal, parsed.
    pub(crate) seal: Seal,
    /// The ARC-Message-Signature, parsed, with its raw name and value.
    pub(crate) ams: Signature,
    pub(crate) ams_field: RawField<'m>,
    /// The ARC-Authentication-Results value.
    pub(crate) aar: &'m [u8],
}

/// What the ARC fields of a message amount to.
pub(crate) enum Chain<'m> {
    /// No ARC field at all.
    None,
    /// Fields that do not form a chain: why (the chain fails), and the sets
    /// when they are all complete (only `cv=` is wrong).
    Invalid(String, Vec<RawSet<'m>>),
    /// Sets 1..N, complete and unique, with valid `cv=` values.
    Valid(Vec<RawSet<'m>>),
}

/// A field as mail-auth gives it: (name, value).
type RawField<'m> = (&'m [u8], &'m [u8]);

/// One parsed ARC field.
enum Field<'m> {
    Seal(Seal),
    Ams(Signature, RawField<'m>),
    Aar(&'m [u8]),
}

#[derive(Default)]
struct Slot<'m> {
    seal: Option<Seal>,
    ams: Option<(Signature, RawField<'m>)>,
    aar: Option<&'m [u8]>,
}

/// Reads and checks the ARC sets among `headers` (name, value as
/// mail-auth gives them).
pub(crate) fn read<'m>(headers: &[RawField<'m>]) -> Chain<'m> {
    let mut slots: Vec<Slot<'m>> = Vec::new();
    let mut fields = 0usize;
    for &(name, value) in headers {
        let kind = if header_name_is(name, "arc-seal") {
            "ARC-Seal"
        } else if header_name_is(name, "arc-message-signature") {
            "ARC-Message-Signature"
        } else if header_name_is(name, "arc-authentication-results") {
            "ARC-Authentication-Results"
        } else {
            continue;
        };
        fields += 1;
        if fields > 3 * MAX_SETS {
            return invalid(format!(
                "more than {} ARC header fields: over {MAX_SETS} sets (RFC 8617 §4.2.1)",
                3 * MAX_SETS
            ));
        }
        let (instance, field) = match kind {
            "ARC-Seal" => match Seal::parse(value) {
                Ok(seal) => (seal.i, Field::Seal(seal)),
                Err(e) => return invalid(format!("malformed ARC-Seal: {e}")),
            },
            "ARC-Message-Signature" => match Signature::parse(value) {
                Ok(ams) if ams.l != 0 => {
                    return invalid(format!(
                        "ARC-Message-Signature i={} has l= (a body length lets anyone append content, RFC 6376 §8.2)",
                        ams.i
                    ))
                }
                Ok(ams) => (ams.i, Field::Ams(ams, (name, value))),
                Err(e) => return invalid(format!("malformed ARC-Message-Signature: {e}")),
            },
            _ => match ArcAuthResults::parse(value) {
                Ok(aar) => (aar.i, Field::Aar(value)),
                Err(e) => return invalid(format!("malformed ARC-Authentication-Results: {e}")),
            },
        };
        let Some(slot) = slot(&mut slots, instance) else {
            return invalid(format!(
                "{kind} with i={instance}: instances are 1 to {MAX_SETS} (RFC 8617 §4.2.1)"
            ));
        };
        let duplicate = match field {
            Field::Seal(seal) => slot.seal.replace(seal).is_some(),
            Field::Ams(ams, raw) => slot.ams.replace((ams, raw)).is_some(),
            Field::Aar(value) => slot.aar.replace(value).is_some(),
        };
        if duplicate {
            return invalid(format!(
                "two {kind} fields with i={instance} (RFC 8617 §5.2 step 3.1)"
            ));
        }
    }
    if slots.is_empty() {
        return Chain::None;
    }
    let newest = slots.len();
    let mut sets = Vec::with_capacity(newest);
    for (index, slot) in slots.into_iter().enumerate() {
        let i = index + 1;
        match slot {
            Slot {
                seal: Some(seal),
                ams: Some((ams, ams_field)),
                aar: Some(aar),
            } => sets.push(RawSet {
                seal,
                ams,
                ams_field,
                aar,
            }),
            Slot {
                seal: None,
                ams: None,
                aar: None,
            } => {
                return invalid(format!(
                    "no ARC set i={i} below i={newest}: the instances have a gap (RFC 8617 §5.2 step 3.2)"
                ))
            }
            _ => {
                return invalid(format!(
                    "ARC set i={i} lacks one of its three fields (RFC 8617 §5.2 step 3.1)"
                ))
            }
        }
    }
    // §5.2 step 2: a chain whose newest seal says cv=fail has failed; step
    // 3.3: cv=none on set 1 only, cv=pass on every later set.
    let wrong_cv = sets.iter().enumerate().find_map(|(index, set)| {
        let i = index + 1;
        match (&set.seal.cv, i) {
            (ChainValidation::Fail, _) => Some(format!(
                "the ARC-Seal i={i} says cv=fail (RFC 8617 §5.2 step 2)"
            )),
            (ChainValidation::None, 1) | (ChainValidation::Pass, 2..) => None,
            (_, _) => Some(format!(
                "the ARC-Seal i={i} has cv={} (RFC 8617 §5.2 step 3.3: none on i=1, pass above)",
                cv_word(&set.seal.cv)
            )),
        }
    });
    match wrong_cv {
        Some(why) => Chain::Invalid(why, sets),
        None => Chain::Valid(sets),
    }
}

/// `none`, `fail` or `pass`.
fn cv_word(cv: &ChainValidation) -> &'static str {
    match cv {
        ChainValidation::None => "none",
        ChainValidation::Fail => "fail",
        ChainValidation::Pass => "pass",
    }
}

fn invalid<'m>(why: String) -> Chain<'m> {
    Chain::Invalid(why, Vec::new())
}

/// The slot of set `i` (1 to 50, as mail-auth's parsers guarantee), grown
/// on demand; `None` for a number out of range.
fn slot<'a, 'm>(slots: &'a mut Vec<Slot<'m>>, i: u32) -> Option<&'a mut Slot<'m>> {
    let index = usize::try_from(i).ok()?.checked_sub(1)?;
    if index >= MAX_SETS {
        return None;
    }
    if slots.len() <= index {
        slots.resize_with(index + 1, Slot::default);
    }
    slots.get_mut(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three fields of set `i` with `cv`, signatures not checked here.
    fn set(i: u32, cv: &str) -> Vec<(String, String)> {
        vec![
            (
                "ARC-Seal".into(),
                format!(" i={i}; a=rsa-sha256; cv={cv}; d=example.org; s=s; b=AAAA\r\n"),
            ),
            (
                "ARC-Message-Signature".into(),
                format!(" i={i}; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s; h=from; bh=AAAA; b=AAAA\r\n"),
            ),
            (
                "ARC-Authentication-Results".into(),
                format!(" i={i}; mx.example.org; none\r\n"),
            ),
        ]
    }

    fn read_fields(fields: &[(String, String)]) -> Result<usize, String> {
        let headers: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        match read(&headers) {
            Chain::None => Ok(0),
            Chain::Valid(sets) => Ok(sets.len()),
            Chain::Invalid(why, _) => Err(why),
        }
    }

    #[test]
    fn structure_rules_of_rfc8617_5_2() {
        let two: Vec<_> = [set(1, "none"), set(2, "pass")].concat();
        assert_eq!(read_fields(&two), Ok(2));
        // Order in the header does not matter; the numbers do.
        let mut shuffled = two.clone();
        shuffled.reverse();
        assert_eq!(read_fields(&shuffled), Ok(2));
        assert_eq!(read_fields(&[]), Ok(0));
        let fifty: Vec<_> = (1..=50)
            .flat_map(|i| set(i, if i == 1 { "none" } else { "pass" }))
            .collect();
        assert_eq!(read_fields(&fifty), Ok(50));

        type Case = (&'static str, Vec<(String, String)>, &'static str);
        let invalid: Vec<Case> = vec![
            ("gap", [set(1, "none"), set(3, "pass")].concat(), "gap"),
            ("no set 1", set(2, "pass"), "gap"),
            (
                "duplicate set",
                [set(1, "none"), set(1, "none")].concat(),
                "two ARC-Seal",
            ),
            ("a lone seal", set(1, "none")[..1].to_vec(), "lacks"),
            ("cv=pass on set 1", set(1, "pass"), "cv=pass"),
            (
                "cv=none above set 1",
                [set(1, "none"), set(2, "none")].concat(),
                "cv=none",
            ),
            (
                "cv=fail in the newest",
                [set(1, "none"), set(2, "fail")].concat(),
                "cv=fail",
            ),
            (
                "cv=fail below",
                [set(1, "fail"), set(2, "pass")].concat(),
                "cv=fail",
            ),
            (
                "51 sets",
                (1..=51)
                    .flat_map(|i| set(i, if i == 1 { "none" } else { "pass" }))
                    .collect(),
                "ARC header fields",
            ),
            (
                "i=0 in the AMS",
                vec![(
                    "ARC-Message-Signature".into(),
                    " a=rsa-sha256; d=x; s=s; h=from; bh=AAAA; b=AAAA\r\n".into(),
                )],
                "i=0",
            ),
            (
                "l= in the AMS",
                vec![(
                    "ARC-Message-Signature".into(),
                    " i=1; l=10; a=rsa-sha256; d=x; s=s; h=from; bh=AAAA; b=AAAA\r\n".into(),
                )],
                "l=",
            ),
            (
                "h= in the seal",
                vec![(
                    "ARC-Seal".into(),
                    " i=1; a=rsa-sha256; cv=none; d=x; s=s; h=from; b=AAAA\r\n".into(),
                )],
                "malformed ARC-Seal",
            ),
            (
                "an unknown cv",
                vec![(
                    "ARC-Seal".into(),
                    " i=1; a=rsa-sha256; cv=maybe; d=x; s=s; b=AAAA\r\n".into(),
                )],
                "malformed ARC-Seal",
            ),
            (
                "white space before the colon does not hide a field",
                [
                    set(1, "none"),
                    vec![("ARC-Seal ".into(), set(1, "none")[0].1.clone())],
                ]
                .concat(),
                "two ARC-Seal",
            ),
        ];
        for (what, fields, why) in invalid {
            match read_fields(&fields) {
                Err(reason) => assert!(reason.contains(why), "{what}: {reason}"),
                Ok(n) => panic!("{what}: read as {n} valid sets"),
            }
        }
    }

    #[test]
    fn a_flood_of_arc_fields_is_not_parsed_to_the_end() {
        // 10,000 fields that would each fail to parse: the count stops
        // reading first.
        let fields: Vec<(String, String)> = (0..10_000)
            .map(|_| ("ARC-Seal".to_string(), " garbage\r\n".to_string()))
            .collect();
        // The first one is parsed (and fails): malformed, not the count.
        assert!(read_fields(&fields).unwrap_err().contains("malformed"));
        let valid_then_flood: Vec<_> = set(1, "none")
            .into_iter()
            .cycle()
            .take(3 * MAX_SETS + 1)
            .collect();
        // Duplicates are found first too; a flood of distinct sets hits the
        // count.
        assert!(read_fields(&valid_then_flood).is_err());
        let distinct: Vec<_> = (1..=50)
            .flat_map(|i| set(i, if i == 1 { "none" } else { "pass" }))
            .chain(set(1, "none").into_iter().take(1))
            .collect();
        assert!(read_fields(&distinct)
            .unwrap_err()
            .contains("more than 150 ARC header fields"));
    }
}
