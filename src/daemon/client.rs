//! The daemon's clients: `tierjit submit`, `tierjit status` and `tierjit
//! metrics`.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::code::daemon_sys::{self, Watch};

use super::protocol::{self, Op, OsText, Reply, Request};

/// The status `tierjit submit` exits with when the daemon could not run
/// the job (as `tierjit run` does for bad input).
pub const TOOL_FAILURE: i32 = 125;

/// Signals `submit` passes on to its job, as a shell's Ctrl-C or a
/// supervisor's SIGTERM would reach a `tierjit run`.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn connect(socket: &Path) -> Result<UnixStream, String> {
    UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach a tierjit daemon at {}: {e}", socket.display()))
}

fn answer(stream: &mut UnixStream) -> Result<Reply, String> {
    let body = protocol::read_frame(stream)
        .map_err(|e| format!("reading the daemon's answer: {e}"))?
        .ok_or("the daemon closed the connection without an answer")?;
    serde_json::from_slice(&body)
        .map_err(|e| format!("an answer this client does not understand: {e}"))
}

/// Runs `args` (as `tierjit run` takes them) on the daemon at `socket`,
/// with this process's standard streams, directory and environment;
/// returns the status to exit with: the job's, or 125 if the daemon
/// refused it. A job killed by a signal ends this process by the same
/// signal (128 + its number if that does not end it).
pub fn submit(socket: &Path, args: Vec<std::ffi::OsString>) -> Result<i32, String> {
    let mut stream = connect(socket)?;
    // The directory itself, not its name: the job runs there even if it
    // was renamed or removed, as under `tierjit run`.
    let cwd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(".")
        .map_err(|e| format!("cannot open the working directory: {e}"))?;
    let env = std::env::vars_os()
        .map(|(k, v)| (OsText::of(&k), OsText::of(&v)))
        .collect();
    // Ignored here (nohup, a script's background job): ignored by the
    // job too, and not passed on, as `tierjit run` would have it.
    let ignored = daemon_sys::ignored_signals();
    let request = Request {
        version: protocol::VERSION,
        op: Op::Submit {
            args: args.iter().map(|a| OsText::of(a)).collect(),
            env,
            ignored: ignored.clone(),
        },
    };
    let frame = protocol::encode(&request);
    if frame.len() > protocol::MAX_FRAME + 4 {
        return Err(format!(
            "the request ({} bytes of arguments and environment) is over the daemon's limit of {}",
            frame.len(),
            protocol::MAX_FRAME
        ));
    }
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    if let Err(e) = daemon_sys::send_with_fds(
        &stream,
        &frame,
        &[stdin.as_fd(), stdout.as_fd(), stderr.as_fd(), cwd.as_fd()],
    ) {
        return Err(refusal_or(
            &mut stream,
            format!("sending the job to the daemon: {e}"),
        ));
    }
    forward_signals(&stream, &ignored)?;
    Ok(match answer(&mut stream)? {
        Reply::Exited(code) => code,
        Reply::Signaled(signal) => {
            daemon_sys::die_by_signal(signal);
            128 + signal
        }
        Reply::Killed { signal, why } => {
            say!("tierjit: job killed: {why}");
            daemon_sys::die_by_signal(signal);
            128 + signal
        }
        Reply::Error(why) => {
            say!("tierjit: error: {why}");
            TOOL_FAILURE
        }
        other => return Err(format!("an answer that is not a job's end: {other:?}")),
    })
}

/// Passes the signals in `FORWARDED` this process gets (those it does not
/// ignore) on to the job, as frames on `stream`, from a thread of their
/// own.
fn forward_signals(stream: &UnixStream, ignored: &[i32]) -> Result<(), String> {
    let forwarded: Vec<libc::c_int> = FORWARDED
        .into_iter()
        .filter(|s| !ignored.contains(s))
        .collect();
    let pipe = daemon_sys::signals_to_pipe(&forwarded)
        .map_err(|e| format!("cannot forward signals: {e}"))?;
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("cannot forward signals: {e}"))?;
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(pipe);
        let watch = [Watch::reading(pipe.as_raw_fd())];
        loop {
            if daemon_sys::poll(&watch, -1).is_err() {
                return;
            }
            let mut bytes = [0u8; 16];
            let n = match std::io::Read::read(&mut pipe, &mut bytes) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            };
            for &signal in &bytes[..n] {
                let frame = protocol::encode(&protocol::Signal {
                    signal: i32::from(signal),
                });
                if writer.write_all(&frame).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}

