//! What a worker tells its daemon while its job runs, one JSON line per
//! event on a socket the daemon watches (descriptor 3 of the worker):
//! the module loaded (how many functions), each compile (tier, seconds,
//! whole function or OSR, outcome) and each cache lookup. The daemon
//! sums them for `status` (functions by tier) and `metrics`. Sent as
//! they happen rather than at exit, so a job that crashes has still
//! reported what it compiled.
//!
//! Best effort and never in the way: the socket is non-blocking, and a
//! line that does not fit (a daemon that stopped reading) is dropped.
//! Outside a daemon's worker nothing is set up and every call returns at
//! once.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One event, as a line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The job's module was loaded with this many functions (all on
    /// baseline code, or all optimized in `--mode optimized`).
    Loaded { functions: u64, optimized: bool },
    /// A compile ended. `osr`: an OSR continuation rather than a whole
    /// function; `first`: the function's first optimized version (so one
    /// more function runs optimized code).
    Compiled {
        tier: String,
        seconds: f64,
        osr: bool,
        installed: bool,
        first: bool,
    },
    /// A cache lookup of `kind` (its label).
    Cache { kind: String, hit: bool },
}

static CHANNEL: OnceLock<Mutex<UnixStream>> = OnceLock::new();

/// Reports go to `stream` from now on (in a worker, before its job).
pub fn open(stream: UnixStream) {
    if stream.set_nonblocking(true).is_ok() {
        let _ = CHANNEL.set(Mutex::new(stream));
    }
}

/// Whether this process reports to a daemon.
pub fn active() -> bool {
    CHANNEL.get().is_some()
}

/// Sends `event` if this process reports to a daemon.
pub fn send(event: &Event) {
    let Some(channel) = CHANNEL.get() else {
        return;
    };
    let Ok(mut line) = serde_json::to_vec(event) else {
        return;
    };
    line.push(b'\n');
    let mut stream = channel.lock().unwrap_or_else(|p| p.into_inner());
    // One write of a short line: all of it or, on a full socket, none.
    let _ = stream.write(&line);
}

/// A compile of `tier` that took `compile`.
pub fn compiled(
    tier: crate::versions::Tier,
    compile: Duration,
    osr: bool,
    installed: bool,
    first: bool,
) {
    if active() {
        send(&Event::Compiled {
            tier: tier.to_string(),
            seconds: compile.as_secs_f64(),
            osr,
            installed,
            first,
        });
    }
}

/// Parses the lines in `buffer` that are whole, leaving a partial one.
pub fn take_events(buffer: &mut Vec<u8>) -> Vec<Event> {
    let Some(end) = buffer.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    let lines: Vec<u8> = buffer.drain(..=end).collect();
    lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_are_events_and_the_rest_waits() {
        let mut buffer = Vec::new();
        for event in [
            Event::Loaded {
                functions: 3,
                optimized: false,
            },
            Event::Cache {
                kind: "baseline".into(),
                hit: true,
            },
        ] {
            buffer.extend(serde_json::to_vec(&event).unwrap());
            buffer.push(b'\n');
        }
        buffer.extend_from_slice(b"{\"cache\":{\"ki");
        let events = take_events(&mut buffer);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            Event::Cache {
                kind: "baseline".into(),
                hit: true
            }
        );
        assert_eq!(buffer, b"{\"cache\":{\"ki");
        buffer.extend_from_slice(b"nd\":\"profile\",\"hit\":false}}\nnot json\n");
        assert_eq!(
            take_events(&mut buffer),
            vec![Event::Cache {
                kind: "profile".into(),
                hit: false
            }]
        );
        assert!(buffer.is_empty());
    }
}
