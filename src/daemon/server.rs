//! `tierjit serve`: the daemon's event loop.
//!
//! One thread and `poll`: the daemon forks a worker process per job, and
//! a fork is only safe from a single-threaded process (the child gets
//! the calling thread alone). Its LLVM is initialized once, before the
//! loop, so a worker starts with targets registered and host libraries
//! loaded. Signals (SIGCHLD, SIGHUP, SIGTERM, SIGINT) arrive as bytes on
//! a pipe the loop watches.
//!
//! Nothing in the loop blocks on a peer: requests are read as they come
//! (with a deadline), answers are queued and written as the socket takes
//! them (with a deadline), and nothing is ever written to a job's own
//! streams, which a stalled reader could hold up.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::code::daemon_sys::{self, Ended, Watch};
use crate::config::Config;

use super::notify;
use super::protocol::{self, Frame, Op, OsText, Reply};
use super::report;
use super::stats::{JobFigures, Totals};

/// How long a client may take to send its request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How long a client may take to read its answer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

/// How long the daemon stops accepting once it is out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Finished jobs `status` remembers.
const RECENT_JOBS: usize = 32;

/// Jobs `status` lists by state (the counts are always whole).
const LISTED_JOBS: usize = 100;

/// How much of a job's name `status` shows.
const LABEL_CHARS: usize = 200;

/// Reads of a worker's report socket per wake-up, so that a job writing
/// without end cannot keep the loop to itself.
const REPORT_READS: usize = 16;

/// Runs a job in a worker process, as `tierjit run ARGS` would, with the
/// daemon's config under the job's own options; returns its exit status
/// (the worker exits with it).
pub type RunJob = fn(&Config, Vec<OsString>) -> i32;

pub struct ServeOptions {
    pub socket: PathBuf,
    /// The effective config: defaults, preset, file, overrides. Called at
    /// start and on SIGHUP.
    pub load_config: Box<dyn Fn() -> Result<Config, String>>,
    pub run_job: RunJob,
}

/// A connection whose request is still arriving.
struct Client {
    /// Numbers connections, so that the loop finds one again after others
    /// came and went.
    serial: u64,
    stream: UnixStream,
    buffer: Vec<u8>,
    fds: Vec<OwnedFd>,
    accepted: Instant,
    uid: u32,
    gid: u32,
}

/// An answer being written.
struct Outgoing {
    stream: UnixStream,
    bytes: Vec<u8>,
    written: usize,
    deadline: Instant,
}

/// A submitted job: queued, then running in its worker.
struct Job {
    id: u64,
    /// The submitter's connection; `None` once it went away.
    client: Option<UnixStream>,
    /// Bytes of a partial signal frame from the client.
    pending: Vec<u8>,
    label: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// stdin, stdout, stderr, working directory.
    fds: Vec<OwnedFd>,
    /// Signals the job starts with ignored.
    ignored: Vec<i32>,
    uid: u32,
    gid: u32,
    submitted: Instant,
    /// Set once its worker runs.
    running: Option<Running>,
}

struct Running {
    pid: i32,
    started: Instant,
    /// When the time limit kills it; cleared once it was killed.
    deadline: Option<Instant>,
    /// Why the daemon killed it, if it did.
    killed_for: Option<String>,
    /// The worker's reports (`daemon::report`), and a partial line.
    report: UnixStream,
    report_buffer: Vec<u8>,
    figures: JobFigures,
}

/// A job that ended, for `status`.
struct Finished {
    id: u64,
    label: String,
    pid: i32,
    outcome: String,
    seconds: f64,
}

struct Daemon {
    options: ServeOptions,
    config: Config,
    started: Instant,
    listener: Option<UnixListener>,
    /// Not watched until then: out of descriptors.
    accept_paused_until: Option<Instant>,
    /// Whether the current run of failed accepts was logged (once).
    accept_failure_logged: bool,
    signals: std::fs::File,
    clients: Vec<Client>,
    outgoing: Vec<Outgoing>,
    jobs: Vec<Job>,
    finished: VecDeque<Finished>,
    totals: Totals,
    next_id: u64,
    next_client: u64,
    /// When SIGTERM came: the grace period's end; `None` once the
    /// stragglers were killed.
    stopping: Option<Instant>,
    stopped: bool,
    own_uid: u32,
}

