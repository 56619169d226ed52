//! Positions in the change log, `(commit seq, id)`: the order events are
//! delivered in (commit order, then the order of changes in a transaction);
//! and the signed form clients hold and send back as `after`.
//!
//! A cursor decides where a replay starts, so a client must not be able to
//! make one up: an unsigned position let anyone replay the whole log from
//! zero, or pass a position ahead of the log, after which every live event
//! looked already delivered. Cursors are therefore authenticated by the
//! server (HMAC-SHA256, key derived from the JWT secret), bound to the
//! change feed they came from ([`FeedIdentity`]: a cursor of another
//! database, or from before a restore, is refused) and to the viewer they
//! were issued to (another account's cursor is refused).
//!
//! A cursor works for the viewer it was issued to only: an account's for
//! that account, an anonymous one for anonymous subscribers. So a replay
//! never reaches back before the subscriber was there to take a cursor
//! (what it delivers is further filtered by what they may see now, see
//! `stream`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub seq: i64,
    pub id: i64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.id)
    }
}

/// Which change log a position belongs to: the database's feed epoch
/// (migration 000010; `api restore` renews it) and the database's oid (so
/// two databases copied from one template, which share an epoch, differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedIdentity {
    pub epoch: Uuid,
    pub database: i64,
}

/// The version byte of the cursor format, so the format can change later.
const VERSION: u8 = 1;
/// Bytes of the HMAC tag kept: 128 bits, as truncated HMACs commonly are.
const TAG: usize = 16;
/// version, seq, id, tag.
const ENCODED: usize = 1 + 8 + 8 + TAG;
/// Domain separation: the cursor key is not the token key, so a cursor tag
/// can never be used as (part of) a token signature or the other way round.
const KEY_PURPOSE: &[u8] = b"api/realtime-cursor-key/v1";

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies cursors. Cheap to clone: each key is kept as a MAC
/// already keyed and fed with the feed identity, cloned per cursor.
#[derive(Clone)]
pub struct CursorKeys {
    current: HmacSha256,
    /// From JWT_PREVIOUS_SECRET: cursors handed out before a key rotation
    /// keep working through it.
    previous: Option<HmacSha256>,
    identity: FeedIdentity,
}

impl CursorKeys {
    /// Keys for the feed `identity`, derived from the JWT secret(s).
    pub fn new(secret: &[u8], previous: Option<&[u8]>, identity: FeedIdentity) -> Self {
        Self { current: keyed(secret, identity), previous: previous.map(|p| keyed(p, identity)), identity }
    }

    /// The feed these keys sign for.
    pub fn identity(&self) -> FeedIdentity {
        self.identity
    }