/// After a failed send: the daemon may have refused the connection (its
/// peer check answers before the request is read) and closed it; its
/// answer is then still there to read. Else `failure`.
fn refusal_or(stream: &mut UnixStream, failure: String) -> String {
    match answer(stream) {
        Ok(Reply::Error(why)) => why,
        _ => failure,
    }
}

fn ask(socket: &Path, op: Op) -> Result<Reply, String> {
    let mut stream = connect(socket)?;
    let frame = protocol::encode(&Request {
        version: protocol::VERSION,
        op,
    });
    if let Err(e) = stream.write_all(&frame) {
        return Err(refusal_or(&mut stream, format!("sending the request: {e}")));
    }
    match answer(&mut stream)? {
        Reply::Error(why) => Err(why),
        reply => Ok(reply),
    }
}

/// The daemon's status document.
pub fn status(socket: &Path) -> Result<serde_json::Value, String> {
    match ask(socket, Op::Status {})? {
        Reply::Status(document) => Ok(document),
        other => Err(format!("an answer that is not a status: {other:?}")),
    }
}

/// The daemon's OpenMetrics text.
pub fn metrics(socket: &Path) -> Result<String, String> {
    match ask(socket, Op::Metrics {})? {
        Reply::Metrics(text) => Ok(text),
        other => Err(format!("an answer that is not metrics: {other:?}")),
    }
}

/// `status` for people.
pub fn describe_status(status: &serde_json::Value) -> String {
    let number = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap_or(0.0);
    let text = |v: &serde_json::Value, key: &str| v[key].as_str().unwrap_or("").to_string();
    let mut out = format!(
        "tierjit daemon pid {} on {}, up {:.0} s{}\n",
        status["pid"],
        text(status, "socket"),
        number(status, "uptime_s"),
        if status["stopping"].as_bool() == Some(true) {
            ", stopping"
        } else {
            ""
        }
    );
    let config = &status["config"];
    out.push_str(&format!(
        "config: max_jobs {}, job_timeout_s {}, job_memory_mb {}, opt_level {}\n",
        config["daemon"]["max_jobs"],
        config["daemon"]["job_timeout_s"],
        config["daemon"]["job_memory_mb"],
        config["compiler"]["opt_level"]
    ));
    let list = |key: &str| status[key].as_array().cloned().unwrap_or_default();
    let running = list("running");
    out.push_str(&format!("running: {}\n", running.len()));
    for job in &running {
        out.push_str(&format!(
            "  #{} pid {} {} {:.1} s: functions {} at O0, {} at O3; {} OSR continuation(s); {} compile(s)\n",
            job["id"],
            job["pid"],
            text(job, "job"),
            number(job, "elapsed_s"),
            job["functions"]["O0"],
            job["functions"]["O3"],
            job["osr_continuations"],
            job["compiles"]
        ));
    }
    let queued = list("queued");
    if !queued.is_empty() {
        out.push_str(&format!("queued: {}\n", queued.len()));
    }
    let recent = list("recent");
    out.push_str(&format!("recent: {}\n", recent.len()));
    for job in recent.iter().take(10) {
        out.push_str(&format!(
            "  #{} pid {} {} {} after {:.3} s\n",
            job["id"],
            job["pid"],
            text(job, "job"),
            text(job, "outcome"),
            number(job, "seconds")
        ));
    }
    let totals = &status["totals"];
    out.push_str(&format!(
        "jobs: {} started, {} completed, {} failed; {} request(s) refused\n",
        totals["started"], totals["completed"], totals["failed"], totals["refused"]
    ));
    match status["cache"]["summary"].as_str() {
        Some(summary) => out.push_str(summary),
        None => out.push_str("cache: off\n"),
    }
    out
}