/// Serves until SIGTERM (or SIGINT); the process's exit status.
pub fn serve(options: ServeOptions) -> Result<i32, String> {
    let config = (options.load_config)()?;
    crate::runtime::init_process().map_err(|e| e.to_string())?;
    daemon_sys::ignore_broken_pipes();
    let signals =
        daemon_sys::signals_to_pipe(&[libc::SIGCHLD, libc::SIGHUP, libc::SIGTERM, libc::SIGINT])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let listener = bind(&options.socket)?;
    let mut daemon = Daemon {
        config,
        started: Instant::now(),
        listener: Some(listener),
        accept_paused_until: None,
        accept_failure_logged: false,
        signals: std::fs::File::from(signals),
        clients: Vec::new(),
        outgoing: Vec::new(),
        jobs: Vec::new(),
        finished: VecDeque::new(),
        totals: Totals::default(),
        next_id: 1,
        next_client: 0,
        stopping: None,
        stopped: false,
        own_uid: daemon_sys::effective_uid(),
        options,
    };
    log(&format!(
        "serving on {} (max {} job(s) at once)",
        daemon.options.socket.display(),
        max_jobs(&daemon.config)
    ));
    notify::send("READY=1");
    daemon.run();
    log("stopped");
    Ok(0)
}

/// Binds `path`, mode 0600. A socket file left by a daemon that is gone
/// is replaced; one a live daemon answers on is an error.
fn bind(path: &Path) -> Result<UnixListener, String> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{} is in use by a running daemon", path.display()));
        }
        let is_socket = std::fs::symlink_metadata(path)
            .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            .unwrap_or(false);
        if !is_socket {
            return Err(format!("{} exists and is not a socket", path.display()));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    // The peer check at accept is the real gate; the mode keeps other
    // users from even connecting.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    Ok(listener)
}

fn log(message: &str) {
    say!("tierjit serve: {message}");
}

/// What a ready descriptor of one pass belongs to.
#[derive(Clone, Copy)]
enum Source {
    Signals,
    Listener,
    Client(u64),
    Answer(usize),
    Submitter(u64),
    Report(u64),
}

