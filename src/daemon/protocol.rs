//! The daemon's wire protocol, over a Unix stream socket.
//!
//! Every message is a frame: a 4-byte little-endian length, then that
//! many bytes of JSON. A client sends one request frame; a `submit`
//! request carries the client's stdin, stdout, stderr and working
//! directory as descriptors (`SCM_RIGHTS`) on its first byte, and the
//! job's process uses them directly, so its streams behave as they would
//! under `tierjit run` (a pipe's end of file is the job's) and it runs in
//! the same directory even if that has no name any more. While
//! the job runs the client may send `Signal` frames, which the daemon
//! passes to the job; closing the connection kills the job. The daemon
//! answers with one `Reply` frame: how the job ended, an error, or the
//! status or metrics asked for.
//!
//! Requests carry `version`; a daemon refuses versions it does not speak,
//! with an error reply. A frame longer than `MAX_FRAME` is refused before
//! it is read.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The longest frame either side accepts (a request's arguments and
/// environment fit many times over).
pub const MAX_FRAME: usize = 1 << 20;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Run a job: `args` as `tierjit run` takes them (options, the job,
    /// `--` and its arguments), with environment `env`. The standard
    /// streams and the working directory come as descriptors. `ignored`:
    /// the signals the submitter ignores, which the job inherits ignored,
    /// as it would from `tierjit run` (under `nohup`, or in a script's
    /// background job).
    Submit {
        args: Vec<OsText>,
        env: Vec<(OsText, OsText)>,
        #[serde(default)]
        ignored: Vec<i32>,
    },
    /// The daemon's state (`status --json`'s document).
    Status {},
    /// OpenMetrics text.
    Metrics {},
}

/// An argument or environment string: text when it is UTF-8, else its
/// bytes (a job's arguments and environment are bytes, as under `run`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OsText {
    Text(String),
    Bytes(Vec<u8>),
}

impl OsText {
    pub fn of(value: &std::ffi::OsStr) -> OsText {
        match value.to_str() {
            Some(text) => OsText::Text(text.to_string()),
            None => OsText::Bytes(std::os::unix::ffi::OsStrExt::as_bytes(value).to_vec()),
        }
    }

    pub fn to_os_string(&self) -> std::ffi::OsString {
        use std::os::unix::ffi::OsStrExt;
        match self {
            OsText::Text(text) => text.into(),
            OsText::Bytes(bytes) => std::ffi::OsStr::from_bytes(bytes).to_os_string(),
        }
    }
}

/// What a client sends while its job runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    pub signal: i32,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// The job's process exited with this status.
    Exited(i32),
    /// The job's process was killed by this signal.
    Signaled(i32),
    /// The daemon killed the job (with `signal`), for `why` (a time
    /// limit, say); `submit` prints why, then ends as the job did.
    Killed { signal: i32, why: String },
    /// The request was refused or the job could not start; `tierjit
    /// submit` exits 125 with the message.
    Error(String),
    /// `status`: the JSON document.
    Status(serde_json::Value),
    /// `metrics`: the OpenMetrics text.
    Metrics(String),
}

/// Frames `message` for the wire.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let body = serde_json::to_vec(message).expect("protocol messages serialize");
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Where reading a frame stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// More bytes are needed.
    Partial,
    /// A whole frame's body, and the number of bytes it took.
    Whole(&'a [u8], usize),
    /// The length announced is over `MAX_FRAME`.
    TooLarge(usize),
}

/// The first frame in `buffer`.
pub fn first_frame(buffer: &[u8]) -> Frame<'_> {
    let Some(head) = buffer.get(..4) else {
        return Frame::Partial;
    };
    let length = u32::from_le_bytes(head.try_into().expect("four bytes")) as usize;
    if length > MAX_FRAME {
        return Frame::TooLarge(length);
    }
    match buffer.get(4..4 + length) {
        Some(body) => Frame::Whole(body, 4 + length),
        None => Frame::Partial,
    }
}

/// Parses a request body, with a message fit for the client on failure.
pub fn parse_request(body: &[u8]) -> Result<Request, String> {
    // The version first, so that a newer client's request is refused as
    // such rather than as unknown fields.
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON request: {e}"))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "protocol version {v} is not supported; this daemon speaks version {VERSION}"
            ))
        }
        None => return Err("a request without a protocol version".into()),
    }
    let mut fields = value;
    if let Some(map) = fields.as_object_mut() {
        map.remove("version");
    }
    let op = serde_json::from_value(fields).map_err(|e| format!("bad request: {e}"))?;
    Ok(Request {
        version: VERSION,
        op,
    })
}

/// Reads one frame from a blocking stream: `Ok(None)` at a clean end of
/// stream before any byte.
pub fn read_frame(stream: &mut impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match stream.read(&mut head[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let length = u32::from_le_bytes(head) as usize;
    if length > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "a frame of {length} bytes, over the limit of {MAX_FRAME}"
        )));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_frames() {
        let request = Request {
            version: VERSION,
            op: Op::Submit {
                args: vec![
                    OsText::Text("job.c".into()),
                    OsText::Text("--".into()),
                    OsText::Bytes(vec![0xff, b'7']),
                ],
                env: vec![(OsText::Text("HOME".into()), OsText::Text("/root".into()))],
                ignored: vec![1],
            },
        };
        let mut frame = encode(&request);
        frame.extend_from_slice(b"rest");
        let Frame::Whole(body, used) = first_frame(&frame) else {
            panic!("a whole frame");
        };
        assert_eq!(&frame[used..], b"rest");
        assert_eq!(parse_request(body), Ok(request));
        assert_eq!(first_frame(&frame[..3]), Frame::Partial);
        assert_eq!(first_frame(&frame[..used - 1]), Frame::Partial);
        let status = encode(&Request {
            version: VERSION,
            op: Op::Status {},
        });
        assert_eq!(
            std::str::from_utf8(&status[4..]).unwrap(),
            r#"{"version":1,"op":"status"}"#
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        assert!(parse_request(b"\x00\xffgarbage")
            .unwrap_err()
            .starts_with("not a JSON request"));
        assert_eq!(
            parse_request(br#"{"version":2,"op":"status"}"#).unwrap_err(),
            "protocol version 2 is not supported; this daemon speaks version 1"
        );
        assert!(parse_request(br#"{"op":"status"}"#)
            .unwrap_err()
            .contains("without a protocol version"));
        assert!(parse_request(br#"{"version":1,"op":"reboot"}"#)
            .unwrap_err()
            .starts_with("bad request"));
        assert!(parse_request(br#"{"version":1,"op":"status","x":1}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert_eq!(
            OsText::of(std::os::unix::ffi::OsStrExt::from_bytes(&[b'a', 0xfe][..]))
                .to_os_string()
                .as_encoded_bytes(),
            [b'a', 0xfe]
        );
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert_eq!(first_frame(&huge), Frame::TooLarge(MAX_FRAME + 1));
    }

    #[test]
    fn replies_name_their_kind() {
        assert_eq!(
            std::str::from_utf8(&encode(&Reply::Exited(3))[4..]).unwrap(),
            r#"{"exited":3}"#
        );
        let mut wire = std::io::Cursor::new(encode(&Reply::Signaled(9)));
        let body = read_frame(&mut wire).unwrap().unwrap();
        assert_eq!(
            serde_json::from_slice::<Reply>(&body).unwrap(),
            Reply::Signaled(9)
        );
        assert_eq!(read_frame(&mut wire).unwrap(), None);
    }
}
