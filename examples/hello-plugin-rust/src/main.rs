//! Hello World (Rust): a Toru plugin written against the wire protocol by hand, with std
//! threads and a Unix socket (no async runtime) and only serde + serde_json.
//!
//! `hello-plugin-rust.binary --metadata` prints what Toru needs to list the plugin; started
//! by Toru, it listens on `TORU_PLUGIN_SOCKET` and serves `GET /`, `GET /counter` and
//! `POST /counter/increment` (the counter lives in Toru's KV store).

mod connection;
mod log;
mod routes;
mod wire;

use std::env;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::{Arc, Mutex};
use std::thread;

use serde::Serialize;
use serde_json::json;

const PLUGIN_ID: &str = "hello-plugin-rust";

/// What `--metadata` prints. `protocol: 2` asks Toru for modern mode: one long-lived
/// connection, pings, concurrent requests and KV.
#[derive(Serialize)]
struct Metadata {
    id: &'static str,
    name: &'static str,
    version: &'static str,
    route: &'static str,
    icon: &'static str,
    author: &'static str,
    protocol: u32,
}

const METADATA: Metadata = Metadata {
    id: PLUGIN_ID,
    name: "Hello World (Rust)",
    version: env!("CARGO_PKG_VERSION"),
    route: "/hello-rust",
    icon: "🦀",
    author: "The Toru developers",
    protocol: 2,
};

/// What every connection and request thread shares.
pub struct State {
    pub socket_path: PathBuf,
    /// Set by Toru's `init`; `None` until then.
    pub instance_id: Mutex<Option<String>>,
    /// Held across the get and the set of an increment.
    pub counter_lock: Mutex<()>,
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("--metadata") => {
            match serde_json::to_string(&METADATA) {
                Ok(text) => println!("{text}"),
                Err(err) => {
                    eprintln!("cannot serialise the metadata: {err}");
                    process::exit(1);
                }
            }
            return;
        }
        Some(other) => {
            eprintln!("unknown argument {other:?}; usage: {PLUGIN_ID}.binary [--metadata]");
            process::exit(2);
        }
    }

    // Toru always sets the variable; the fallback is where plugins for the old host listened.
    let socket_path = env::var_os("TORU_PLUGIN_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/toru-plugins/{PLUGIN_ID}.sock")));
    let listener = match bind(&socket_path) {
        Ok(listener) => listener,
        Err(err) => {
            log::error(
                "cannot listen on the plugin socket",
                &[
                    ("socket", json!(socket_path.display().to_string())),
                    ("error", json!(err.to_string())),
                ],
            );
            process::exit(1);
        }
    };
    log::info(
        "listening",
        &[
            ("socket", json!(socket_path.display().to_string())),
            ("pid", json!(process::id())),
        ],
    );

    let state = Arc::new(State {
        socket_path,
        instance_id: Mutex::new(None),
        counter_lock: Mutex::new(()),
    });
    // Toru keeps one connection open, but nothing forbids more: each gets its own thread.
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let state = Arc::clone(&state);
                let spawned = thread::Builder::new()
                    .name("connection".into())
                    .spawn(move || connection::serve(stream, state));
                if let Err(err) = spawned {
                    log::error(
                        "cannot start a connection thread",
                        &[("error", json!(err.to_string()))],
                    );
                }
            }
            Err(err) => log::warn("accept failed", &[("error", json!(err.to_string()))]),
        }
    }
}

/// Listens at `path`: replaces a stale file left by an earlier run, and makes the socket
/// readable and writable by our own user only.
fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)?;
        }
    }
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Removes our socket file on the way out (Toru removes it too if we die without doing so).
pub fn remove_socket(path: &Path) {
    if let Err(err) = fs::remove_file(path) {
        if err.kind() != io::ErrorKind::NotFound {
            log::warn(
                "cannot remove the socket",
                &[("error", json!(err.to_string()))],
            );
        }
    }
}