impl Daemon {
    fn run(&mut self) {
        loop {
            if self.stopped && self.jobs.is_empty() && self.outgoing.is_empty() {
                return;
            }
            let now = Instant::now();
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
            }
            let mut watches = Vec::new();
            let mut sources = Vec::new();
            let mut watch = |watch: Watch, source: Source| {
                watches.push(watch);
                sources.push(source);
            };
            watch(Watch::reading(self.signals.as_raw_fd()), Source::Signals);
            if let (Some(listener), None) = (&self.listener, self.accept_paused_until) {
                watch(Watch::reading(listener.as_raw_fd()), Source::Listener);
            }
            for client in &self.clients {
                watch(
                    Watch::reading(client.stream.as_raw_fd()),
                    Source::Client(client.serial),
                );
            }
            for (i, answer) in self.outgoing.iter().enumerate() {
                watch(Watch::writing(answer.stream.as_raw_fd()), Source::Answer(i));
            }
            for job in &self.jobs {
                if let Some(client) = &job.client {
                    watch(
                        Watch::reading(client.as_raw_fd()),
                        Source::Submitter(job.id),
                    );
                }
                if let Some(running) = &job.running {
                    watch(
                        Watch::reading(running.report.as_raw_fd()),
                        Source::Report(job.id),
                    );
                }
            }
            let ready = match daemon_sys::poll(&watches, self.poll_timeout_ms()) {
                Ok(ready) => ready,
                Err(e) => {
                    log(&format!("poll failed: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            // Answers first, by index, before anything adds or removes one.
            let mut done = Vec::new();
            for (k, source) in sources.iter().enumerate() {
                if let (true, Source::Answer(i)) = (ready[k], source) {
                    if Daemon::write_some(&mut self.outgoing[*i]) {
                        done.push(*i);
                    }
                }
            }
            for i in done.into_iter().rev() {
                self.outgoing.remove(i);
            }
            // The rest by number: handling one may remove others (a stop
            // closes every client, a reaped job leaves the list).
            for (k, source) in sources.into_iter().enumerate() {
                if !ready[k] {
                    continue;
                }
                match source {
                    Source::Signals => self.take_signals(),
                    Source::Listener => self.accept(),
                    Source::Client(serial) => {
                        if let Some(at) = self.clients.iter().position(|c| c.serial == serial) {
                            self.read_request(at);
                        }
                    }
                    Source::Answer(_) => {}
                    Source::Submitter(id) => {
                        if let Some(at) = self.jobs.iter().position(|j| j.id == id) {
                            self.read_from_submitter(at);
                        }
                    }
                    Source::Report(id) => {
                        if let Some(at) = self.jobs.iter().position(|j| j.id == id) {
                            self.read_reports(at);
                        }
                    }
                }
            }
            self.enforce_deadlines();
            self.start_queued();
        }
    }

    fn poll_timeout_ms(&self) -> i32 {
        let now = Instant::now();
        let deadlines = self
            .jobs
            .iter()
            .filter_map(|j| j.running.as_ref()?.deadline)
            .chain(self.clients.iter().map(|c| c.accepted + REQUEST_DEADLINE))
            .chain(self.outgoing.iter().map(|o| o.deadline))
            .chain(self.accept_paused_until)
            .chain(self.stopping);
        let next = deadlines
            .map(|d| d.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        next.as_millis() as i32 + 1
    }

    fn take_signals(&mut self) {
        let mut bytes = [0u8; 64];
        let mut got = Vec::new();
        while let Ok(n) = (&self.signals).read(&mut bytes) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&bytes[..n]);
        }
        // Children first: a SIGTERM's wait counts the jobs still running.
        self.reap();
        if got.contains(&(libc::SIGHUP as u8)) {
            self.reload();
        }
        if got.contains(&(libc::SIGTERM as u8)) || got.contains(&(libc::SIGINT as u8)) {
            self.begin_stop();
        }
    }

    fn reload(&mut self) {
        notify::send("RELOADING=1");
        match (self.options.load_config)() {
            Ok(config) => {
                self.config = config;
                log("config reloaded; new jobs use it");
            }
            Err(e) => log(&format!("config not reloaded, keeping the old one: {e}")),
        }
        notify::send("READY=1");
    }

    fn begin_stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        notify::send("STOPPING=1");
        let grace = Duration::from_secs(self.config.daemon.shutdown_grace_s);
        let running = self.jobs.iter().filter(|j| j.running.is_some()).count();
        log(&format!(
            "stopping: no new jobs; waiting up to {} s for {running} running job(s)",
            grace.as_secs()
        ));
        self.stopping = Some(Instant::now() + grace);
        self.listener = None;
        let _ = std::fs::remove_file(&self.options.socket);
        for client in std::mem::take(&mut self.clients) {
            self.answer(
                client.stream,
                &Reply::Error("the daemon is stopping".into()),
            );
        }
        let (queued, running) = std::mem::take(&mut self.jobs)
            .into_iter()
            .partition(|j| j.running.is_none());
        self.jobs = running;
        for job in queued {
            let Job {
                client, id, label, ..
            } = job;
            self.totals.refused += 1;
            log(&format!(
                "job {id} ({label}): dropped, the daemon is stopping"
            ));
            if let Some(client) = client {
                let why = "the daemon stopped before the job started".to_string();
                self.answer(client, &Reply::Error(why));
            }
        }
    }

    fn reap(&mut self) {
        while let Some((pid, ended)) = daemon_sys::reap_child() {
            let Some(i) = self
                .jobs
                .iter()
                .position(|j| j.running.as_ref().is_some_and(|r| r.pid == pid))
            else {
                continue;
            };
            // What it reported before it ended is all there.
            self.read_reports(i);
            let job = self.jobs.remove(i);
            let running = job.running.expect("a running job");
            let seconds = running.started.elapsed().as_secs_f64();
            let (answer, outcome) = match (ended, running.killed_for) {
                (Ended::Exited(code), _) => (Reply::Exited(code), format!("exited {code}")),
                (Ended::Signaled(signal), Some(why)) => (
                    Reply::Killed {
                        signal,
                        why: why.clone(),
                    },
                    format!("killed ({why})"),
                ),
                (Ended::Signaled(signal), None) => (
                    Reply::Signaled(signal),
                    format!("killed by signal {signal}"),
                ),
            };
            if matches!(ended, Ended::Exited(0)) {
                self.totals.completed += 1;
            } else {
                self.totals.failed += 1;
            }
            log(&format!(
                "job {} ({}, pid {pid}) {outcome} after {seconds:.3} s",
                job.id, job.label
            ));
            if let Some(client) = job.client {
                self.answer(client, &answer);
            }
            self.finished.push_front(Finished {
                id: job.id,
                label: job.label,
                pid,
                outcome,
                seconds,
            });
            self.finished.truncate(RECENT_JOBS);
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors, most likely: the listener stays
                    // readable, so it is left alone for a moment rather
                    // than polled in a busy loop.
                    if !self.accept_failure_logged {
                        self.accept_failure_logged = true;
                        log(&format!(
                            "cannot accept a connection ({e}); pausing {} ms at a time until one is accepted",
                            ACCEPT_PAUSE.as_millis()
                        ));
                    }
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            };
            if self.accept_failure_logged {
                self.accept_failure_logged = false;
                log("accepting connections again");
            }
            let (pid, uid, gid) = match daemon_sys::peer_credentials(&stream) {
                Ok(cred) => cred,
                Err(e) => {
                    log(&format!("a client without credentials ({e}); closed"));
                    continue;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if uid != self.own_uid && uid != 0 {
                log(&format!("refused pid {pid}: uid {uid} may not submit"));
                self.totals.refused += 1;
                let why = format!(
                    "uid {uid} may not use this daemon (only uid {} or root)",
                    self.own_uid
                );
                self.answer(stream, &Reply::Error(why));
                continue;
            }
            self.next_client += 1;
            self.clients.push(Client {
                serial: self.next_client,
                stream,
                buffer: Vec::new(),
                fds: Vec::new(),
                accepted: Instant::now(),
                uid,
                gid,
            });
        }
    }

    /// Reads what client `k` sent; acts once its request is whole.
    fn read_request(&mut self, k: usize) {
        let client = &mut self.clients[k];
        let mut chunk = vec![0u8; 64 * 1024];
        let (n, fds) = match daemon_sys::receive_with_fds(&client.stream, &mut chunk) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                let client = self.clients.remove(k);
                self.refuse(client.stream, &format!("bad message: {e}"));
                return;
            }
        };
        client.fds.extend(fds);
        if client.fds.len() > daemon_sys::MAX_PASSED_FDS {
            let client = self.clients.remove(k);
            self.refuse(client.stream, "a request carried too many descriptors");
            return;
        }
        if n == 0 {
            let client = self.clients.remove(k);
            if !client.buffer.is_empty() {
                log(&format!(
                    "a client went away mid-request ({} byte(s) sent)",
                    client.buffer.len()
                ));
            }
            return;
        }
        client.buffer.extend_from_slice(&chunk[..n]);
        let body = match protocol::first_frame(&client.buffer) {
            Frame::Partial => return,
            Frame::TooLarge(length) => {
                let client = self.clients.remove(k);
                let why = format!(
                    "a request of {length} bytes, over the limit of {}",
                    protocol::MAX_FRAME
                );
                self.refuse(client.stream, &why);
                return;
            }
            Frame::Whole(body, _) => body.to_vec(),
        };
        let client = self.clients.remove(k);
        match protocol::parse_request(&body) {
            Err(why) => self.refuse(client.stream, &why),
            Ok(request) => self.act_on(client, request.op),
        }
    }

