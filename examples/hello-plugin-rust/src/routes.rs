//! The plugin's HTTP endpoints. Toru forwards `/api/plugins/route/hello-rust/<path>` here.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::connection::{lock, Connection, KvError};
use crate::log;
use crate::wire;
use crate::State;

const COUNTER_KEY: &str = "counter";

/// The request Toru forwards, read from `payload.payload`.
#[derive(Debug, Deserialize)]
pub struct Request {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: HashMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
}

/// A reply: a status and a JSON document (sent as text with `content-type: application/json`).
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    fn ok(body: Value) -> Response {
        Response { status: 200, body }
    }

    fn error(status: u16, message: String) -> Response {
        Response {
            status,
            body: json!({ "error": message }),
        }
    }

    fn from_kv(action: &str, err: KvError) -> Response {
        // Toru said no, or said something unreadable: a bad gateway. Toru never answered
        // (timeout, connection lost): our own failure.
        let status = match err {
            KvError::Refused(_) | KvError::BadReply(_) => 502,
            KvError::Timeout | KvError::Disconnected(_) => 500,
        };
        log::warn(
            "kv request failed",
            &[("action", json!(action)), ("error", json!(err.to_string()))],
        );
        Response::error(status, format!("kv {action} {COUNTER_KEY:?} failed: {err}"))
    }
}

/// Handles one `http` message on its own thread and writes the reply on `connection`.
pub fn answer(
    connection: &Connection,
    state: &State,
    request_id: Option<&str>,
    payload: &Map<String, Value>,
) {
    // Both old dialects carry the id in the envelope; accept it from payload too.
    let request_id = request_id.or_else(|| wire::str_field(payload, "request_id"));
    let request = payload
        .get("payload")
        .cloned()
        .ok_or_else(|| "no payload.payload".to_string())
        .and_then(|inner| serde_json::from_value::<Request>(inner).map_err(|err| err.to_string()));
    let response = match request {
        Ok(request) => {
            // A bug in a handler answers 500 and the plugin keeps serving.
            panic::catch_unwind(AssertUnwindSafe(|| route(connection, state, &request)))
                .unwrap_or_else(|_| Response::error(500, "the handler panicked".into()))
        }
        Err(reason) => Response::error(400, format!("malformed http request: {reason}")),
    };

    let mut reply = Map::new();
    reply.insert("status".into(), json!(response.status));
    reply.insert(
        "headers".into(),
        json!({ "content-type": "application/json" }),
    );
    reply.insert("body".into(), Value::from(response.body.to_string()));
    if let Err(err) = connection.send(&wire::envelope("http", request_id, reply)) {
        log::error(
            "cannot send an http reply",
            &[
                ("request_id", json!(request_id)),
                ("error", json!(err.to_string())),
            ],
        );
    }
}

fn route(connection: &Connection, state: &State, request: &Request) -> Response {
    // Toru passes the query string along; routing ignores it.
    let path = request.path.split('?').next().unwrap_or("");
    let path = if path.is_empty() { "/" } else { path };
    let method = request.method.to_ascii_uppercase();
    log::debug(
        "request",
        &[
            ("method", json!(method)),
            ("path", json!(request.path)),
            ("user_agent", json!(request.headers.get("user-agent"))),
            (
                "body_bytes",
                json!(request.body.as_ref().map_or(0, String::len)),
            ),
        ],
    );
    match (method.as_str(), path) {
        ("GET", "/") => Response::ok(json!({
            "message": "Hello from Rust!",
            "instance_id": *lock(&state.instance_id),
            "time": wire::now_rfc3339(),
        })),
        ("GET", "/counter") => match read_counter(connection) {
            Ok(count) => Response::ok(json!({ "count": count })),
            Err(response) => response,
        },
        ("POST", "/counter/increment") => {
            // Get-then-set is not atomic in KV: serialise increments within this plugin.
            let _increment = lock(&state.counter_lock);
            let count = match read_counter(connection) {
                Ok(count) => count + 1,
                Err(response) => return response,
            };
            match connection.kv("set", COUNTER_KEY, Some(&count.to_string())) {
                Ok(_) => Response::ok(json!({ "count": count })),
                Err(err) => Response::from_kv("set", err),
            }
        }
        _ => Response::error(404, format!("no route for {} {}", request.method, path)),
    }
}

fn read_counter(connection: &Connection) -> Result<u64, Response> {
    match connection.kv("get", COUNTER_KEY, None) {
        Ok(None) => Ok(0),
        Ok(Some(text)) => text.trim().parse().map_err(|_| {
            Response::error(
                500,
                format!("kv key {COUNTER_KEY:?} holds {text:?}, not a count"),
            )
        }),
        Err(err) => Err(Response::from_kv("get", err)),
    }
}
