//! Automatic persisted queries, as Apollo Client, urql and Relay's
//! persisted-query links speak them: a client first sends only the SHA-256
//! of its document in `extensions.persistedQuery {version: 1, sha256Hash}`;
//! if the server does not know it, the answer is `PERSISTED_QUERY_NOT_FOUND`
//! and the client sends the document with its hash once, which the server
//! keeps. Later requests (GET ones too, which CDNs can cache, and
//! websocket `subscribe` messages, which share this store: `http::ws`)
//! carry 64 hex digits instead of the whole document.
//!
//! The documents are kept in memory, least recently used first out, within
//! a budget of bytes (PERSISTED_QUERY_CACHE_BYTES): an attacker can fill it
//! with documents of their own, which only costs other clients one more
//! round trip. A persisted document is executed exactly as if it had been
//! sent in full: it is put back into the request before anything reads it,
//! so the document guard (cost, depth, mutation fields), the request's
//! READ ONLY choice and GET's queries-only rule all see it.
//!
//! Not async-graphql's `apollo_persisted_queries` extension: it fills the
//! document in during `prepare_request`, after the server has already
//! chosen the transaction's access mode from the (empty) document and, as
//! extensions run in order, possibly after our guard has looked at nothing.

use std::sync::{Arc, Mutex};

use async_graphql::ServerError;
use sha2::{Digest, Sha256};

/// The key of a persisted document: its SHA-256.
type Hash = [u8; 32];

/// What a cached document costs in the budget beyond its text (the key,
/// the `Arc`, the LRU's links), so a flood of tiny documents is bounded too.
const ENTRY_OVERHEAD: usize = 96;

/// Persisted documents by hash, within a byte budget. Cheap to clone.
#[derive(Clone)]
pub struct PersistedQueries {
    inner: Option<Arc<Mutex<Cache>>>,
}

struct Cache {
    entries: lru::LruCache<Hash, Arc<str>>,
    bytes: usize,
    budget: usize,
}

impl PersistedQueries {
    /// A cache of at most `budget` bytes of documents; 0 turns persisted
    /// queries off (every such request gets PERSISTED_QUERY_NOT_SUPPORTED).
    pub fn new(budget: usize) -> Self {
        let inner =
            (budget > 0).then(|| Arc::new(Mutex::new(Cache { entries: lru::LruCache::unbounded(), bytes: 0, budget })));
        Self { inner }
    }

    fn get(&self, hash: &Hash) -> Option<Arc<str>> {
        let mut cache = self.inner.as_ref()?.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.entries.get(hash).cloned()
    }

    fn put(&self, hash: Hash, query: &str) {
        let Some(inner) = &self.inner else { return };
        let cost = query.len() + ENTRY_OVERHEAD;
        let mut cache = inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cost > cache.budget || cache.entries.contains(&hash) {
            return;
        }
        cache.entries.put(hash, Arc::from(query));
        cache.bytes += cost;
        while cache.bytes > cache.budget {
            let Some((_, old)) = cache.entries.pop_lru() else { break };
            cache.bytes -= old.len() + ENTRY_OVERHEAD;
        }
    }

    /// Completes `request` when it carries `extensions.persistedQuery`:
    /// fills in the document from the cache, or checks the sent document
    /// against its hash and keeps it. A request without the extension is
    /// left as it is.
    pub fn resolve(&self, request: &mut async_graphql::Request) -> Result<(), ServerError> {
        let Some(persisted) = request.extensions.get("persistedQuery") else {
            return Ok(());
        };
        let hash = parse(persisted)?;
        if self.inner.is_none() {
            return Err(coded(
                "persisted queries are turned off on this server: send the query",
                "PERSISTED_QUERY_NOT_SUPPORTED",
            ));
        }
        if request.query.is_empty() {
            // Apollo's clients look for this message as well as the code.
            let query = self.get(&hash).ok_or_else(|| coded("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND"))?;
            request.query = query.as_ref().to_owned();
            return Ok(());
        }
        if <[u8; 32]>::from(Sha256::digest(request.query.as_bytes())) != hash {
            return Err(bad_input("extensions.persistedQuery.sha256Hash is not the SHA-256 of `query`"));
        }
        self.put(hash, &request.query);
        Ok(())
    }
}

