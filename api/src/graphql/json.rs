//! A response's `data` written out as JSON, byte for byte as serde_json
//! writes it (a test holds the two together), for less work.
//!
//! serde_json checks every byte of every string against its escape table,
//! one at a time, and drives a map or a list through its serializer's
//! state: for a page of 20 rows that was 7 % of a request's instructions,
//! half of it in the escape check (issue 11). Here a string is checked 16
//! bytes at a time (~90 instructions for 40 bytes, where serde_json's check
//! took ~200) and, when nothing in it needs escaping (response keys, ids,
//! most text), copied as it is; a string that does need escaping, a
//! number and binary data are still written by serde_json, so their form
//! is its form. Objects and lists are written directly.
//!
//! Depth: a response is as deep as its document, which the guard bounds
//! (`MAX_QUERY_DEPTH`) before anything runs, plus the depth of any JSON
//! value a field returns as a scalar (a `Json` field): this recurses
//! exactly as deep as serde_json did.
//!
//! What would make the two differ, and is not the case here: async-graphql's
//! `raw_value` feature (off in this workspace), with which serde_json writes
//! an object of its one raw-value key as raw JSON; and a field added to
//! `Response` (it is `#[non_exhaustive]`), which [`write_response`] would
//! leave out. The tests compare both writers under this build's features.

use async_graphql::Value;

/// A response as serde_json writes async-graphql's `Response`: `data`,
/// then `extensions` and `errors` where there are any.
pub fn write_response(out: &mut Vec<u8>, response: &async_graphql::Response) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"data\":");
    write_value(out, &response.data)?;
    if !response.extensions.is_empty() {
        out.extend_from_slice(b",\"extensions\":");
        serde_json::to_writer(&mut *out, &response.extensions)?;
    }
    if !response.errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut *out, &response.errors)?;
    }
    out.push(b'}');
    Ok(())
}

/// `value` as serde_json writes it.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::String(text) => write_str(out, text)?,
        Value::Enum(name) => write_str(out, name)?,
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (key, field)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key)?;
                out.push(b':');
                write_value(out, field)?;
            }
            out.push(b'}');
        }
        Value::Number(_) | Value::Binary(_) => serde_json::to_writer(&mut *out, value)?,
    }
    Ok(())
}

/// `text` as a JSON string, as serde_json writes it.
pub fn write_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if !needs_escaping(text) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    serde_json::to_writer(&mut *out, text)
}

/// Whether serde_json would escape a byte of `text`: a control character,
/// a quote or a backslash (it leaves DEL and non-ASCII as they are).
/// Checked 16 bytes at a time, the last 16 overlapping the chunk before
/// them (a string shorter than that, such as most keys, byte by byte).
fn needs_escaping(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some(last) = bytes.last_chunk::<16>() else { return bytes.iter().copied().any(escaped) };
    let (chunks, _) = bytes.as_chunks::<16>();
    chunks.iter().any(any_escaped) || any_escaped(last)
}

/// Folded without an early exit, which the compiler turns into a few
/// vector instructions for the 16 bytes.
fn any_escaped(chunk: &[u8; 16]) -> bool {
    chunk.iter().fold(false, |any, &b| any | escaped(b))
}

fn escaped(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

#[cfg(test)]
mod tests {
    use async_graphql::indexmap::IndexMap;
    use async_graphql::{Name, Response, ServerError};

    use super::*;

    fn serde(value: &Value) -> String {
        serde_json::to_string(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ours(value: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, value).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every character below 0x80 and a few above, alone and inside
    /// strings of lengths around the 16-byte chunks.
    fn strings() -> Vec<String> {
        let mut strings: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        strings.extend(["", "é", "日本", "😀", "\u{2028}", "a\u{7f}b", "plain words"].map(String::from));
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', 'é', 'x'] {
            for len in [14, 15, 16, 17, 31, 32, 33] {
                for at in [0, len / 2, len - 1] {
                    let mut text: Vec<char> = std::iter::repeat_n('a', len).collect();
                    text[at] = special;
                    strings.push(text.into_iter().collect());
                }
            }
        }
        strings
    }

    #[test]
    fn a_value_is_written_as_serde_json_writes_it() {
        let mut values: Vec<Value> = strings().into_iter().map(Value::String).collect();
        values.extend([
            Value::Null,
            Value::Boolean(true),
            Value::Boolean(false),
            Value::Enum(Name::new("RATING_DESC")),
            Value::Binary(vec![0, 1, 255].into()),
            Value::List(Vec::new()),
            Value::Object(IndexMap::new()),
        ]);
        for number in [serde_json::json!(0), serde_json::json!(-7), serde_json::json!(u64::MAX)] {
            values.push(Value::from_json(number).unwrap_or_else(|e| panic!("{e}")));
        }
        for float in [0.0, -0.0, 4.5, 1e-7, 1e21, f64::MAX, f64::MIN_POSITIVE, 0.1 + 0.2] {
            values.push(Value::from(float));
        }
        // Keys that need escaping, nesting, lists of objects.
        let nested: IndexMap<Name, Value> = strings()
            .into_iter()
            .map(|key| (Name::new(&key), Value::List(vec![Value::String(key), Value::Null, Value::from(1.5)])))
            .collect();
        values.push(Value::List(vec![Value::Object(nested.clone()), Value::Object(nested)]));
        for value in &values {
            assert_eq!(ours(value), serde(value), "{value:?}");
        }
    }

    #[test]
    fn a_response_is_written_as_serde_json_writes_it_with_its_errors_and_extensions() {
        let mut data = IndexMap::new();
        data.insert(Name::new("places"), Value::List(vec![Value::String("Café \"Zoë\"".into())]));
        let mut response = Response::new(Value::Object(data));
        let check = |response: &Response| {
            let mut out = Vec::new();
            write_response(&mut out, response).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                String::from_utf8(out).unwrap_or_else(|e| panic!("{e}")),
                serde_json::to_string(response).unwrap_or_else(|e| panic!("{e}"))
            );
        };
        check(&response);
        response.errors.push(ServerError::new("no \"such\" place", None));
        check(&response);
        response.extensions.insert("cost".into(), Value::from(12));
        check(&response);
        check(&Response::default());
    }
}
