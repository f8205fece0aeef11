//! JSON log lines on stderr, one object per line: Toru collects them into the plugin's log.

use serde_json::{Map, Value};

use crate::wire::now_rfc3339;

/// Writes `{"timestamp", "level", "message", ...fields}` as one line.
///
/// `eprintln!` holds the stderr lock for the whole line, so lines from concurrent
/// threads never interleave.
pub fn log(level: &str, message: &str, fields: &[(&str, Value)]) {
    let mut line = Map::new();
    line.insert("timestamp".into(), Value::from(now_rfc3339()));
    line.insert("level".into(), Value::from(level));
    line.insert("message".into(), Value::from(message));
    for (name, value) in fields {
        line.insert((*name).to_string(), value.clone());
    }
    eprintln!("{}", Value::Object(line));
}

pub fn debug(message: &str, fields: &[(&str, Value)]) {
    log("debug", message, fields);
}

pub fn info(message: &str, fields: &[(&str, Value)]) {
    log("info", message, fields);
}

pub fn warn(message: &str, fields: &[(&str, Value)]) {
    log("warn", message, fields);
}

pub fn error(message: &str, fields: &[(&str, Value)]) {
    log("error", message, fields);
}
