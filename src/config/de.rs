//! Deserializers that accept a setting both in its native TOML type and as the string an
//! environment variable or a flag carries (`WEBSOCKIFY_RUN_ONCE=1`, `--timeout 30`), so one
//! typed [`super::Settings`] serves all three layers.

use std::fmt;

use serde::{Deserializer, de};

/// `true`/`false`, or the strings `1 0 true false yes no on off` (any case).
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false (also 1/0, yes/no, on/off)")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_any(Visitor)
}

/// A command line: a list of strings (TOML), or one string split as a POSIX shell would
/// (`WEBSOCKIFY_WRAP_COMMAND='vncserver -geometry "1024 768"'`).
pub fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Visitor;
    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a command: a list of strings, or one shell-quoted string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let words = shell_words::split(v).map_err(|e| E::custom(format!("{e} in {v:?}")))?;
            Ok(Some(words).filter(|w| !w.is_empty()))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut words = Vec::new();
            while let Some(word) = seq.next_element::<String>()? {
                words.push(word);
            }
            Ok(Some(words).filter(|w| !w.is_empty()))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_option(Visitor)
}

/// A whole number of seconds, as a number or a string of digits; 0 means "off".
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(WholeNumber(
        "a whole number of seconds, e.g. 30 (0 turns it off)",
    ))
}

pub fn microseconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(WholeNumber(
        "a whole number of microseconds, e.g. 50 (0 turns it off)",
    ))
}

/// A whole number, as a number or a string of digits; 0 means "no limit" or "automatic".
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(WholeNumber("a whole number, e.g. 1000 (0: no limit)"))
}

/// A non-negative integer from TOML or from an environment variable's digits; the text says
/// what the setting expects.
struct WholeNumber(&'static str);

impl de::Visitor<'_> for WholeNumber {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.trim()
            .parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// A list of rules or networks: a TOML list of strings, or one string of comma-separated
/// items (an environment variable); either way parsed by the type's `FromStr`.
pub fn comma_list<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    struct Visitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: std::str::FromStr<Err = String>> de::Visitor<'de> for Visitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings, or one string of comma-separated items")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            items.join(",").parse().map_err(de::Error::custom)
        }
    }
    d.deserialize_any(Visitor(std::marker::PhantomData))
}

/// A value named by a word (`json`, `tlsv1_3`, `v2`), parsed by the type's `FromStr` as the
/// flag is, so that the three layers accept the same words; a TOML number is taken as its
/// digits.
pub fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    d.deserialize_any(Parsed(std::marker::PhantomData))
}

/// [`parsed`], for a setting that may be unset.
pub fn parsed_option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    struct Visitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: std::str::FromStr<Err = String>> de::Visitor<'de> for Visitor<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a word")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            parsed(d).map(Some)
        }
    }
    d.deserialize_option(Visitor(std::marker::PhantomData))
}

struct Parsed<T>(std::marker::PhantomData<T>);

impl<T: std::str::FromStr<Err = String>> de::Visitor<'_> for Parsed<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a word")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    use serde::de::value::Error;

    #[test]
    fn flags_and_seconds_from_strings() {
        let f = |s: &str| super::flag(IntoDeserializer::<Error>::into_deserializer(s));
        assert_eq!(f("1"), Ok(true));
        assert_eq!(f("Off"), Ok(false));
        assert!(f("maybe").is_err());
        let s = |s: &str| super::seconds(IntoDeserializer::<Error>::into_deserializer(s));
        assert_eq!(s(" 30"), Ok(30));
        assert!(s("-1").is_err());
        assert!(s("1.5").is_err());
        // Native types too.
        assert_eq!(
            super::seconds(IntoDeserializer::<Error>::into_deserializer(7u64)),
            Ok(7)
        );
        assert!(bool::deserialize(IntoDeserializer::<Error>::into_deserializer(true)).unwrap());
    }
}
