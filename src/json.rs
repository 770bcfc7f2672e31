//! JSON request bodies read as their OpenAPI schema describes them, where serde's defaults read
//! more or less:
//!
//! - [`Object`]: a struct only from a JSON object. serde's derive also builds a struct from an
//!   array, field by field (`[null, null]` would be an empty purge request, purging everything);
//!   the schema says "object", so an array is a 400.
//! - [`whole`]: a count or sequence from any JSON number with a whole value. JSON Schema counts
//!   `5.0` as an integer, as JSON itself does not tell them apart; serde would refuse it.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Unexpected, Visitor};

/// A `T` read from a JSON object, never from an array.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// `#[serde(deserialize_with = "crate::json::objects")]` on a `Vec<T>` of structs: each one
/// from an object.
pub fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<Object<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|Object(item)| item).collect())
}

/// Whole numbers from 0 to 2^63 - 1 (the document's `int64`, JetStream's range), written `5` or
/// `5.0`: `#[serde(deserialize_with =
/// "crate::json::whole::option")]` on an `Option` of `u64`, `usize` or `u32` (with
/// `#[serde(default)]`), `crate::json::whole::required` on the plain type.
pub mod whole {
    use super::{Deserialize, Deserializer, Unexpected, Visitor, de, fmt};

    /// 2^63, the first value past `i64::MAX` (exactly representable as an `f64`).
    const PAST_I64: f64 = 9_223_372_036_854_775_808.0;

    struct WholeVisitor;

    impl Visitor<'_> for WholeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number from 0 to 9223372036854775807")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
            if i64::try_from(value).is_ok() {
                Ok(value)
            } else {
                Err(E::invalid_value(Unexpected::Unsigned(value), &self))
            }
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
            u64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<u64, E> {
            if value.fract() == 0.0 && (0.0..PAST_I64).contains(&value) {
                // A whole value in 0..2^63: the conversion is exact.
                Ok(value as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(value), &self))
            }
        }
    }

    /// A whole number as a `u64`.
    struct Whole(u64);

    impl<'de> Deserialize<'de> for Whole {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_u64(WholeVisitor).map(Whole)
        }
    }

    fn narrow<T: TryFrom<u64>, E: de::Error>(value: u64) -> Result<T, E> {
        T::try_from(value)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &"a smaller number"))
    }

    pub fn required<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        narrow(Whole::deserialize(deserializer)?.0)
    }

    pub fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        Option::<Whole>::deserialize(deserializer)?
            .map(|Whole(value)| narrow(value))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Request {
        #[serde(default, deserialize_with = "whole::option")]
        keep: Option<u64>,
        #[serde(default, deserialize_with = "whole::option")]
        small: Option<u32>,
    }

    #[test]
    fn a_struct_comes_from_an_object_only() {
        let ok: Object<Request> = serde_json::from_str(r#"{"keep": 3}"#).unwrap();
        assert_eq!(ok.0.keep, Some(3));
        for bad in ["[null, null]", "[]", "null", "3", r#""x""#] {
            assert!(
                serde_json::from_str::<Object<Request>>(bad).is_err(),
                "{bad}"
            );
        }
        #[derive(Debug, serde::Deserialize)]
        struct List {
            #[serde(deserialize_with = "objects")]
            items: Vec<Request>,
        }
        let list: List = serde_json::from_str(r#"{"items": [{"keep": 1}]}"#).unwrap();
        assert_eq!(list.items[0].keep, Some(1));
        assert!(serde_json::from_str::<List>(r#"{"items": [[1, 2]]}"#).is_err());
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let read = |text: &str| serde_json::from_str::<Request>(text);
        assert_eq!(
            read(r#"{"keep": 980338869865.0}"#).unwrap().keep,
            Some(980_338_869_865)
        );
        assert_eq!(read(r#"{"keep": 7}"#).unwrap().keep, Some(7));
        assert_eq!(
            read(r#"{"keep": 9223372036854775807}"#).unwrap().keep,
            Some(i64::MAX as u64)
        );
        assert_eq!(read(r#"{"keep": null}"#).unwrap().keep, None);
        assert_eq!(read("{}").unwrap(), Request::default());
        for bad in [
            r#"{"keep": 1.5}"#,
            r#"{"keep": -1}"#,
            r#"{"keep": -1.0}"#,
            r#"{"keep": 1e20}"#,
            r#"{"keep": 9223372036854775808}"#,
            r#"{"keep": 9223372036854775808.0}"#,
            r#"{"keep": "1"}"#,
            r#"{"small": 4294967296}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
