//! Just enough DER reading to rebuild an [`Issuer`](rcgen::Issuer) from our own CA
//! certificate: rcgen can only parse certificates with its `x509-parser` feature, which the
//! workspace does not enable.
//!
//! It owns no certificate generation or verification (see the parent module); it only pulls
//! the subject name and the SubjectPublicKeyInfo out of a certificate, and rejects anything it
//! does not understand with an error instead of panicking.

use rcgen::{DistinguishedName, DnType, DnValue};

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_INTEGER: u8 = 0x02;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_VERSION: u8 = 0xa0;
/// id-at-commonName (2.5.4.3), content octets.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-at-organizationName (2.5.4.10), content octets.
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

pub(super) struct CaFields<'a> {
    pub(super) subject: DistinguishedName,
    /// The complete SubjectPublicKeyInfo TLV.
    pub(super) spki: &'a [u8],
}

/// One decoded TLV and what follows it.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    /// Tag, length and contents.
    whole: &'a [u8],
    rest: &'a [u8],
}

fn read(input: &[u8]) -> Result<Tlv<'_>, String> {
    let truncated = || "truncated der".to_owned();
    let (&tag, after_tag) = input.split_first().ok_or_else(truncated)?;
    let (&first, mut after_len) = after_tag.split_first().ok_or_else(truncated)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err("unsupported der length".to_owned());
        }
        let (len_bytes, rest) = after_len.split_at_checked(n).ok_or_else(truncated)?;
        after_len = rest;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (contents, rest) = after_len.split_at_checked(len).ok_or_else(truncated)?;
    let whole = &input[..input.len() - rest.len()];
    Ok(Tlv {
        tag,
        contents,
        whole,
        rest,
    })
}

fn expect<'a>(input: &'a [u8], want: u8, what: &str) -> Result<Tlv<'a>, String> {
    let tlv = read(input)?;
    if tlv.tag != want {
        return Err(format!("expected {what}, found tag {:#04x}", tlv.tag));
    }
    Ok(tlv)
}

const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;

/// The end of an X.509 certificate's validity (`notAfter`), in seconds since the epoch.
pub(super) fn not_after(cert: &[u8]) -> Result<i64, String> {
    let validity = validity(cert)?;
    let not_before = read(validity.contents)?;
    let not_after = read(not_before.rest)?;
    let text = std::str::from_utf8(not_after.contents).map_err(|_| "a time that is not text")?;
    match not_after.tag {
        // YYMMDDHHMMSSZ: years 1950..=2049 (RFC 5280).
        TAG_UTC_TIME if text.len() == 13 => {
            let yy: i64 = digits(&text[..2])?;
            let year = if yy < 50 { 2000 + yy } else { 1900 + yy };
            time_of(year, &text[2..])
        }
        // YYYYMMDDHHMMSSZ.
        TAG_GENERALIZED_TIME if text.len() == 15 => time_of(digits(&text[..4])?, &text[4..]),
        tag => Err(format!(
            "unsupported validity time (tag {tag:#04x}, {text:?})"
        )),
    }
}

fn digits(text: &str) -> Result<i64, String> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a number: {text:?}"));
    }
    text.parse().map_err(|_| format!("not a number: {text:?}"))
}

/// Seconds since the epoch of `year` and `MMDDHHMMSSZ`.
fn time_of(year: i64, rest: &str) -> Result<i64, String> {
    if !rest.ends_with('Z') {
        return Err(format!("a time that is not UTC: {rest:?}"));
    }
    let (month, day) = (digits(&rest[0..2])?, digits(&rest[2..4])?);
    let (hour, minute, second) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(format!("an impossible time: {year} {rest:?}"));
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// The validity of an X.509 certificate's TBS part (what follows it: subject, key).
fn validity(cert: &[u8]) -> Result<Tlv<'_>, String> {
    let certificate = expect(cert, TAG_SEQUENCE, "certificate")?;
    let tbs = expect(certificate.contents, TAG_SEQUENCE, "tbs certificate")?;
    let mut rest = tbs.contents;
    if rest.first() == Some(&TAG_VERSION) {
        rest = read(rest)?.rest;
    }
    let serial = expect(rest, TAG_INTEGER, "serial number")?;
    let algorithm = expect(serial.rest, TAG_SEQUENCE, "signature algorithm")?;
    let issuer = expect(algorithm.rest, TAG_SEQUENCE, "issuer")?;
    expect(issuer.rest, TAG_SEQUENCE, "validity")
}

/// Extracts the subject name and the SubjectPublicKeyInfo of an X.509 certificate.
pub(super) fn ca_fields(cert: &[u8]) -> Result<CaFields<'_>, String> {
    let validity = validity(cert)?;
    let subject = expect(validity.rest, TAG_SEQUENCE, "subject")?;
    let spki = expect(subject.rest, TAG_SEQUENCE, "subject public key info")?;
    Ok(CaFields {
        subject: distinguished_name(subject.contents)?,
        spki: spki.whole,
    })
}

/// Rebuilds the name so rcgen re-encodes exactly the same bytes: one attribute per RDN,
/// common name / organization, UTF8String or PrintableString (what rcgen itself writes).
fn distinguished_name(mut rdns: &[u8]) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    while !rdns.is_empty() {
        let set = expect(rdns, TAG_SET, "relative distinguished name")?;
        rdns = set.rest;
        let attr = expect(set.contents, TAG_SEQUENCE, "attribute")?;
        if !attr.rest.is_empty() {
            return Err("multi-valued relative distinguished name".to_owned());
        }
        let oid = expect(attr.contents, TAG_OID, "attribute type")?;
        let ty = match oid.contents {
            OID_COMMON_NAME => DnType::CommonName,
            OID_ORGANIZATION => DnType::OrganizationName,
            other => return Err(format!("unsupported subject attribute {other:02x?}")),
        };
        let value = read(oid.rest)?;
        let text = std::str::from_utf8(value.contents)
            .map_err(|_| "subject attribute is not utf-8".to_owned())?;
        let value = match value.tag {
            TAG_UTF8_STRING => DnValue::Utf8String(text.to_owned()),
            TAG_PRINTABLE_STRING => DnValue::PrintableString(
                text.try_into()
                    .map_err(|_| "invalid printable string".to_owned())?,
            ),
            tag => return Err(format!("unsupported subject string tag {tag:#04x}")),
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reader_rejects_garbage() {
        assert!(ca_fields(&[]).is_err());
        assert!(ca_fields(&[0x30, 0x85, 0, 0, 0, 0, 0]).is_err());
        assert!(ca_fields(&[0x30, 0x10, 0x30]).is_err());
    }
}
