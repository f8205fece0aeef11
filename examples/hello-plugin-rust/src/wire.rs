//! The wire format: 4-byte big-endian length, then that many bytes of UTF-8 JSON (one object).

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Largest frame either side may send (Toru's default limit).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Why a frame could not be read or written; every variant ends the connection.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// The stream ended inside a frame (after `got` of the bytes it needed).
    Truncated {
        got: usize,
    },
    TooLarge(usize),
    NotJson(serde_json::Error),
    NotObject,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(err) => write!(f, "socket error: {err}"),
            FrameError::Truncated { got } => {
                write!(
                    f,
                    "connection closed in the middle of a frame ({got} bytes read)"
                )
            }
            FrameError::TooLarge(size) => {
                write!(f, "frame of {size} bytes exceeds the 16 MiB limit")
            }
            FrameError::NotJson(err) => write!(f, "frame is not JSON: {err}"),
            FrameError::NotObject => write!(f, "frame holds JSON that is not an object"),
        }
    }
}

/// Fills `buf` from `reader`; returns how many bytes were read before a clean end of stream.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(FrameError::Io(err)),
        }
    }
    Ok(got)
}

/// The next message, or `None` at a clean end of stream (between two frames).
///
/// The announced length is checked against [`MAX_FRAME`] before the body is allocated.
pub fn read_frame<R: Read>(reader: &mut R) -> Result<Option<Map<String, Value>>, FrameError> {
    let mut header = [0u8; 4];
    match read_full(reader, &mut header)? {
        0 => return Ok(None),
        4 => {}
        got => return Err(FrameError::Truncated { got }),
    }
    let size = u32::from_be_bytes(header) as usize;
    if size > MAX_FRAME {
        return Err(FrameError::TooLarge(size));
    }
    let mut body = vec![0u8; size];
    let got = read_full(reader, &mut body)?;
    if got < size {
        return Err(FrameError::Truncated { got: 4 + got });
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(message)) => Ok(Some(message)),
        Ok(_) => Err(FrameError::NotObject),
        Err(err) => Err(FrameError::NotJson(err)),
    }
}

/// One whole frame (header and body) holding `message`, ready for a single `write_all`.
pub fn encode_frame(message: &Value) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(message).map_err(FrameError::NotJson)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// A message in the envelope every Toru message uses; `payload.type` repeats `kind`.
pub fn envelope(kind: &str, request_id: Option<&str>, mut payload: Map<String, Value>) -> Value {
    payload.insert("type".to_string(), Value::from(kind));
    json!({
        "type": kind,
        "timestamp": now_rfc3339(),
        "request_id": request_id,
        "payload": payload,
    })
}

/// A string field of a JSON object, if present and a string.
pub fn str_field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2026-01-15T14:56:07.123Z`.
pub fn now_rfc3339() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    rfc3339(since_epoch)
}

/// RFC 3339 UTC for a time given as the duration since the Unix epoch.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        year,
        month,
        day,
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year, March-based
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_millis(1_768_488_967_123)),
            "2026-01-15T14:56:07.123Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_868_799)),
            "2000-02-29T23:59:59.000Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(4_107_542_400)),
            "2100-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let frame = encode_frame(&json!({"type": "lifecycle"})).unwrap();
        let mut reader = &frame[..];
        let message = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(str_field(&message, "type"), Some("lifecycle"));
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn refuses_oversized_frames_from_the_header() {
        let mut reader = &[0xff_u8, 0xff, 0xff, 0xff][..];
        assert!(matches!(
            read_frame(&mut reader),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn reports_a_truncated_frame() {
        let mut reader = &[0u8, 0, 0, 9, b'{'][..];
        assert!(matches!(
            read_frame(&mut reader),
            Err(FrameError::Truncated { got: 5 })
        ));
    }
}
