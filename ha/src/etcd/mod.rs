//! An etcd v3 client over etcd's gRPC gateway (JSON on HTTP/1.1, the
//! `/v3/...` paths every etcd 3.4+ member serves on its client URL): the
//! few calls the election and the vote store need (range, txn, lease
//! grant / keep-alive / revoke / time-to-live, authenticate). Endpoints are
//! tried in turn; a member that cannot be reached moves the client to the
//! next one. With user and password, a token is obtained and renewed when
//! etcd reports it invalid.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::error::{HaError, Result};
use crate::http::{connector, Endpoint, TlsFiles, Transport};

/// How to reach etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `https://10.0.0.1:2379`.
    pub endpoints: Vec<String>,
    pub tls: TlsFiles,
    /// User and password, when etcd has auth enabled.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Bound of every request (connection and TLS handshake included).
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            tls: TlsFiles::default(),
            user: None,
            password: None,
            request_timeout: Duration::from_secs(1),
        }
    }
}

/// A key-value pair as etcd returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// A comparison of a transaction (always "equal").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's create revision equals the value (0: the key is absent).
    CreateRevision(Vec<u8>, i64),
    /// The key's value equals the bytes.
    Value(Vec<u8>, Vec<u8>),
}

/// An operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Get {
        key: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
}

/// The result of one transaction operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnResult {
    Put,
    Get(Vec<Kv>),
    Delete(i64),
}

/// A transaction's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store revision after the transaction (the revision of its
    /// writes when it wrote).
    pub revision: i64,
    pub results: Vec<TxnResult>,
}

/// A range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<Kv>,
    pub more: bool,
    pub revision: i64,
}

/// The client.
pub struct Etcd {
    transports: Vec<Transport>,
    current: AtomicUsize,
    user: Option<(String, String)>,
    token: Mutex<Option<String>>,
    timeout: Duration,
    /// Requests that failed (for status and metrics).
    errors: AtomicU64,
}

fn b64(v: &[u8]) -> String {
    B64.encode(v)
}

/// The key just after every key that starts with `prefix` (etcd's
/// `range_end` for a prefix read).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(*n))
}

fn int(v: &Value, names: &[&str]) -> i64 {
    match field(v, names) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// Why a JSON answer of the gateway does not have the expected shape.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum ShapeError {
    /// A bytes field is not a string.
    NotAString(&'static str),
    /// A bytes field is not valid base64.
    BadBase64(&'static str, base64::DecodeError),
    /// `kvs` is not a list.
    KvsNotAList,
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShapeError::NotAString(name) => write!(f, "{name} is not a string"),
            ShapeError::BadBase64(name, e) => write!(f, "{name}: {e}"),
            ShapeError::KvsNotAList => f.write_str("kvs is not a list"),
        }
    }
}

fn bytes(v: &Value, name: &'static str) -> std::result::Result<Vec<u8>, ShapeError> {
    match v.get(name) {
        Some(Value::String(s)) => B64.decode(s).map_err(|e| ShapeError::BadBase64(name, e)),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err(ShapeError::NotAString(name)),
    }
}

fn kvs(v: &Value) -> std::result::Result<Vec<Kv>, ShapeError> {
    let Some(list) = v.get("kvs") else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or(ShapeError::KvsNotAList)?;
    list.iter()
        .map(|kv| {
            Ok(Kv {
                key: bytes(kv, "key")?,
                value: bytes(kv, "value")?,
                create_revision: int(kv, &["create_revision", "createRevision"]),
                mod_revision: int(kv, &["mod_revision", "modRevision"]),
                version: int(kv, &["version"]),
                lease: int(kv, &["lease"]),
            })
        })
        .collect()
}

fn header_revision(v: &Value) -> i64 {
    v.get("header").map_or(0, |h| int(h, &["revision"]))
}

