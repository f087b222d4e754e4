//! etcd's v3 HTTP/JSON gateway (etcd ≥ 3.4, paths under `/v3/`): the requests the fleet sends and
//! what their answers mean. Pure: the caller dispatches `Request`s as callouts (POST, JSON) and
//! hands the answer bodies back here.
//!
//! The gateway speaks protobuf's JSON mapping: keys and values are base64, 64-bit integers
//! (revisions, lease ids, TTLs) are decimal strings, and fields at their default value are left
//! out — a transaction whose comparison failed has no `succeeded` at all. An answer without
//! etcd's `header` is not an answer, whatever else it holds: the caller must treat it as a
//! failure, never as "not succeeded".

use crate::json::{json, Value};

/// A request to the gateway: POST `path` with the JSON `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: &'static str,
    pub body: Vec<u8>,
}

/// One key-value pair of a range answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// The lease the key is attached to (0: none).
    pub lease: i64,
}

/// A condition of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare<'a> {
    /// The key exists (its version is above 0).
    Exists(&'a str),
    /// The key has never existed since it was last deleted (create revision 0).
    Absent(&'a str),
    /// The key was last written at this revision (0: it does not exist).
    ModRevision(&'a str, i64),
}

/// An operation of a transaction branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    Put {
        key: &'a str,
        value: &'a [u8],
        lease: Option<i64>,
    },
    Delete(&'a str),
    /// Reads one key; its pairs come back in [`Txn::ranges`].
    Get(&'a str),
}

/// The answer to a transaction: which branch ran, and what its `Get`s read, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub succeeded: bool,
    pub ranges: Vec<Vec<Kv>>,
    /// The store's revision after the transaction.
    pub revision: i64,
}

/// A range answer: the pairs and the store's revision when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub kvs: Vec<Kv>,
    pub revision: i64,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// Not JSON, or JSON without etcd's `header`.
    NotEtcd,
    /// etcd's own error (`{"error": ..., "code": ...}`), e.g. a lease that does not exist.
    Refused(String),
    /// A field that should be base64 or an integer is not.
    Malformed(&'static str),
}

fn b64(bytes: &[u8]) -> String {
    super::base64::encode(bytes)
}

fn request(path: &'static str, body: &Value) -> Request {
    Request {
        path,
        body: crate::json::write::to_vec(body),
    }
}

/// The end of the key range holding every key that starts with `prefix`: the prefix with its
/// last byte below 0xff incremented (etcd's convention; `\0` means "to the end").
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last.saturating_add(1));
            return end;
        }
    }
    vec![0]
}

/// Every key under `prefix`, with values.
pub fn range_prefix(prefix: &str) -> Request {
    let key = prefix.as_bytes();
    request(
        "/v3/kv/range",
        &json!({ "key": b64(key), "range_end": b64(&prefix_end(key)) }),
    )
}

/// A put of `key`, attached to `lease` when given (the body of `/v3/kv/put` and of a
/// transaction's `request_put`).
fn put_body(key: &str, value: &[u8], lease: Option<i64>) -> Value {
    let mut body = crate::json::Map::new();
    body.insert("key".into(), json!(b64(key.as_bytes())));
    body.insert("value".into(), json!(b64(value)));
    if let Some(id) = lease {
        body.insert("lease".into(), json!(id.to_string()));
    }
    Value::Object(body)
}

/// Writes `key` unconditionally, attached to `lease` when given.
pub fn put(key: &str, value: &[u8], lease: Option<i64>) -> Request {
    request("/v3/kv/put", &put_body(key, value, lease))
}

/// Creates `key` only if it has never existed (its create revision is 0): etcd decides, so of
/// any number of concurrent creators exactly one succeeds. Attached to `lease` when given.
pub fn create_once(key: &str, value: &[u8], lease: Option<i64>) -> Request {
    let k = b64(key.as_bytes());
    let put = put_body(key, value, lease);
    request(
        "/v3/kv/txn",
        &json!({
            "compare": [{ "key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": put }]
        }),
    )
}