    fn refuse(&mut self, stream: UnixStream, why: &str) {
        self.totals.refused += 1;
        log(&format!("refused a request: {why}"));
        self.answer(stream, &Reply::Error(why.to_string()));
    }

    /// Queues `reply` to be written to `stream`, which is then closed.
    fn answer(&mut self, stream: UnixStream, reply: &Reply) {
        let _ = stream.set_nonblocking(true);
        let mut answer = Outgoing {
            stream,
            bytes: protocol::encode(reply),
            written: 0,
            deadline: Instant::now() + ANSWER_DEADLINE,
        };
        // Most answers fit the socket's buffer at once.
        if !Daemon::write_some(&mut answer) {
            self.outgoing.push(answer);
        }
    }

    /// Writes what `answer` can take now; true once it is done (all
    /// written, or the client is gone).
    fn write_some(answer: &mut Outgoing) -> bool {
        loop {
            match (&answer.stream).write(&answer.bytes[answer.written..]) {
                Ok(0) => return true,
                Ok(n) => {
                    answer.written += n;
                    if answer.written == answer.bytes.len() {
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    fn act_on(&mut self, client: Client, op: Op) {
        match op {
            Op::Status {} => {
                let status = self.status();
                self.answer(client.stream, &Reply::Status(status));
            }
            Op::Metrics {} => {
                let running = self.jobs.iter().filter(|j| j.running.is_some()).count();
                let queued = self.jobs.len() - running;
                let uptime = self.started.elapsed().as_secs_f64();
                let text = self.totals.metrics(running, queued, uptime);
                self.answer(client.stream, &Reply::Metrics(text));
            }
            Op::Submit { args, env, ignored } => {
                if client.fds.len() != 4 {
                    let why = format!(
                        "a submission carries the job's stdin, stdout, stderr and working directory (4 descriptors), not {}",
                        client.fds.len()
                    );
                    self.refuse(client.stream, &why);
                    return;
                }
                if self.stopped {
                    self.refuse(client.stream, "the daemon is stopping");
                    return;
                }
                let id = self.next_id;
                self.next_id += 1;
                let args: Vec<OsString> = args.iter().map(OsText::to_os_string).collect();
                let env = env
                    .iter()
                    .map(|(k, v)| (k.to_os_string(), v.to_os_string()))
                    .collect();
                let label = job_label(&args);
                let Client {
                    stream,
                    fds,
                    uid,
                    gid,
                    ..
                } = client;
                log(&format!("job {id} ({label}) submitted by uid {uid}"));
                self.jobs.push(Job {
                    id,
                    client: Some(stream),
                    pending: Vec::new(),
                    label,
                    args,
                    env,
                    fds,
                    ignored: ignored
                        .into_iter()
                        .filter(|s| (1..32).contains(s))
                        .collect(),
                    uid,
                    gid,
                    submitted: Instant::now(),
                    running: None,
                });
            }
        }
    }

    /// Reads from the submitter of job `i`: signal frames for the job;
    /// the connection's end kills it (a queued one is dropped).
    fn read_from_submitter(&mut self, i: usize) {
        let job = &mut self.jobs[i];
        let Some(client) = &job.client else { return };
        let mut chunk = [0u8; 256];
        let signals: Vec<i32> = match Read::read(&mut &*client, &mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Ok(0) | Err(_) => {
                job.client = None;
                match &mut job.running {
                    None => {
                        let job = self.jobs.remove(i);
                        log(&format!(
                            "job {} ({}): its submitter went away while it was queued; dropped",
                            job.id, job.label
                        ));
                    }
                    Some(running) => {
                        log(&format!(
                            "job {} ({}): its submitter went away; killing it",
                            job.id, job.label
                        ));
                        kill(running, libc::SIGKILL, "its submitter went away");
                    }
                }
                return;
            }
            Ok(n) => {
                job.pending.extend_from_slice(&chunk[..n]);
                let mut signals = Vec::new();
                while let Frame::Whole(body, used) = protocol::first_frame(&job.pending) {
                    if let Ok(signal) = serde_json::from_slice::<protocol::Signal>(body) {
                        if (1..64).contains(&signal.signal) {
                            signals.push(signal.signal);
                        }
                    }
                    job.pending.drain(..used);
                }
                if matches!(protocol::first_frame(&job.pending), Frame::TooLarge(_)) {
                    job.pending.clear();
                }
                signals
            }
        };
        for signal in signals {
            match &self.jobs[i].running {
                Some(running) => {
                    daemon_sys::signal_group(running.pid, signal);
                }
                // A job that has not started ends as if the signal had
                // killed it, if it would have.
                None if ENDS_A_JOB.contains(&signal) => {
                    let job = self.jobs.remove(i);
                    log(&format!(
                        "job {} ({}): signal {signal} while queued; dropped",
                        job.id, job.label
                    ));
                    if let Some(client) = job.client {
                        self.answer(client, &Reply::Signaled(signal));
                    }
                    return;
                }
                None => {}
            }
        }
    }

    /// Takes what job `i`'s worker reported.
    fn read_reports(&mut self, i: usize) {
        let Some(running) = &mut self.jobs[i].running else {
            return;
        };
        let mut chunk = [0u8; 4096];
        for _ in 0..REPORT_READS {
            match (&running.report).read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => running.report_buffer.extend_from_slice(&chunk[..n]),
            }
            // Lines that long are not the runtime's.
            if running.report_buffer.len() > 64 * 1024 {
                running.report_buffer.clear();
            }
        }
        for event in report::take_events(&mut running.report_buffer) {
            self.totals.note(&event, &mut running.figures);
        }
    }

    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let (late, on_time): (Vec<Client>, Vec<Client>) = std::mem::take(&mut self.clients)
            .into_iter()
            .partition(|c| now >= c.accepted + REQUEST_DEADLINE);
        self.clients = on_time;
        for client in late {
            log("a client sent no whole request in time; closed");
            self.answer(
                client.stream,
                &Reply::Error("no whole request in time".into()),
            );
        }
        self.outgoing.retain(|o| now < o.deadline);
        let limit = self.config.daemon.job_timeout_s;
        for job in &mut self.jobs {
            let Some(running) = &mut job.running else {
                continue;
            };
            if running.deadline.is_some_and(|d| now >= d) {
                let why = format!("it ran past daemon.job_timeout_s ({limit} s)");
                log(&format!("job {} ({}): killed, {why}", job.id, job.label));
                kill(running, libc::SIGKILL, &why);
            }
        }
        if self.stopping.is_some_and(|end| now >= end) {
            self.stopping = None;
            for job in &mut self.jobs {
                if let Some(running) = &mut job.running {
                    kill(running, libc::SIGKILL, "the daemon stopped");
                }
            }
        }
    }

    fn start_queued(&mut self) {
        if self.stopped {
            return;
        }
        let max = max_jobs(&self.config);
        while self.jobs.iter().filter(|j| j.running.is_some()).count() < max {
            let Some(i) = self.jobs.iter().position(|j| j.running.is_none()) else {
                return;
            };
            self.start(i);
        }
    }

    fn start(&mut self, i: usize) {
        let config = self.worker_config();
        let (report, worker_end) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                self.could_not_start(i, &format!("no report socket: {e}"));
                return;
            }
        };
        let _ = report.set_nonblocking(true);
        let job = &self.jobs[i];
        let user = (self.own_uid == 0 && job.uid != 0).then_some((job.uid, job.gid));
        let setup = daemon_sys::WorkerSetup {
            stdio: [job.fds[0].as_fd(), job.fds[1].as_fd(), job.fds[2].as_fd()],
            cwd: job.fds[3].as_fd(),
            report: Some(worker_end.as_fd()),
            ignored: &job.ignored,
            memory_limit: (config.daemon.job_memory_mb > 0)
                .then_some(config.daemon.job_memory_mb << 20),
            user,
        };
        let _ = std::io::stderr().flush();
        match daemon_sys::fork() {
            Ok(None) => worker(&setup, job, &config, self.options.run_job),
            Ok(Some(pid)) => {
                daemon_sys::set_process_group(pid);
                self.totals.started += 1;
                let timeout = config.daemon.job_timeout_s;
                let job = &mut self.jobs[i];
                log(&format!(
                    "job {} ({}) started, pid {pid}, after {:.1} ms queued",
                    job.id,
                    job.label,
                    job.submitted.elapsed().as_secs_f64() * 1e3
                ));
                // The worker has its copies.
                job.fds.clear();
                job.running = Some(Running {
                    pid,
                    started: Instant::now(),
                    deadline: (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout)),
                    killed_for: None,
                    report,
                    report_buffer: Vec::new(),
                    figures: JobFigures::default(),
                });
            }
            Err(e) => self.could_not_start(i, &format!("cannot fork: {e}")),
        }
    }