    /// The opaque cursor for `at`, for `viewer` alone.
    pub fn sign(&self, viewer: &Viewer, at: Cursor) -> String {
        let mut bytes = [0_u8; ENCODED];
        bytes[0] = VERSION;
        bytes[1..9].copy_from_slice(&at.seq.to_be_bytes());
        bytes[9..17].copy_from_slice(&at.id.to_be_bytes());
        let tag = tag(&self.current, viewer.user_id(), at);
        bytes[17..].copy_from_slice(&tag[..TAG]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position of a cursor this feed issued to `viewer`. Text that is
    /// no cursor at all is BAD_USER_INPUT; a cursor that does not verify is
    /// CURSOR_INVALID.
    pub fn verify(&self, field: &'static str, viewer: &Viewer, text: &str) -> ApiResult<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).unwrap_or_default();
        if bytes.len() != ENCODED || bytes[0] != VERSION {
            if is_unsigned_cursor(&bytes) {
                return Err(cursor_invalid("it is an unsigned cursor of an older server version"));
            }
            return Err(ApiError::bad_input(field, format!("{field} is not a cursor from a change event")));
        }
        let at = Cursor { seq: i64_at(&bytes[1..9]), id: i64_at(&bytes[9..17]) };
        let given = &bytes[17..];
        for key in std::iter::once(&self.current).chain(self.previous.as_ref()) {
            let mut mac = key.clone();
            feed(&mut mac, viewer.user_id(), at);
            if mac.verify_truncated_left(given).is_ok() {
                return Ok(at);
            }
        }
        Err(cursor_invalid("it was not issued to you by this database's change feed"))
    }
}

/// The CURSOR_INVALID error, saying why and what to do.
pub fn cursor_invalid(why: &str) -> ApiError {
    ApiError::CursorInvalid(format!(
        "this cursor cannot be used: {why} (forged, another account's, another database's, or from before a restore); refetch, then subscribe without `after`"
    ))
}

/// A MAC keyed with the cursor key derived from `secret`, already fed with
/// the feed identity.
fn keyed(secret: &[u8], identity: FeedIdentity) -> HmacSha256 {
    let mut derive = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    derive.update(KEY_PURPOSE);
    let key = derive.finalize().into_bytes();
    let mut mac = HmacSha256::new_from_slice(&key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(&[VERSION]);
    mac.update(identity.epoch.as_bytes());
    mac.update(&identity.database.to_be_bytes());
    mac
}

/// The viewer (the nil id for the anonymous one) and the position.
fn feed(mac: &mut HmacSha256, owner: Option<Uuid>, at: Cursor) {
    mac.update(owner.unwrap_or(Uuid::nil()).as_bytes());
    mac.update(&at.seq.to_be_bytes());
    mac.update(&at.id.to_be_bytes());
}

fn tag(key: &HmacSha256, owner: Option<Uuid>, at: Cursor) -> [u8; 32] {
    let mut mac = key.clone();
    feed(&mut mac, owner, at);
    mac.finalize().into_bytes().into()
}

fn i64_at(bytes: &[u8]) -> i64 {
    let mut buf = [0_u8; 8];
    buf.copy_from_slice(bytes);
    i64::from_be_bytes(buf)
}

/// The format before cursors were signed, `c:<seq>:<id>`: refused with
/// CURSOR_INVALID (not BAD_USER_INPUT), so a client holding one refetches.
fn is_unsigned_cursor(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).ok().and_then(|s| s.strip_prefix("c:")).is_some_and(|rest| {
        let mut parts = rest.split(':');
        let number = |p: Option<&str>| p.is_some_and(|p| p.parse::<i64>().is_ok());
        number(parts.next()) && number(parts.next()) && parts.next().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    const SECRET: &[u8] = b"test-secret-test-secret-test-secret-0123";
    const AT: Cursor = Cursor { seq: 7, id: 90 };

    fn identity() -> FeedIdentity {
        FeedIdentity { epoch: Uuid::from_u128(1), database: 16384 }
    }

    fn user(n: u128) -> Viewer {
        Viewer::User { id: Uuid::from_u128(n), role: Role::User }
    }

    fn code(result: ApiResult<Cursor>) -> &'static str {
        result.err().map_or("OK", |e| e.code())
    }

    #[test]
    fn cursors_order_by_commit_first() {
        assert!(AT < Cursor { seq: 8, id: 3 }, "a later commit comes later whatever its row id");
    }

    #[test]
    fn a_signed_cursor_verifies_for_its_viewer_only() {
        let keys = CursorKeys::new(SECRET, None, identity());
        let mine = keys.sign(&user(1), AT);
        assert_eq!(keys.verify("after", &user(1), &mine).ok(), Some(AT));
        // The role is not part of it: a role change does not void cursors.
        let admin = Viewer::User { id: Uuid::from_u128(1), role: Role::Admin };
        assert_eq!(keys.verify("after", &admin, &mine).ok(), Some(AT));
        assert_eq!(code(keys.verify("after", &user(2), &mine)), "CURSOR_INVALID");
        assert_eq!(code(keys.verify("after", &Viewer::Anonymous, &mine)), "CURSOR_INVALID");
        let anonymous = keys.sign(&Viewer::Anonymous, AT);
        assert_eq!(keys.verify("after", &Viewer::Anonymous, &anonymous).ok(), Some(AT));
        assert_eq!(code(keys.verify("after", &user(1), &anonymous)), "CURSOR_INVALID");
    }

    #[test]
    fn a_cursor_of_another_feed_or_key_is_invalid_and_the_previous_key_still_verifies() {
        let keys = CursorKeys::new(SECRET, None, identity());
        let cursor = keys.sign(&user(1), AT);
        let restored = FeedIdentity { epoch: Uuid::from_u128(2), ..identity() };
        let copy = FeedIdentity { database: 16385, ..identity() };
        for other in [restored, copy] {
            assert_eq!(code(CursorKeys::new(SECRET, None, other).verify("after", &user(1), &cursor)), "CURSOR_INVALID");
        }
        let rotated = CursorKeys::new(b"a-new-secret-a-new-secret-a-new-secret", Some(SECRET), identity());
        assert_eq!(rotated.verify("after", &user(1), &cursor).ok(), Some(AT));
        let fresh = rotated.sign(&user(1), AT);
        assert_eq!(code(keys.verify("after", &user(1), &fresh)), "CURSOR_INVALID", "signed with the new key only");
    }

    #[test]
    fn tampering_forging_and_garbage_are_refused_with_their_own_codes() {
        let keys = CursorKeys::new(SECRET, None, identity());
        let mut bytes = URL_SAFE_NO_PAD.decode(keys.sign(&user(1), AT)).unwrap_or_default();
        bytes[8] ^= 1;
        assert_eq!(code(keys.verify("after", &user(1), &URL_SAFE_NO_PAD.encode(&bytes))), "CURSOR_INVALID");
        // The old unsigned `c:0:0`.
        assert_eq!(code(keys.verify("after", &user(1), "YzowOjA")), "CURSOR_INVALID");
        assert_eq!(code(keys.verify("after", &user(1), "bm9wZQ")), "BAD_USER_INPUT");
        assert_eq!(code(keys.verify("after", &user(1), "nonsense")), "BAD_USER_INPUT");
    }
}