fn compare_json(c: &Compare<'_>) -> Value {
    match c {
        Compare::Exists(key) => json!({
            "key": b64(key.as_bytes()), "target": "VERSION", "result": "GREATER", "version": "0"
        }),
        Compare::Absent(key) => json!({
            "key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"
        }),
        Compare::ModRevision(key, rev) => json!({
            "key": b64(key.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()
        }),
    }
}

fn op_json(op: &Op<'_>) -> Value {
    match op {
        Op::Put { key, value, lease } => json!({ "request_put": put_body(key, value, *lease) }),
        Op::Delete(key) => json!({ "request_delete_range": { "key": b64(key.as_bytes()) } }),
        Op::Get(key) => json!({ "request_range": { "key": b64(key.as_bytes()) } }),
    }
}

/// A transaction: when every comparison holds, `success` runs, else `failure`; atomically.
pub fn txn(compares: &[Compare<'_>], success: &[Op<'_>], failure: &[Op<'_>]) -> Request {
    // Loops rather than a `collect` per closure: less code.
    let mut compare = Vec::with_capacity(compares.len());
    for c in compares {
        compare.push(compare_json(c));
    }
    let ops = |ops: &[Op<'_>]| {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(op_json(op));
        }
        Value::Array(out)
    };
    let mut body = crate::json::Map::new();
    body.insert("compare".into(), Value::Array(compare));
    body.insert("success".into(), ops(success));
    body.insert("failure".into(), ops(failure));
    request("/v3/kv/txn", &Value::Object(body))
}

/// Logs in (`/v3/auth/authenticate`); the answer's token goes in the `authorization` header
/// of later requests.
pub fn authenticate(username: &str, password: &str) -> Request {
    request(
        "/v3/auth/authenticate",
        &json!({ "name": username, "password": password }),
    )
}

/// A lease that ends `ttl_seconds` from now (keys attached to it go with it).
pub fn lease_grant(ttl_seconds: u64) -> Request {
    request(
        "/v3/lease/grant",
        &json!({ "TTL": ttl_seconds.to_string() }),
    )
}

/// The parsed answer, once it is known to be etcd's and not an error.
fn answer(body: &[u8]) -> Result<Value, AnswerError> {
    let v = crate::json::read::from_slice(body).map_err(|_| AnswerError::NotEtcd)?;
    if let Some(e) = v.get("error").or_else(|| v.get("message")) {
        return Err(AnswerError::Refused(
            e.as_str().unwrap_or("unknown error").to_string(),
        ));
    }
    if v.get("header").is_none_or(|h| !h.is_object()) {
        return Err(AnswerError::NotEtcd);
    }
    Ok(v)
}

/// An int64 as the gateway writes it (a decimal string; a number is accepted too). Absent is 0.
fn int(v: Option<&Value>, field: &'static str) -> Result<i64, AnswerError> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| AnswerError::Malformed(field)),
        Some(Value::Number(n)) => n.as_i64().ok_or(AnswerError::Malformed(field)),
        Some(_) => Err(AnswerError::Malformed(field)),
    }
}

fn bytes(v: Option<&Value>, field: &'static str) -> Result<Vec<u8>, AnswerError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => super::base64::decode(s).ok_or(AnswerError::Malformed(field)),
        Some(_) => Err(AnswerError::Malformed(field)),
    }
}

fn kvs(v: &Value) -> Result<Vec<Kv>, AnswerError> {
    let mut kvs = Vec::new();
    if let Some(list) = v.get("kvs").and_then(Value::as_array) {
        for kv in list {
            kvs.push(Kv {
                key: bytes(kv.get("key"), "kvs.key")?,
                value: bytes(kv.get("value"), "kvs.value")?,
                mod_revision: int(kv.get("mod_revision"), "kvs.mod_revision")?,
                lease: int(kv.get("lease"), "kvs.lease")?,
            });
        }
    }
    Ok(kvs)
}

/// The answer to `range_prefix`.
pub fn parse_range(body: &[u8]) -> Result<Range, AnswerError> {
    let v = answer(body)?;
    let revision = int(v.pointer("/header/revision"), "header.revision")?;
    Ok(Range {
        kvs: kvs(&v)?,
        revision,
    })
}

/// The answer to `txn`.
pub fn parse_txn(body: &[u8]) -> Result<Txn, AnswerError> {
    let v = answer(body)?;
    let succeeded = match v.get("succeeded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(AnswerError::Malformed("succeeded")),
    };
    let mut ranges = Vec::new();
    for r in v
        .get("responses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(range) = r.get("response_range") {
            ranges.push(kvs(range)?);
        }
    }
    Ok(Txn {
        succeeded,
        ranges,
        revision: int(v.pointer("/header/revision"), "header.revision")?,
    })
}

