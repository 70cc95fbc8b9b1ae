//! The two fields of an X.509 certificate the proxy reports: when it
//! expires (`notAfter`, for the expiry gauge) and its subject (RFC 4514
//! text, for `tls.forward_client_cert`). A small DER walker over the
//! certificate rustls has already parsed and verified; it returns `None`
//! on anything it does not understand rather than guessing.

/// A DER element: tag and contents; `rest` follows it.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

fn next(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            body: &rest[..len],
        },
        &rest[len..],
    ))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// The TBSCertificate's fields after the version: serial, signature
/// algorithm, issuer, validity, subject.
fn tbs_fields(der: &[u8]) -> Option<(Tlv<'_>, Tlv<'_>)> {
    let (cert, _) = next(der)?;
    if cert.tag != SEQUENCE {
        return None;
    }
    let (tbs, _) = next(cert.body)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs.body;
    let (mut el, mut after) = next(rest)?;
    if el.tag == 0xa0 {
        // [0] EXPLICIT version
        rest = after;
        (el, after) = next(rest)?;
    }
    let _serial = el;
    let (_sig_alg, after) = next(after)?;
    let (_issuer, after) = next(after)?;
    let (validity, after) = next(after)?;
    let (subject, _) = next(after)?;
    if validity.tag != SEQUENCE || subject.tag != SEQUENCE {
        return None;
    }
    Some((validity, subject))
}

/// `notAfter` as seconds since the Unix epoch.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (validity, _) = tbs_fields(der)?;
    let (_not_before, rest) = next(validity.body)?;
    let (t, _) = next(rest)?;
    parse_time(t.tag, t.body)
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, s: &[u8]) -> Option<i64> {
    let (year, rest) = match tag {
        0x17 if s.len() == 13 => {
            let yy = digits(&s[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 15 => (digits(&s[..4])?, &s[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let f = |i: usize| digits(&rest[i..i + 2]);
    let (mo, d, h, mi, se) = (f(0)?, f(2)?, f(4)?, f(6)?, f(8)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The subject as an RFC 4514 string (`CN=client,O=Example`: the last RDN
/// first), attribute types by their short names, unknown ones as dotted OIDs.
pub(crate) fn subject(der: &[u8]) -> Option<String> {
    let (_, name) = tbs_fields(der)?;
    let mut rdns = Vec::new();
    let mut rest = name.body;
    while !rest.is_empty() {
        let (set, after) = next(rest)?;
        rest = after;
        if set.tag != SET {
            return None;
        }
        let mut parts = Vec::new();
        let mut inner = set.body;
        while !inner.is_empty() {
            let (atv, after) = next(inner)?;
            inner = after;
            let (oid, after) = next(atv.body)?;
            let (value, _) = next(after)?;
            if oid.tag != 0x06 {
                return None;
            }
            parts.push(format!(
                "{}={}",
                attr_name(oid.body),
                escape(&text(&value)?)
            ));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn text(v: &Tlv<'_>) -> Option<String> {
    match v.tag {
        // UTF8String, PrintableString, IA5String, TeletexString (as Latin-1 is rare; take bytes as UTF-8)
        0x0c | 0x13 | 0x16 | 0x14 => Some(String::from_utf8_lossy(v.body).into_owned()),
        // BMPString: UCS-2 big-endian.
        0x1e => {
            let units: Vec<u16> = v
                .body
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

fn attr_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => dotted(oid),
    }
}

fn dotted(oid: &[u8]) -> String {
    let mut out = Vec::new();
    let mut n: u64 = 0;
    for &b in oid {
        n = (n << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if out.is_empty() {
                let (a, b) = if n < 80 {
                    (n / 40, n % 40)
                } else {
                    (2, n - 80)
                };
                out.push(a.to_string());
                out.push(b.to_string());
            } else {
                out.push(n.to_string());
            }
            n = 0;
        }
    }
    out.join(".")
}

/// RFC 4514 §2.4 escaping, and control characters as `\XX` so the value is
/// safe in an HTTP header.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            parse_time(0x17, b"491231235959Z"),
            Some(2_524_607_999),
            "UTCTime 49 is 2049"
        );
        assert_eq!(parse_time(0x18, b"19700101000010Z"), Some(10));
        assert_eq!(parse_time(0x18, b"1970010100001Z"), None);
    }

    #[test]
    fn reads_subject_and_not_after_of_an_rcgen_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CountryName, "DE");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "client-1");
        p.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let c = p.self_signed(&key).unwrap();
        assert_eq!(not_after(c.der()), Some(1_936_742_400));
        let s = subject(c.der()).unwrap();
        // rcgen writes the attributes in its own order; each is its own RDN.
        assert_eq!(s.len(), "CN=client-1,O=Acme\\, Inc.,C=DE".len(), "{s}");
        assert!(s.contains("O=Acme\\, Inc."), "{s}");
        assert!(s.contains("CN=client-1") && s.contains("C=DE"), "{s}");
        assert_eq!(subject(b"\x30\x03\x02\x01\x01"), None);
        assert_eq!(not_after(b""), None);
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" #x "), "\\ #x\\ ");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("a\nb"), "a\\0Ab");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}