    fn could_not_start(&mut self, i: usize, why: &str) {
        let job = self.jobs.remove(i);
        self.totals.failed += 1;
        log(&format!("job {} ({}): {why}", job.id, job.label));
        if let Some(client) = job.client {
            self.answer(
                client,
                &Reply::Error(format!("cannot start a worker: {why}")),
            );
        }
    }

    /// The config a worker starts from: the daemon's, with the cache
    /// directory resolved here, so that every job shares the daemon's
    /// cache whatever its own environment says.
    fn worker_config(&self) -> Config {
        let mut config = self.config.clone();
        if config.cache.enabled {
            match crate::cache::location(&config.cache.dir) {
                Some(dir) => config.cache.dir = dir.display().to_string(),
                None => config.cache.enabled = false,
            }
        }
        config
    }

    fn status(&self) -> serde_json::Value {
        let now = Instant::now();
        let running: Vec<&Job> = self.jobs.iter().filter(|j| j.running.is_some()).collect();
        let queued: Vec<&Job> = self.jobs.iter().filter(|j| j.running.is_none()).collect();
        let running_list: Vec<serde_json::Value> = running
            .iter()
            .take(LISTED_JOBS)
            .filter_map(|j| {
                let r = j.running.as_ref()?;
                let f = &r.figures;
                Some(serde_json::json!({
                    "id": j.id,
                    "pid": r.pid,
                    "job": j.label,
                    "uid": j.uid,
                    "elapsed_s": now.duration_since(r.started).as_secs_f64(),
                    "functions": {
                        "O0": f.functions.saturating_sub(f.optimized_functions),
                        "O3": f.optimized_functions,
                    },
                    "osr_continuations": f.continuations,
                    "compiles": f.compiles,
                }))
            })
            .collect();
        let queued_list: Vec<serde_json::Value> = queued
            .iter()
            .take(LISTED_JOBS)
            .map(|j| {
                serde_json::json!({
                    "id": j.id,
                    "job": j.label,
                    "queued_s": now.duration_since(j.submitted).as_secs_f64(),
                })
            })
            .collect();
        let recent: Vec<serde_json::Value> = self
            .finished
            .iter()
            .map(|f| {
                serde_json::json!({
                    "id": f.id,
                    "pid": f.pid,
                    "job": f.label,
                    "outcome": f.outcome,
                    "seconds": f.seconds,
                })
            })
            .collect();
        let cache = crate::cache::Cache::from_config(&self.worker_config().cache);
        let cache = cache.map_or(serde_json::Value::Null, |c| {
            serde_json::json!({
                "dir": c.root().display().to_string(),
                "summary": crate::cache::describe(&c),
            })
        });
        serde_json::json!({
            "pid": std::process::id(),
            "uptime_s": now.duration_since(self.started).as_secs_f64(),
            "socket": self.options.socket.display().to_string(),
            "stopping": self.stopped,
            "config": serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null),
            "jobs_running": running.len(),
            "jobs_queued": queued.len(),
            "running": running_list,
            "queued": queued_list,
            "recent": recent,
            "totals": self.totals.to_json(),
            "cache": cache,
        })
    }
}