/// The hash of `{version: 1, sha256Hash: "<64 hex digits>"}`.
fn parse(persisted: &async_graphql::Value) -> Result<Hash, ServerError> {
    use async_graphql::Value;
    let Value::Object(fields) = persisted else {
        return Err(bad_input("extensions.persistedQuery must be an object {version: 1, sha256Hash}"));
    };
    match fields.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        _ => return Err(bad_input("extensions.persistedQuery.version must be 1 (the only version there is)")),
    }
    let Some(Value::String(hex)) = fields.get("sha256Hash") else {
        return Err(bad_input("extensions.persistedQuery.sha256Hash must be a string"));
    };
    decode_hex(hex).ok_or_else(|| bad_input("extensions.persistedQuery.sha256Hash must be 64 hexadecimal digits"))
}

fn decode_hex(hex: &str) -> Option<Hash> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut hash = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        hash[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(hash)
}

fn coded(message: &str, code: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error.extensions.get_or_insert_with(Default::default).set("code", code);
    error
}

fn bad_input(message: &str) -> ServerError {
    let mut error = coded(message, "BAD_USER_INPUT");
    if let Some(extensions) = error.extensions.as_mut() {
        extensions.set("field", "extensions.persistedQuery");
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(query: &str) -> String {
        Sha256::digest(query.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn request(query: &str, hash: &str) -> async_graphql::Request {
        let extensions = serde_json::json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
        let mut request = async_graphql::Request::new(query);
        request.extensions = serde_json::from_value(extensions).unwrap_or_else(|e| panic!("{e}"));
        request
    }

    fn code(error: &ServerError) -> String {
        match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(async_graphql::Value::String(code)) => code.clone(),
            other => panic!("no code: {other:?}"),
        }
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used_document_beyond_its_byte_budget() {
        let (a, b, c) = ("{ a }".repeat(20), "{ b }".repeat(20), "{ c }".repeat(20));
        let apq = PersistedQueries::new(2 * (100 + ENTRY_OVERHEAD));
        for query in [&a, &b] {
            apq.resolve(&mut request(query, &hash_of(query))).unwrap_or_else(|e| panic!("{e:?}"));
        }
        // `a` used last, so `b` goes when `c` comes.
        apq.resolve(&mut request("", &hash_of(&a))).unwrap_or_else(|e| panic!("{e:?}"));
        apq.resolve(&mut request(&c, &hash_of(&c))).unwrap_or_else(|e| panic!("{e:?}"));
        let mut again = request("", &hash_of(&a));
        apq.resolve(&mut again).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(again.query, a);
        let gone = apq.resolve(&mut request("", &hash_of(&b))).err().unwrap_or_else(|| panic!("b was kept"));
        assert_eq!(code(&gone), "PERSISTED_QUERY_NOT_FOUND");
    }

    #[test]
    fn a_malformed_persisted_query_extension_is_bad_user_input() {
        let apq = PersistedQueries::new(1024);
        for hash in ["", "zz", &"g".repeat(64), &"a".repeat(63)] {
            let err = apq.resolve(&mut request("", hash)).err().unwrap_or_else(|| panic!("{hash} accepted"));
            assert_eq!(code(&err), "BAD_USER_INPUT", "{hash}");
        }
        let err = apq.resolve(&mut request("{ a }", &"A".repeat(64))).err().unwrap_or_else(|| panic!("mismatch"));
        assert_eq!(code(&err), "BAD_USER_INPUT");
        let off = PersistedQueries::new(0).resolve(&mut request("", &"a".repeat(64))).err();
        assert_eq!(off.map(|e| code(&e)).as_deref(), Some("PERSISTED_QUERY_NOT_SUPPORTED"));
    }
}
