//! etcd's v3 HTTP/JSON gateway (etcd ≥ 3.4, paths under `/v3/`): the requests the fleet sends and
//! what their answers mean. Pure: the caller dispatches `Request`s as callouts (POST, JSON) and
//! hands the answer bodies back here.
//!
//! The gateway speaks protobuf's JSON mapping: keys and values are base64, 64-bit integers
//! (revisions, lease ids, TTLs) are decimal strings, and fields at their default value are left
//! out — a transaction whose comparison failed has no `succeeded` at all. An answer without
//! etcd's `header` is not an answer, whatever else it holds: the caller must treat it as a
//! failure, never as "not succeeded".

#[cfg(test)]
use crate::json::json;
use crate::json::write::string;
use crate::json::{ObjectWriter, ToJson, Value};

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

// Bodies are written straight to bytes, fields in key order: the order the gateway got when
// they were built as `json::Value` objects (maps sorted by key), without building one.

/// A field's value: text (JSON-escaped), or bytes written as base64 (which needs no escaping).
#[derive(Clone, Copy)]
enum Field<'a> {
    Text(&'a str),
    Base64(&'a [u8]),
}

impl ToJson for Field<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Field::Text(text) => string(out, text),
            Field::Base64(bytes) => {
                out.push(b'"');
                out.extend_from_slice(super::base64::encode(bytes).as_bytes());
                out.push(b'"');
            }
        }
    }
}

/// `{"a":…,"b":…}`: the fields in the order given.
fn object(out: &mut Vec<u8>, fields: &[(&str, Field<'_>)]) {
    let mut o = ObjectWriter::new(out);
    for (name, value) in fields {
        o.field(name, value);
    }
    o.end();
}

fn request(path: &'static str, fields: &[(&str, Field<'_>)]) -> Request {
    let mut body = Vec::new();
    object(&mut body, fields);
    Request { path, body }
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
        &[
            ("key", Field::Base64(key)),
            ("range_end", Field::Base64(&prefix_end(key))),
        ],
    )
}

/// A put of `key`, attached to `lease` when given (the body of `/v3/kv/put` and of a
/// transaction's `request_put`).
fn put_body(out: &mut Vec<u8>, key: &str, value: &[u8], lease: Option<i64>) {
    let (key, value) = (Field::Base64(key.as_bytes()), Field::Base64(value));
    match lease {
        Some(id) => object(
            out,
            &[
                ("key", key),
                ("lease", Field::Text(&id.to_string())),
                ("value", value),
            ],
        ),
        None => object(out, &[("key", key), ("value", value)]),
    }
}

/// Writes `key` unconditionally, attached to `lease` when given.
pub fn put(key: &str, value: &[u8], lease: Option<i64>) -> Request {
    let mut body = Vec::new();
    put_body(&mut body, key, value, lease);
    Request {
        path: "/v3/kv/put",
        body,
    }
}

/// Creates `key` only if it has never existed (its create revision is 0): etcd decides, so of
/// any number of concurrent creators exactly one succeeds. Attached to `lease` when given.
pub fn create_once(key: &str, value: &[u8], lease: Option<i64>) -> Request {
    let put = Op::Put { key, value, lease };
    let mut body = Vec::new();
    let mut o = ObjectWriter::new(&mut body);
    o.field("compare", &[Compare::Absent(key)]);
    o.field("success", &[put]);
    o.end();
    Request {
        path: "/v3/kv/txn",
        body,
    }
}

impl ToJson for Compare<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let text = Field::Text;
        match self {
            Compare::Exists(key) => object(
                out,
                &[
                    ("key", Field::Base64(key.as_bytes())),
                    ("result", text("GREATER")),
                    ("target", text("VERSION")),
                    ("version", text("0")),
                ],
            ),
            Compare::Absent(key) => object(
                out,
                &[
                    ("create_revision", text("0")),
                    ("key", Field::Base64(key.as_bytes())),
                    ("result", text("EQUAL")),
                    ("target", text("CREATE")),
                ],
            ),
            Compare::ModRevision(key, rev) => object(
                out,
                &[
                    ("key", Field::Base64(key.as_bytes())),
                    ("mod_revision", text(&rev.to_string())),
                    ("result", text("EQUAL")),
                    ("target", text("MOD")),
                ],
            ),
        }
    }
}

