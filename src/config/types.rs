//! Value types of the YAML config that validate themselves while parsing, so
//! that serde_yaml reports a bad value with its key path, line and column.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A human duration: `250ms`, `2s`, `1m`, `1h 30m`. Bare numbers are
/// rejected because their unit would be a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, such as 250ms, 2s or 1m")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "invalid duration {s:?}: {e} (write e.g. 250ms, 2s, 1m)"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "duration {n} has no unit: write e.g. {n}ms or {n}s"
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                self.visit_u64(n.unsigned_abs())
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes: a plain integer, or a number with a unit
/// (`B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Size(pub u64);

impl Size {
    /// Parses `64KiB`, `1MiB`, `512`, `10 MB`.
    pub(crate) fn parse(s: &str) -> Result<Size, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?} (write e.g. 65536, 64KiB or 1MiB)"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {s:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 65536, 64KiB or 1MiB")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                Size::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom(format!("size {n} is negative")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A regular expression, compiled while the config is read.
#[derive(Clone)]
pub(crate) struct Re(pub regex::Regex);

impl fmt::Debug for Re {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Re {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s).map(Re).map_err(|e| {
            // regex's syntax errors span several lines; the last one says what is wrong.
            let e = e.to_string();
            let why = e.lines().last().unwrap_or("").trim_start_matches("error: ");
            de::Error::custom(format!("invalid regex {s:?}: {why}"))
        })
    }
}

/// An HTTP method name (`GET`, `POST`, …), upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Method(pub http::Method);

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
            return Err(de::Error::custom(format!(
                "invalid HTTP method {s:?} (write it in upper case, e.g. GET)"
            )));
        }
        http::Method::from_bytes(s.as_bytes())
            .map(Method)
            .map_err(|_| de::Error::custom(format!("invalid HTTP method {s:?}")))
    }
}

/// A JSON pointer (RFC 6901): empty, or starting with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pointer(pub String);

impl<'de> Deserialize<'de> for Pointer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !s.is_empty() && !s.starts_with('/') {
            return Err(de::Error::custom(format!(
                "invalid JSON pointer {s:?}: it must start with '/', e.g. /header/member_id"
            )));
        }
        Ok(Pointer(s))
    }
}

/// One address or a list of addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    /// A single value written as itself.
    One(T),
    /// A YAML list.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values, one or many, in order.
    pub(crate) fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("1MiB").unwrap(), Size(1 << 20));
        assert_eq!(Size::parse("64KiB").unwrap(), Size(65536));
        assert_eq!(Size::parse("512").unwrap(), Size(512));
        assert_eq!(Size::parse("10 MB").unwrap(), Size(10_000_000));
        assert!(Size::parse("1 parsec")
            .unwrap_err()
            .contains("invalid size unit"));
    }

    #[test]
    fn durations() {
        let d: Dur = serde_yaml::from_str("250ms").unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
        let e = serde_yaml::from_str::<Dur>("5").unwrap_err().to_string();
        assert!(e.contains("duration 5 has no unit"), "{e}");
    }
}
