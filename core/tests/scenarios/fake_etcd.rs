//! An in-memory etcd answering the v3 JSON gateway as the real one does (checked by
//! integration/tests/fleet_etcd.rs and the fleet e2e suite): base64 keys and values, int64s
//! as strings, fields at their defaults left out. It can be down (Envoy's "no healthy
//! upstream"), lose answers after applying them (Envoy's timeout), and require a login.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use inference_router_core::testing::Dispatched;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    create: i64,
    modified: i64,
    version: i64,
    lease: i64,
}

#[derive(Default)]
pub struct FakeEtcd {
    kvs: BTreeMap<Vec<u8>, Entry>,
    revision: i64,
    /// Lease id → Unix second it ends.
    leases: BTreeMap<i64, u64>,
    next_lease: i64,
    /// Answer like Envoy with no healthy member.
    pub down: bool,
    /// Apply the next this many requests, then lose their answers (Envoy's timeout).
    pub lose_answers: usize,
    /// `(user, password)` when auth is on; tokens handed out.
    auth: Option<(String, String)>,
    tokens: BTreeSet<String>,
    pub requests: u64,
}

pub type Answer = (Vec<(&'static str, &'static str)>, Vec<u8>);

const OK: [(&str, &str); 2] = [(":status", "200"), ("content-type", "application/json")];

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap_or("")).unwrap()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_i64().unwrap(),
        _ => 0,
    }
}

fn error(status: &'static str, message: &str, code: i64) -> Answer {
    (
        vec![(":status", status), ("content-type", "application/json")],
        serde_json::to_vec(&json!({ "error": message, "message": message, "code": code })).unwrap(),
    )
}

impl FakeEtcd {
    pub fn new() -> Self {
        FakeEtcd {
            next_lease: 7_000,
            ..FakeEtcd::default()
        }
    }

    pub fn require_login(&mut self, user: &str, password: &str) {
        self.auth = Some((user.into(), password.into()));
    }