impl ToJson for Op<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let (name, key) = match self {
            Op::Put { key, value, lease } => {
                out.extend_from_slice(b"{\"request_put\":");
                put_body(out, key, value, *lease);
                out.push(b'}');
                return;
            }
            Op::Delete(key) => ("request_delete_range", key),
            Op::Get(key) => ("request_range", key),
        };
        out.push(b'{');
        string(out, name);
        out.push(b':');
        object(out, &[("key", Field::Base64(key.as_bytes()))]);
        out.push(b'}');
    }
}

/// A transaction: when every comparison holds, `success` runs, else `failure`; atomically.
pub fn txn(compares: &[Compare<'_>], success: &[Op<'_>], failure: &[Op<'_>]) -> Request {
    let mut body = Vec::new();
    let mut o = ObjectWriter::new(&mut body);
    o.field("compare", compares);
    o.field("failure", failure);
    o.field("success", success);
    o.end();
    Request {
        path: "/v3/kv/txn",
        body,
    }
}

/// Logs in (`/v3/auth/authenticate`); the answer's token goes in the `authorization` header
/// of later requests.
pub fn authenticate(username: &str, password: &str) -> Request {
    request(
        "/v3/auth/authenticate",
        &[
            ("name", Field::Text(username)),
            ("password", Field::Text(password)),
        ],
    )
}

/// A lease that ends `ttl_seconds` from now (keys attached to it go with it).
pub fn lease_grant(ttl_seconds: u64) -> Request {
    request(
        "/v3/lease/grant",
        &[("TTL", Field::Text(&ttl_seconds.to_string()))],
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

    /// The bodies as they were written from `json::Value`s (maps in key order), byte for byte.
    #[test]
    fn bodies_are_the_bytes_value_objects_wrote() {
        let bytes = |v: Value| crate::json::write::to_vec(&v);
        assert_eq!(
            range_prefix("/ir/").body,
            bytes(json!({"key": "L2lyLw==", "range_end": "L2lyMA=="}))
        );
        assert_eq!(
            put("k", b"v", Some(-7)).body,
            bytes(json!({"key": "aw==", "value": "dg==", "lease": "-7"}))
        );
        assert_eq!(
            put("k", b"", None).body,
            bytes(json!({"key": "aw==", "value": ""}))
        );
        let put_k = json!({"key": "aw==", "value": "dg==", "lease": "9"});
        let absent =
            json!({"key": "aw==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"});
        assert_eq!(
            create_once("k", b"v", Some(9)).body,
            bytes(
                json!({"compare": [absent.clone()], "success": [{"request_put": put_k.clone()}]})
            )
        );
        let t = txn(
            &[
                Compare::Exists("k"),
                Compare::Absent("k"),
                Compare::ModRevision("k", 42),
            ],
            &[
                Op::Put {
                    key: "k",
                    value: b"v",
                    lease: Some(9),
                },
                Op::Delete("k"),
            ],
            &[Op::Get("k")],
        );
        assert_eq!(
            t.body,
            bytes(json!({
                "compare": [
                    {"key": "aw==", "target": "VERSION", "result": "GREATER", "version": "0"},
                    absent,
                    {"key": "aw==", "target": "MOD", "result": "EQUAL", "mod_revision": "42"}
                ],
                "success": [{"request_put": put_k}, {"request_delete_range": {"key": "aw=="}}],
                "failure": [{"request_range": {"key": "aw=="}}]
            }))
        );
        assert_eq!(
            txn(&[], &[], &[]).body,
            bytes(json!({"compare": [], "success": [], "failure": []}))
        );
        assert_eq!(
            authenticate("u\"1", "p").body,
            bytes(json!({"name": "u\"1", "password": "p"}))
        );
        assert_eq!(lease_grant(60).body, bytes(json!({"TTL": "60"})));
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