/// Signals that end a job that has not started yet when its submitter
/// passes them on.
const ENDS_A_JOB: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Kills a running job's process group with `signal`, once, for `why`.
fn kill(running: &mut Running, signal: i32, why: &str) {
    running.deadline = None;
    if running.killed_for.is_none() {
        running.killed_for = Some(why.to_string());
        daemon_sys::signal_group(running.pid, signal);
    }
}

/// Jobs run at once: `daemon.max_jobs`, or one per CPU.
fn max_jobs(config: &Config) -> usize {
    match config.daemon.max_jobs {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    }
}

/// The worker process: sets itself up and runs the job; never returns.
fn worker(setup: &daemon_sys::WorkerSetup<'_>, job: &Job, config: &Config, run: RunJob) -> ! {
    if let Err(why) = daemon_sys::set_up_worker(setup) {
        // Every step that can fail runs before the job's streams move,
        // so its stderr is still where it came.
        let message = format!("tierjit: error: cannot start the job: {why}\n");
        match job.fds[2].try_clone() {
            Ok(stderr) => {
                let _ = std::fs::File::from(stderr).write_all(message.as_bytes());
            }
            Err(_) => {
                let _ = std::io::stderr().write_all(message.as_bytes());
            }
        }
        std::process::exit(125)
    }
    report::open(daemon_sys::take_report_channel());
    // Single-threaded until the job starts: the environment may change.
    for (key, _) in std::env::vars_os() {
        std::env::remove_var(key);
    }
    for (key, value) in &job.env {
        use std::os::unix::ffi::OsStrExt;
        let (k, v) = (key.as_bytes(), value.as_bytes());
        if !k.is_empty() && !k.contains(&b'=') && !k.contains(&0) && !v.contains(&0) {
            std::env::set_var(key, value);
        }
    }
    crate::exit(run(config, job.args.clone()))
}

