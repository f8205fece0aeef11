//! One connection from Toru: a reader thread that dispatches every frame, a writer shared
//! by every thread that answers on this connection, and the plugin->Toru KV requests.
//!
//! Toru keeps one long-lived connection to a modern plugin and multiplexes on it: its
//! requests (http, ping) and the replies to ours (kv) arrive interleaved. A frame whose
//! `request_id` matches a KV request we sent is handed to the thread waiting for it;
//! anything else is a message from the host.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::log;
use crate::routes;
use crate::wire::{self, str_field};
use crate::State;

/// How long a handler waits for Toru to answer a KV request.
pub const KV_TIMEOUT: Duration = Duration::from_secs(5);

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// Locks a mutex even if a thread panicked while holding it: the data it guards (a socket,
/// a map of channels) stays consistent between our operations.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a KV request failed.
#[derive(Debug)]
pub enum KvError {
    /// Toru answered with an error.
    Refused(String),
    /// No answer within [`KV_TIMEOUT`].
    Timeout,
    /// The connection closed, or the request could not be written.
    Disconnected(String),
    /// Toru answered with something that is neither a value nor an error.
    BadReply(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Refused(reason) => write!(f, "toru refused the request: {reason}"),
            KvError::Timeout => write!(f, "no answer from toru within {} s", KV_TIMEOUT.as_secs()),
            KvError::Disconnected(reason) => write!(f, "connection to toru lost: {reason}"),
            KvError::BadReply(reason) => write!(f, "unreadable reply from toru: {reason}"),
        }
    }
}

/// The writing half of a connection, and the KV requests waiting for their reply on it.
pub struct Connection {
    writer: Mutex<UnixStream>,
    pending: Mutex<HashMap<String, Sender<Map<String, Value>>>>,
}

impl Connection {
    /// Writes one message as one frame; concurrent senders are serialised by the mutex,
    /// so frames never interleave.
    pub fn send(&self, message: &Value) -> Result<(), wire::FrameError> {
        let frame = wire::encode_frame(message)?;
        let mut writer = lock(&self.writer);
        writer.write_all(&frame).map_err(wire::FrameError::Io)?;
        writer.flush().map_err(wire::FrameError::Io)
    }

    /// Sends a KV request to Toru and waits (at most [`KV_TIMEOUT`]) for its answer.
    ///
    /// `Ok(None)` is a missing key (or the answer to `set`/`delete`).
    pub fn kv(
        &self,
        action: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<String>, KvError> {
        let request_id = format!(
            "kv-{}-{}",
            std::process::id(),
            NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)
        );
        let (sender, receiver) = mpsc::channel();
        lock(&self.pending).insert(request_id.clone(), sender);

        let mut payload = Map::new();
        payload.insert("action".into(), Value::from(action));
        payload.insert("key".into(), Value::from(key));
        if let Some(value) = value {
            payload.insert("value".into(), Value::from(value));
        }
        if let Err(err) = self.send(&wire::envelope("kv", Some(&request_id), payload)) {
            lock(&self.pending).remove(&request_id);
            return Err(KvError::Disconnected(err.to_string()));
        }

        let reply = match receiver.recv_timeout(KV_TIMEOUT) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                lock(&self.pending).remove(&request_id);
                return Err(KvError::Timeout);
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(KvError::Disconnected("the connection closed".into()));
            }
        };
        let payload = match reply.get("payload") {
            Some(Value::Object(payload)) => payload,
            _ => return Err(KvError::BadReply("no payload object".into())),
        };
        if let Some(error) = payload.get("error").filter(|error| !error.is_null()) {
            let reason = error
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| error.to_string());
            return Err(KvError::Refused(reason));
        }
        match payload.get("value") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            // Not in the contract, but harmless to accept: keep the JSON text.
            Some(other) => Ok(Some(other.to_string())),
        }
    }

    /// The waiting KV caller for `request_id`, if this frame answers one of our requests.
    fn take_pending(&self, request_id: &str) -> Option<Sender<Map<String, Value>>> {
        lock(&self.pending).remove(request_id)
    }

    /// Fails every waiting KV request (their senders are dropped).
    fn fail_pending(&self) {
        lock(&self.pending).clear();
    }
}

/// Reads frames until the peer closes the connection or breaks the protocol.
pub fn serve(stream: UnixStream, state: Arc<State>) {
    let writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(err) => {
            log::error(
                "cannot clone the connection",
                &[("error", json!(err.to_string()))],
            );
            return;
        }
    };
    let connection = Arc::new(Connection {
        writer: Mutex::new(writer),
        pending: Mutex::new(HashMap::new()),
    });
    let mut reader = BufReader::new(stream);
    loop {
        match wire::read_frame(&mut reader) {
            Ok(Some(message)) => dispatch(&connection, &state, message),
            Ok(None) => break,
            Err(err) => {
                log::error(
                    "protocol error, dropping the connection",
                    &[("error", json!(err.to_string()))],
                );
                break;
            }
        }
    }
    // Nothing more can arrive: fail the KV requests still waiting. Requests being handled
    // keep the writer alive and still send their reply (the peer may only have half-closed).
    connection.fail_pending();
    log::info("connection closed", &[]);
}

fn dispatch(connection: &Arc<Connection>, state: &Arc<State>, message: Map<String, Value>) {
    let request_id = str_field(&message, "request_id").map(String::from);
    if let Some(request_id) = &request_id {
        if let Some(waiting) = connection.take_pending(request_id) {
            // The handler may have timed out meanwhile; then nobody listens, which is fine.
            let _ = waiting.send(message);
            return;
        }
    }
    let payload = match message.get("payload") {
        Some(Value::Object(payload)) => payload.clone(),
        _ => Map::new(),
    };
    match str_field(&message, "type").unwrap_or("") {
        "lifecycle" => lifecycle(connection, state, request_id.as_deref(), &payload),
        "http" => {
            let connection = Arc::clone(connection);
            let state = Arc::clone(state);
            let spawned = thread::Builder::new().name("http".into()).spawn(move || {
                routes::answer(&connection, &state, request_id.as_deref(), &payload)
            });
            if let Err(err) = spawned {
                log::error(
                    "cannot start a request thread",
                    &[("error", json!(err.to_string()))],
                );
            }
        }
        "kv" => log::warn(
            "kv reply for a request this plugin is not waiting for (late or unknown)",
            &[("request_id", json!(request_id))],
        ),
        other => log::warn(
            "ignoring a message of unknown type",
            &[("type", json!(other))],
        ),
    }
}

fn lifecycle(
    connection: &Connection,
    state: &State,
    request_id: Option<&str>,
    payload: &Map<String, Value>,
) {
    let action = str_field(payload, "action")
        .unwrap_or("")
        .to_ascii_lowercase();
    match action.as_str() {
        "init" => {
            let instance_id = str_field(payload, "instance_id").map(String::from);
            log::info("initialised", &[("instance_id", json!(instance_id))]);
            *lock(&state.instance_id) = instance_id;
        }
        "ping" => {
            let mut pong = Map::new();
            pong.insert("action".into(), Value::from("pong"));
            if let Err(err) = connection.send(&wire::envelope("lifecycle", request_id, pong)) {
                log::warn("cannot answer a ping", &[("error", json!(err.to_string()))]);
            }
        }
        "shutdown" => {
            log::info("shutdown requested, exiting", &[]);
            crate::remove_socket(&state.socket_path);
            std::process::exit(0);
        }
        other => log::warn(
            "ignoring an unknown lifecycle action",
            &[("action", json!(other))],
        ),
    }
}