/// The answer to `authenticate`: the token.
pub fn parse_token(body: &[u8]) -> Result<String, AnswerError> {
    match answer(body)?.get("token") {
        Some(Value::String(t)) if !t.is_empty() => Ok(t.clone()),
        _ => Err(AnswerError::Malformed("token")),
    }
}

/// The answer to `create_once`: whether this request created the key.
pub fn parse_created(body: &[u8]) -> Result<bool, AnswerError> {
    let v = answer(body)?;
    match v.get("succeeded") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(AnswerError::Malformed("succeeded")),
    }
}

/// The answer to `put`: the store's revision after the write.
pub fn parse_put(body: &[u8]) -> Result<i64, AnswerError> {
    int(answer(body)?.pointer("/header/revision"), "header.revision")
}

/// The answer to `lease_grant`: the lease id.
pub fn parse_lease(body: &[u8]) -> Result<i64, AnswerError> {
    let v = answer(body)?;
    match int(v.get("ID"), "ID")? {
        0 => Err(AnswerError::Malformed("ID")),
        id => Ok(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Request) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/ir/"), b"/ir0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn requests_are_base64_and_string_integers() {
        let r = range_prefix("/ir/");
        assert_eq!(r.path, "/v3/kv/range");
        assert_eq!(
            body(&r),
            json!({"key": "L2lyLw==", "range_end": "L2lyMA=="})
        );
        let p = put("k", b"v", Some(7));
        assert_eq!(
            body(&p),
            json!({"key": "aw==", "value": "dg==", "lease": "7"})
        );
        assert_eq!(body(&put("k", b"v", None)).get("lease"), None);
        let t = body(&create_once("k", b"", Some(9)));
        assert_eq!(t["compare"][0]["create_revision"], "0");
        assert_eq!(t["compare"][0]["target"], "CREATE");
        assert_eq!(t["success"][0]["request_put"]["lease"], "9");
        assert_eq!(body(&lease_grant(60)), json!({"TTL": "60"}));
    }

    #[test]
    fn answers() {
        let range = br#"{"header":{"revision":"12"},"kvs":[{"key":"aw==","value":"dg==","mod_revision":"11","lease":"5"}],"count":"1"}"#;
        assert_eq!(
            parse_range(range),
            Ok(Range {
                kvs: vec![Kv {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    mod_revision: 11,
                    lease: 5
                }],
                revision: 12
            })
        );
        assert_eq!(
            parse_range(br#"{"header":{"revision":"3"}}"#).map(|r| r.kvs.len()),
            Ok(0)
        );
        assert_eq!(
            parse_created(br#"{"header":{},"succeeded":true}"#),
            Ok(true)
        );
        // A failed comparison leaves `succeeded` out.
        assert_eq!(parse_created(br#"{"header":{"revision":"4"}}"#), Ok(false));
        assert_eq!(
            parse_lease(br#"{"header":{},"ID":"694d77aa9e38260f","TTL":"60"}"#),
            Err(AnswerError::Malformed("ID"))
        );
        assert_eq!(
            parse_lease(br#"{"header":{},"ID":"7587862225442113039","TTL":"60"}"#),
            Ok(7587862225442113039)
        );
        assert_eq!(parse_put(br#"{"header":{"revision":"9"}}"#), Ok(9));
    }

    #[test]
    fn what_is_not_an_answer_is_never_a_no() {
        for junk in [
            &b""[..],
            b"{}",
            b"null",
            b"[]",
            br#"{"succeeded":true}"#,
            b"<html>",
        ] {
            assert_eq!(parse_created(junk), Err(AnswerError::NotEtcd), "{junk:?}");
        }
        assert_eq!(
            parse_created(br#"{"error":"etcdserver: requested lease not found","code":5}"#),
            Err(AnswerError::Refused(
                "etcdserver: requested lease not found".into()
            ))
        );
        assert_eq!(
            parse_range(br#"{"header":{},"kvs":[{"key":"***"}]}"#),
            Err(AnswerError::Malformed("kvs.key"))
        );
        assert_eq!(
            parse_put(br#"{"header":{"revision":"x"}}"#),
            Err(AnswerError::Malformed("header.revision"))
        );
    }
}
