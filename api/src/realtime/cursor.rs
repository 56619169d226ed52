//! Positions in the change log: `(commit seq, id)`, the order events are
//! delivered in: commit order, then the order of changes in a transaction.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub seq: i64,
    pub id: i64,
}

impl Cursor {
    /// The opaque form clients hold and send back as `after`.
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("c:{}:{}", self.seq, self.id))
    }

    pub fn decode(field: &'static str, text: &str) -> ApiResult<Self> {
        URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|s| {
                let mut parts = s.strip_prefix("c:")?.split(':');
                let seq = parts.next()?.parse().ok()?;
                let id = parts.next()?.parse().ok()?;
                parts.next().is_none().then_some(Self { seq, id })
            })
            .ok_or_else(|| ApiError::bad_input(field, format!("{field} is not a cursor from a change event")))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_order_by_commit_first() {
        let a = Cursor { seq: 7, id: 90 };
        let b = Cursor { seq: 8, id: 3 };
        assert!(a < b, "a later commit comes later whatever its row id");
        assert_eq!(Cursor::decode("after", &a.encode()).ok(), Some(a));
        assert!(Cursor::decode("after", "bm9wZQ").is_err());
    }
}