impl Etcd {
    /// A client for the configured endpoints; nothing is contacted yet.
    pub fn new(cfg: &EtcdConfig) -> Result<Etcd> {
        if cfg.endpoints.is_empty() {
            return Err(HaError::InvalidConfig {
                field: "endpoints",
                problem: "is empty: list at least one etcd client URL".into(),
            });
        }
        let eps = cfg
            .endpoints
            .iter()
            .map(|e| Endpoint::parse(e))
            .collect::<Result<Vec<_>>>()?;
        let tls = if eps.iter().any(|e| e.tls) {
            Some(connector(&cfg.tls)?)
        } else {
            None
        };
        let user = match (&cfg.user, &cfg.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(HaError::InvalidConfig {
                    field: "user/password",
                    problem: "must be given together".into(),
                })
            }
        };
        Ok(Etcd {
            transports: eps
                .into_iter()
                .map(|e| Transport::new(e, tls.clone()))
                .collect(),
            current: AtomicUsize::new(0),
            user,
            token: Mutex::new(None),
            timeout: cfg.request_timeout,
            errors: AtomicU64::new(0),
        })
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Requests that failed since the client was made.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Counts a failure seen outside [`Etcd::call`] (a caller's own timeout).
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    async fn post_one(
        &self,
        t: &Transport,
        op: &'static str,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> Result<Value> {
        let resp = t.post(op, path, body, token, self.timeout).await?;
        let ep = &t.endpoint.text;
        if resp.status != 200 && serde_json::from_slice::<Value>(&resp.body).is_err() {
            return Err(HaError::Gateway {
                endpoint: ep.clone(),
                op,
                status: resp.status,
                body: String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)])
                    .trim()
                    .to_string(),
            });
        }
        let v: Value = serde_json::from_slice(&resp.body).map_err(|e| HaError::Protocol {
            endpoint: ep.clone(),
            op,
            reason: format!(
                "HTTP {} with a body that is not JSON ({e}): {:?}",
                resp.status,
                String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
            ),
        })?;
        if resp.status != 200 || v.get("error").is_some() {
            // gateway errors: {"error": "...", "code": N, "message": "..."};
            // streams wrap them as {"error": {...}}
            let e = match v.get("error") {
                Some(inner @ Value::Object(_)) => inner,
                _ => &v,
            };
            let message = field(e, &["message", "error"])
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_string();
            return Err(HaError::Etcd {
                op,
                code: int(e, &["code", "grpc_code"]) as i32,
                message,
            });
        }
        Ok(v)
    }

    async fn authenticate(&self, t: &Transport) -> Result<String> {
        let (user, password) = self.user.as_ref().expect("auth configured");
        let body = json!({ "name": user, "password": password }).to_string();
        match self
            .post_one(
                t,
                "authenticate",
                "/v3/auth/authenticate",
                body.as_bytes(),
                None,
            )
            .await
        {
            Ok(v) => v
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| HaError::Auth {
                    user: user.clone(),
                    message: "no token in the answer (is auth enabled in etcd?)".into(),
                }),
            Err(HaError::Etcd { message, .. }) => Err(HaError::Auth {
                user: user.clone(),
                message,
            }),
            Err(e) => Err(e),
        }
    }

    async fn call_on(
        &self,
        t: &Transport,
        op: &'static str,
        path: &str,
        body: &[u8],
    ) -> Result<Value> {
        if self.user.is_none() {
            return self.post_one(t, op, path, body, None).await;
        }
        let mut token = self.token.lock().await.clone();
        if token.is_none() {
            let tk = self.authenticate(t).await?;
            *self.token.lock().await = Some(tk.clone());
            token = Some(tk);
        }
        match self.post_one(t, op, path, body, token.as_deref()).await {
            // gRPC status UNAUTHENTICATED: the token expired or etcd restarted
            Err(HaError::Etcd { code: 16, .. }) => {
                let tk = self.authenticate(t).await?;
                *self.token.lock().await = Some(tk.clone());
                self.post_one(t, op, path, body, Some(&tk)).await
            }
            r => r,
        }
    }

    /// Sends one request, moving through the endpoints while they cannot
    /// be reached; each endpoint is tried once.
    pub async fn call(&self, op: &'static str, path: &str, body: &Value) -> Result<Value> {
        let r = self.call_endpoints(op, path, body).await;
        if r.is_err() {
            self.count_error();
        }
        r
    }

    async fn call_endpoints(&self, op: &'static str, path: &str, body: &Value) -> Result<Value> {
        let body = body.to_string();
        let n = self.transports.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            match self
                .call_on(&self.transports[idx], op, path, body.as_bytes())
                .await
            {
                Ok(v) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if e.is_unavailable() => errors.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        self.current.store((start + 1) % n, Ordering::Relaxed);
        Err(HaError::Unavailable { errors })
    }

    /// Reads `key`, or every key in `[key, range_end)`, at most `limit`
    /// (0: no limit). Linearizable.
    pub async fn range(
        &self,
        key: &[u8],
        range_end: Option<&[u8]>,
        limit: i64,
    ) -> Result<RangeResponse> {
        let mut req = Map::new();
        req.insert("key".into(), b64(key).into());
        if let Some(end) = range_end {
            req.insert("range_end".into(), b64(end).into());
        }
        if limit > 0 {
            req.insert("limit".into(), limit.to_string().into());
        }
        let v = self
            .call("range", "/v3/kv/range", &Value::Object(req))
            .await?;
        let kvs = kvs(&v).map_err(|reason| self.proto("range", reason.to_string()))?;
        Ok(RangeResponse {
            kvs,
            more: v.get("more").and_then(Value::as_bool).unwrap_or(false),
            revision: header_revision(&v),
        })
    }

    fn proto(&self, op: &'static str, reason: String) -> HaError {
        let i = self.current.load(Ordering::Relaxed) % self.transports.len();
        HaError::Protocol {
            endpoint: self.transports[i].endpoint.text.clone(),
            op,
            reason,
        }
    }

    /// Runs a transaction.
    pub async fn txn(
        &self,
        compare: &[Compare],
        success: &[TxnOp],
        failure: &[TxnOp],
    ) -> Result<TxnResponse> {
        let cmp: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::CreateRevision(k, r) => json!({
                    "result": "EQUAL", "target": "CREATE", "key": b64(k),
                    "create_revision": r.to_string()
                }),
                Compare::Value(k, v) => json!({
                    "result": "EQUAL", "target": "VALUE", "key": b64(k), "value": b64(v)
                }),
            })
            .collect();
        let ops = |list: &[TxnOp]| -> Vec<Value> {
            list.iter()
                .map(|op| match op {
                    TxnOp::Put { key, value, lease } => {
                        let mut p = json!({ "key": b64(key), "value": b64(value) });
                        if *lease != 0 {
                            p["lease"] = lease.to_string().into();
                        }
                        json!({ "request_put": p })
                    }
                    TxnOp::Get { key } => json!({ "request_range": { "key": b64(key) } }),
                    TxnOp::Delete { key } => json!({ "request_delete_range": { "key": b64(key) } }),
                })
                .collect()
        };
        let body = json!({ "compare": cmp, "success": ops(success), "failure": ops(failure) });
        let v = self.call("txn", "/v3/kv/txn", &body).await?;
        let succeeded = v.get("succeeded").and_then(Value::as_bool).unwrap_or(false);
        let mut results = Vec::new();
        if let Some(list) = v.get("responses").and_then(Value::as_array) {
            for r in list {
                if let Some(g) = field(r, &["response_range", "responseRange"]) {
                    results.push(TxnResult::Get(
                        kvs(g).map_err(|reason| self.proto("txn", reason.to_string()))?,
                    ));
                } else if let Some(d) = field(r, &["response_delete_range", "responseDeleteRange"])
                {
                    results.push(TxnResult::Delete(int(d, &["deleted"])));
                } else {
                    results.push(TxnResult::Put);
                }
            }
        }
        Ok(TxnResponse {
            succeeded,
            revision: header_revision(&v),
            results,
        })
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1); returns its id
    /// and the TTL etcd granted.
    pub async fn lease_grant(&self, ttl: Duration) -> Result<(i64, Duration)> {
        let secs = ttl.as_secs().max(1);
        let v = self
            .call(
                "lease grant",
                "/v3/lease/grant",
                &json!({ "TTL": secs.to_string() }),
            )
            .await?;
        let id = int(&v, &["ID", "id"]);
        if id == 0 {
            return Err(self.proto("lease grant", "no lease ID in the answer".into()));
        }
        Ok((
            id,
            Duration::from_secs(int(&v, &["TTL", "ttl"]).max(0) as u64),
        ))
    }

    /// Refreshes a lease; returns the TTL etcd reports (zero: the lease no
    /// longer exists).
    pub async fn lease_keepalive(&self, id: i64) -> Result<Duration> {
        let v = self
            .call(
                "lease keep-alive",
                "/v3/lease/keepalive",
                &json!({ "ID": id.to_string() }),
            )
            .await?;
        let r = v.get("result").unwrap_or(&v);
        Ok(Duration::from_secs(int(r, &["TTL", "ttl"]).max(0) as u64))
    }

    /// Revokes a lease (its keys are deleted). A lease that no longer
    /// exists is not an error.
    pub async fn lease_revoke(&self, id: i64) -> Result<()> {
        match self
            .call(
                "lease revoke",
                "/v3/lease/revoke",
                &json!({ "ID": id.to_string() }),
            )
            .await
        {
            Ok(_) => Ok(()),
            // gRPC status NOT_FOUND: etcd's answer for a lease that is gone
            Err(HaError::Etcd { code: 5, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The remaining TTL of a lease (None: it does not exist).
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<Duration>> {
        let v = self
            .call(
                "lease time-to-live",
                "/v3/lease/timetolive",
                &json!({ "ID": id.to_string() }),
            )
            .await?;
        let ttl = int(&v, &["TTL", "ttl"]);
        Ok((ttl > 0).then(|| Duration::from_secs(ttl as u64)))
    }
}

#[cfg(test)]
mod tests;