    /// Ends leases (and their keys) whose time is up.
    pub fn expire(&mut self, now_s: u64) {
        let gone: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, end)| **end <= now_s)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.leases.remove(&id);
            self.kvs.retain(|_, e| e.lease != id);
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.kvs
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.kvs.get(key.as_bytes()).map(|e| e.value.clone())
    }

    pub fn delete(&mut self, key: &str) {
        self.revision += 1;
        self.kvs.remove(key.as_bytes());
    }

    pub fn put_raw(&mut self, key: &str, value: &[u8]) {
        self.put(key.as_bytes().to_vec(), value.to_vec(), 0);
    }

    fn header(&self) -> Value {
        json!({ "cluster_id": "1", "member_id": "2", "revision": self.revision.to_string(), "raft_term": "2" })
    }

    /// The answer to a dispatched callout (to cluster `etcd`).
    pub fn answer(&mut self, d: &Dispatched, now_s: u64) -> Answer {
        assert_eq!(d.cluster, "etcd", "{d:?}");
        self.requests += 1;
        if self.down {
            return (
                vec![(":status", "503"), ("content-type", "text/plain")],
                b"no healthy upstream".to_vec(),
            );
        }
        let path = d.header(":path").unwrap_or_default().to_string();
        let body: Value = serde_json::from_slice(&d.body).unwrap();
        if let Some((user, password)) = self.auth.clone() {
            if path == "/v3/auth/authenticate" {
                return if body["name"] == user.as_str() && body["password"] == password.as_str() {
                    let token = format!("token-{}", self.tokens.len());
                    self.tokens.insert(token.clone());
                    (
                        OK.to_vec(),
                        serde_json::to_vec(&json!({ "header": self.header(), "token": token }))
                            .unwrap(),
                    )
                } else {
                    error(
                        "400",
                        "etcdserver: authentication failed, invalid user ID or password",
                        3,
                    )
                };
            }
            match d.header("authorization") {
                None => return error("400", "etcdserver: user name is empty", 3),
                Some(t) if !self.tokens.contains(t) => {
                    return error("401", "etcdserver: invalid auth token", 16)
                }
                _ => {}
            }
        }
        let answer = match path.as_str() {
            "/v3/kv/range" => Ok(self.range(&body)),
            "/v3/kv/put" => {
                self.put(
                    unb64(&body["key"]),
                    unb64(&body["value"]),
                    int(&body["lease"]),
                );
                Ok(json!({ "header": self.header() }))
            }
            "/v3/kv/txn" => self.txn(&body),
            "/v3/lease/grant" => {
                self.next_lease += 1;
                let ttl = int(&body["TTL"]) as u64;
                self.leases.insert(self.next_lease, now_s + ttl);
                Ok(
                    json!({ "header": self.header(), "ID": self.next_lease.to_string(), "TTL": ttl.to_string() }),
                )
            }
            other => panic!("the fake etcd does not know {other}"),
        };
        let answer = match answer {
            Ok(v) => (OK.to_vec(), serde_json::to_vec(&v).unwrap()),
            Err(e) => e,
        };
        if self.lose_answers > 0 {
            self.lose_answers -= 1;
            return (
                vec![(":status", "504"), ("content-type", "text/plain")],
                b"upstream request timeout".to_vec(),
            );
        }
        answer
    }

    fn kv_json(k: &[u8], e: &Entry) -> Value {
        let mut kv = json!({
            "key": b64(k), "create_revision": e.create.to_string(), "mod_revision": e.modified.to_string(),
            "version": e.version.to_string(), "value": b64(&e.value)
        });
        if e.lease != 0 {
            kv["lease"] = json!(e.lease.to_string());
        }
        kv
    }

    fn range(&self, body: &Value) -> Value {
        let key = unb64(&body["key"]);
        let kvs: Vec<Value> = match body.get("range_end") {
            None => self
                .kvs
                .get(&key)
                .map(|e| vec![Self::kv_json(&key, e)])
                .unwrap_or_default(),
            Some(end) => {
                let end = unb64(end);
                self.kvs
                    .iter()
                    .filter(|(k, _)| **k >= key && (end == [0] || **k < end))
                    .map(|(k, e)| Self::kv_json(k, e))
                    .collect()
            }
        };
        let mut v = json!({ "header": self.header() });
        if !kvs.is_empty() {
            v["count"] = json!(kvs.len().to_string());
            v["kvs"] = json!(kvs);
        }
        v
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>, lease: i64) {
        self.revision += 1;
        let rev = self.revision;
        let e = self.kvs.entry(key).or_insert(Entry {
            value: Vec::new(),
            create: rev,
            modified: rev,
            version: 0,
            lease,
        });
        e.value = value;
        e.modified = rev;
        e.version += 1;
        e.lease = lease;
    }

    fn holds(&self, c: &Value) -> bool {
        let key = unb64(&c["key"]);
        let e = self.kvs.get(&key);
        let (actual, wanted) = match c["target"].as_str().unwrap() {
            "CREATE" => (e.map_or(0, |e| e.create), int(&c["create_revision"])),
            "MOD" => (e.map_or(0, |e| e.modified), int(&c["mod_revision"])),
            "VERSION" => (e.map_or(0, |e| e.version), int(&c["version"])),
            t => panic!("compare target {t}"),
        };
        match c["result"].as_str().unwrap_or("EQUAL") {
            "EQUAL" => actual == wanted,
            "GREATER" => actual > wanted,
            r => panic!("compare result {r}"),
        }
    }

    fn txn(&mut self, body: &Value) -> Result<Value, Answer> {
        let compares = body["compare"].as_array().cloned().unwrap_or_default();
        let succeeded = compares.iter().all(|c| self.holds(c));
        let ops = body[if succeeded { "success" } else { "failure" }]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Leases are checked before anything is applied, as etcd does.
        for op in &ops {
            if let Some(put) = op.get("request_put") {
                let lease = int(&put["lease"]);
                if lease != 0 && !self.leases.contains_key(&lease) {
                    return Err(error("404", "etcdserver: requested lease not found", 5));
                }
            }
        }
        let mut responses = Vec::new();
        for op in ops {
            if let Some(put) = op.get("request_put") {
                self.put(unb64(&put["key"]), unb64(&put["value"]), int(&put["lease"]));
                responses.push(json!({ "response_put": { "header": self.header() } }));
            } else if let Some(del) = op.get("request_delete_range") {
                let key = unb64(&del["key"]);
                self.revision += 1;
                let deleted = u8::from(self.kvs.remove(&key).is_some());
                responses.push(json!({ "response_delete_range": { "header": self.header(), "deleted": deleted.to_string() } }));
            } else if let Some(range) = op.get("request_range") {
                responses.push(json!({ "response_range": self.range(range) }));
            }
        }
        let mut v = json!({ "header": self.header(), "responses": responses });
        if succeeded {
            v["succeeded"] = json!(true);
        }
        Ok(v)
    }
}
