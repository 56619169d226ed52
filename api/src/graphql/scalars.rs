//! Scalars for values that GraphQL's built-in `Int` and `String` carry badly:
//! 64-bit integers (an `Int` is 32 bits, and JavaScript numbers lose
//! precision past 2^53) and calendar dates. Both follow what PostGraphile,
//! Hasura and pg_graphql clients already expect, so codegen maps them the same.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::NaiveDate;

/// A 64-bit signed integer, serialised as a decimal string (e.g. `"1000000000000"`)
/// so that JavaScript clients keep every digit. Input accepts the same string,
/// or for convenience an `Int` literal or JSON number that is a whole number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BigInt(pub i64);

#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => {
                s.trim().parse::<i64>().map(BigInt).map_err(|_| {
                    InputValueError::custom(format!("BigInt must be a whole number as a string, got {s:?}"))
                })
            }
            // A JSON number that is whole and in range; 1.5 or 1e30 is refused
            // rather than rounded.
            Value::Number(n) => n
                .as_i64()
                .map(BigInt)
                .ok_or_else(|| InputValueError::custom(format!("BigInt must be a whole 64-bit number, got {n}"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(_) | Value::Number(_))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// `From` both ways between a scalar and the value it wraps.
macro_rules! wraps {
    ($scalar:ident, $inner:ty) => {
        impl From<$inner> for $scalar {
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }

        impl From<$scalar> for $inner {
            fn from(value: $scalar) -> Self {
                value.0
            }
        }
    };
}

wraps!(BigInt, i64);

/// A calendar date without time zone, ISO 8601 `YYYY-MM-DD` (e.g. `"2026-11-27"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub NaiveDate);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("Date must be YYYY-MM-DD, got {s:?}"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(_))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

wraps!(Date, NaiveDate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_int_reads_strings_and_whole_numbers_and_writes_strings() {
        assert_eq!(BigInt::parse(Value::String("9007199254740993".into())).ok(), Some(BigInt(9_007_199_254_740_993)));
        assert_eq!(BigInt::parse(Value::from(42)).ok(), Some(BigInt(42)));
        assert_eq!(BigInt(i64::MAX).to_value(), Value::String(i64::MAX.to_string()));
        for bad in [Value::String("12a".into()), Value::String("1.5".into()), Value::from(1.5), Value::Boolean(true)] {
            assert!(BigInt::parse(bad).is_err());
        }
    }

    #[test]
    fn date_reads_and_writes_iso_days_only() {
        let day = NaiveDate::from_ymd_opt(2026, 2, 28).expect("a real day");
        assert_eq!(Date::parse(Value::String("2026-02-28".into())).ok(), Some(Date(day)));
        assert_eq!(Date(day).to_value(), Value::String("2026-02-28".into()));
        for bad in ["2026-02-30", "28/02/2026", "2026-02-28T00:00:00Z", ""] {
            assert!(Date::parse(Value::String(bad.into())).is_err(), "{bad}");
        }
    }
}