/// What `status` calls a job: its inputs (`a.c + b.cpp`), else its first
/// argument; at most `LABEL_CHARS` characters of it.
fn job_label(args: &[OsString]) -> String {
    let before_job_args = args.iter().take_while(|a| *a != "--");
    let inputs: Vec<String> = before_job_args
        .filter(|a| crate::ir::load::JobKind::of(std::path::Path::new(a)).is_ok())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let named: std::borrow::Cow<'_, str> = if inputs.is_empty() {
        args.first()
            .map(|a| a.to_string_lossy())
            .unwrap_or_default()
    } else {
        inputs.join(" + ").into()
    };
    match named.char_indices().nth(LABEL_CHARS) {
        Some((end, _)) => format!("{}...", &named[..end]),
        None => named.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_named_by_its_file_and_briefly() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(job_label(&args(&["--stats", "k.c", "--", "x.c"])), "k.c");
        assert_eq!(job_label(&args(&["--mode", "baseline", "m.ll"])), "m.ll");
        assert_eq!(
            job_label(&args(&[
                "--stats", "a.cpp", "-l", "z", "b.f90", "--", "c.c"
            ])),
            "a.cpp + b.f90"
        );
        assert_eq!(job_label(&args(&["weird"])), "weird");
        let long = format!("{}.c", "é".repeat(1000));
        let label = job_label(&args(&[long.as_str()]));
        assert_eq!(label.chars().count(), LABEL_CHARS + 3);
    }
}
