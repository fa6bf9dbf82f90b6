//! `tierjit serve`: the daemon's event loop.
//!
//! One thread and `poll`: the daemon forks a worker process per job, and
//! a fork is only safe from a single-threaded process (the child gets
//! the calling thread alone). Its LLVM is initialized once, before the
//! loop, so a worker starts with targets registered and host libraries
//! loaded. Signals (SIGCHLD, SIGHUP, SIGTERM, SIGINT) arrive as bytes on
//! a pipe the loop watches.

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
use super::protocol::{self, Frame, Op, Reply};
use super::report::{self, Event};

/// How long a client may take to send its request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Finished jobs `status` remembers.
const RECENT_JOBS: usize = 32;

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

/// A submitted job: queued, then running in its worker.
struct Job {
    id: u64,
    client: UnixStream,
    label: String,
    args: Vec<String>,
    cwd: String,
    env: Vec<(String, String)>,
    /// stdin, stdout, stderr.
    stdio: Vec<OwnedFd>,
    uid: u32,
    gid: u32,
    submitted: Instant,
    /// Set once its worker runs.
    running: Option<Running>,
}

struct Running {
    pid: i32,
    started: Instant,
    deadline: Option<Instant>,
    /// Why the daemon killed it, if it did.
    killed_for: Option<String>,
    /// Bytes of a partial signal frame from the client.
    pending: Vec<u8>,
    /// The worker's reports (`daemon::report`), and a partial line.
    report: UnixStream,
    report_buffer: Vec<u8>,
    /// What the reports said so far.
    functions: u64,
    optimized_functions: u64,
    continuations: u64,
    compiles: u64,
}

/// A job that ended, for `status`.
struct Finished {
    id: u64,
    label: String,
    pid: i32,
    outcome: String,
    seconds: f64,
}

#[derive(Default)]
struct Totals {
    started: u64,
    completed: u64,
    failed: u64,
    refused: u64,
    /// Per tier ("O0", "O3").
    compiles: std::collections::BTreeMap<String, CompileTimes>,
    /// Per cache kind: hits, misses.
    cache: std::collections::BTreeMap<String, (u64, u64)>,
}

/// Upper bounds (s) of the compile-time histogram's buckets.
const COMPILE_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct CompileTimes {
    count: u64,
    failed: u64,
    seconds: f64,
    /// Compiles at or under each of `COMPILE_BUCKETS`.
    buckets: [u64; COMPILE_BUCKETS.len()],
}

impl Totals {
    /// Adds what a worker reported, to the job's figures and the totals.
    fn note(&mut self, event: &Event, running: &mut Running) {
        match event {
            Event::Loaded {
                functions,
                optimized,
            } => {
                running.functions = *functions;
                if *optimized {
                    running.optimized_functions = *functions;
                }
            }
            Event::Compiled {
                tier,
                seconds,
                osr,
                installed,
                first,
            } => {
                running.compiles += 1;
                if *installed && *osr {
                    running.continuations += 1;
                }
                if *first {
                    running.optimized_functions =
                        (running.optimized_functions + 1).min(running.functions);
                }
                let times = self.compiles.entry(tier.clone()).or_default();
                times.count += 1;
                if !installed {
                    times.failed += 1;
                }
                times.seconds += seconds;
                for (bound, count) in COMPILE_BUCKETS.iter().zip(&mut times.buckets) {
                    if seconds <= bound {
                        *count += 1;
                    }
                }
            }
            Event::Cache { kind, hit } => {
                let counts = self.cache.entry(kind.clone()).or_default();
                if *hit {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
        }
    }
}

struct Daemon {
    options: ServeOptions,
    config: Config,
    started: Instant,
    listener: Option<UnixListener>,
    signals: OwnedFd,
    clients: Vec<Client>,
    jobs: Vec<Job>,
    finished: VecDeque<Finished>,
    totals: Totals,
    next_id: u64,
    next_client: u64,
    /// When SIGTERM came: the grace period's end.
    stopping: Option<Instant>,
    killed_stragglers: bool,
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
        signals,
        clients: Vec::new(),
        jobs: Vec::new(),
        finished: VecDeque::new(),
        totals: Totals::default(),
        next_id: 1,
        next_client: 1,
        stopping: None,
        killed_stragglers: false,
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
    let _ = std::fs::remove_file(&daemon.options.socket);
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
    // Before anyone could connect in earnest: the peer check below is the
    // real gate, the mode keeps other users from even connecting.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    Ok(listener)
}

fn log(message: &str) {
    eprintln!("tierjit serve: {message}");
}

impl Daemon {
    fn run(&mut self) {
        loop {
            if let Some(grace_end) = self.stopping {
                if self.jobs.iter().all(|j| j.running.is_none()) {
                    return;
                }
                if Instant::now() >= grace_end && !self.killed_stragglers {
                    self.killed_stragglers = true;
                    for job in &mut self.jobs {
                        if let Some(running) = &mut job.running {
                            running.killed_for = Some("the daemon stopped".into());
                            daemon_sys::signal_group(running.pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let mut watches = vec![Watch {
                fd: self.signals.as_raw_fd(),
                readable: true,
            }];
            if let Some(listener) = &self.listener {
                watches.push(Watch {
                    fd: listener.as_raw_fd(),
                    readable: true,
                });
            }
            let first_client = watches.len();
            let clients: Vec<u64> = self.clients.iter().map(|c| c.serial).collect();
            watches.extend(self.clients.iter().map(|c| Watch {
                fd: c.stream.as_raw_fd(),
                readable: true,
            }));
            let first_job = watches.len();
            let running: Vec<u64> = self
                .jobs
                .iter()
                .filter(|j| j.running.is_some())
                .map(|j| j.id)
                .collect();
            watches.extend(
                self.jobs
                    .iter()
                    .filter(|j| j.running.is_some())
                    .map(|j| Watch {
                        fd: j.client.as_raw_fd(),
                        readable: true,
                    }),
            );
            let first_report = watches.len();
            watches.extend(self.jobs.iter().filter_map(|j| {
                Some(Watch {
                    fd: j.running.as_ref()?.report.as_raw_fd(),
                    readable: true,
                })
            }));
            let ready = match daemon_sys::poll(&watches, self.poll_timeout_ms()) {
                Ok(ready) => ready,
                Err(e) => {
                    log(&format!("poll failed: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if ready[0] {
                self.take_signals();
            }
            if self.listener.is_some() && ready[1] {
                self.accept();
            }
            // By number: handling one may remove others (a stop closes
            // every client, a reaped job leaves the list).
            for (k, serial) in clients.into_iter().enumerate() {
                if ready[first_client + k] {
                    if let Some(at) = self.clients.iter().position(|c| c.serial == serial) {
                        self.read_request(at);
                    }
                }
            }
            for (k, &id) in running.iter().enumerate() {
                if ready[first_report + k] {
                    if let Some(at) = self.jobs.iter().position(|j| j.id == id) {
                        self.read_reports(at);
                    }
                }
                if ready[first_job + k] {
                    if let Some(at) = self.jobs.iter().position(|j| j.id == id) {
                        self.read_from_submitter(at);
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
        let mut pipe = std::fs::File::from(self.signals.try_clone().expect("dup the signal pipe"));
        let mut got = Vec::new();
        while let Ok(n) = pipe.read(&mut bytes) {
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
        if self.stopping.is_some() {
            return;
        }
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
            reply(
                &client.stream,
                &Reply::Error("the daemon is stopping".into()),
            );
        }
        let queued: Vec<Job> = self.jobs.extract_if_queued();
        for job in queued {
            self.totals.refused += 1;
            reply(
                &job.client,
                &Reply::Error("the daemon stopped before the job started".into()),
            );
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
            let (answer, outcome) = match ended {
                Ended::Exited(code) => (Reply::Exited(code), format!("exited {code}")),
                Ended::Signaled(signal) => (
                    Reply::Signaled(signal),
                    match &running.killed_for {
                        Some(why) => format!("killed ({why})"),
                        None => format!("killed by signal {signal}"),
                    },
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
            reply(&job.client, &answer);
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
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log(&format!("accept failed: {e}"));
                    return;
                }
            };
            let (pid, uid, gid) = match daemon_sys::peer_credentials(&stream) {
                Ok(cred) => cred,
                Err(e) => {
                    log(&format!("a client without credentials ({e}); closed"));
                    continue;
                }
            };
            if uid != self.own_uid && uid != 0 {
                log(&format!("refused pid {pid}: uid {uid} may not submit"));
                self.totals.refused += 1;
                reply(
                    &stream,
                    &Reply::Error(format!(
                        "uid {uid} may not use this daemon (only uid {} or root)",
                        self.own_uid
                    )),
                );
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
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
                log(&format!("bad message from a client ({e}); closed"));
                reply(&client.stream, &Reply::Error(format!("bad message: {e}")));
                return;
            }
        };
        client.fds.extend(fds);
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
                self.refuse(
                    &client.stream,
                    &format!(
                        "a request of {length} bytes, over the limit of {}",
                        protocol::MAX_FRAME
                    ),
                );
                return;
            }
            Frame::Whole(body, _) => body.to_vec(),
        };
        let client = self.clients.remove(k);
        match protocol::parse_request(&body) {
            Err(why) => self.refuse(&client.stream, &why),
            Ok(request) => self.answer(client, request.op),
        }
    }

    fn refuse(&mut self, stream: &UnixStream, why: &str) {
        self.totals.refused += 1;
        log(&format!("refused a request: {why}"));
        reply(stream, &Reply::Error(why.to_string()));
    }

    fn answer(&mut self, client: Client, op: Op) {
        match op {
            Op::Status => reply(&client.stream, &Reply::Status(self.status())),
            Op::Metrics => reply(&client.stream, &Reply::Metrics(self.metrics())),
            Op::Submit { args, cwd, env } => {
                if client.fds.len() != 3 {
                    let why = format!(
                        "a submission carries the job's stdin, stdout and stderr (3 descriptors), not {}",
                        client.fds.len()
                    );
                    self.refuse(&client.stream, &why);
                    return;
                }
                if self.stopping.is_some() {
                    self.refuse(&client.stream, "the daemon is stopping");
                    return;
                }
                let id = self.next_id;
                self.next_id += 1;
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
                    client: stream,
                    label,
                    args,
                    cwd,
                    env,
                    stdio: fds,
                    uid,
                    gid,
                    submitted: Instant::now(),
                    running: None,
                });
            }
        }
    }

    /// Reads signal frames from the submitter of job `i`; its end of the
    /// connection closing kills the job.
    fn read_from_submitter(&mut self, i: usize) {
        let job = &mut self.jobs[i];
        let Some(running) = &mut job.running else {
            return;
        };
        let mut chunk = [0u8; 256];
        match (&job.client).read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(0) | Err(_) => {
                if running.killed_for.is_none() {
                    log(&format!(
                        "job {} ({}): its submitter went away; killing it",
                        job.id, job.label
                    ));
                    running.killed_for = Some("its submitter went away".into());
                    daemon_sys::signal_group(running.pid, libc::SIGKILL);
                }
            }
            Ok(n) => {
                running.pending.extend_from_slice(&chunk[..n]);
                while let Frame::Whole(body, used) = protocol::first_frame(&running.pending) {
                    if let Ok(signal) = serde_json::from_slice::<protocol::Signal>(body) {
                        if (1..64).contains(&signal.signal) {
                            daemon_sys::signal_group(running.pid, signal.signal);
                        }
                    }
                    running.pending.drain(..used);
                }
                if matches!(protocol::first_frame(&running.pending), Frame::TooLarge(_)) {
                    running.pending.clear();
                }
            }
        }
    }

    /// Takes what job `i`'s worker reported.
    fn read_reports(&mut self, i: usize) {
        let Some(running) = &mut self.jobs[i].running else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match (&running.report).read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => running.report_buffer.extend_from_slice(&chunk[..n]),
            }
            // A worker that writes without end is not worth the memory.
            if running.report_buffer.len() > protocol::MAX_FRAME {
                running.report_buffer.clear();
            }
        }
        for event in report::take_events(&mut running.report_buffer) {
            self.totals.note(&event, running);
        }
    }

    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        self.clients.retain(|c| {
            let keep = now < c.accepted + REQUEST_DEADLINE;
            if !keep {
                log("a client sent no whole request in time; closed");
                reply(&c.stream, &Reply::Error("no whole request in time".into()));
            }
            keep
        });
        for job in &mut self.jobs {
            let Some(running) = &mut job.running else {
                continue;
            };
            if running.deadline.is_some_and(|d| now >= d) && running.killed_for.is_none() {
                let limit = self.config.daemon.job_timeout_s;
                let why = format!("ran past daemon.job_timeout_s ({limit} s)");
                let mut stderr =
                    std::fs::File::from(job.stdio[2].try_clone().expect("dup the job's stderr"));
                let _ = writeln!(stderr, "tierjit: job killed: it {why}");
                log(&format!("job {} ({}): killed, it {why}", job.id, job.label));
                running.killed_for = Some(why);
                daemon_sys::signal_group(running.pid, libc::SIGKILL);
            }
        }
    }

    fn start_queued(&mut self) {
        if self.stopping.is_some() {
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
                let job = self.jobs.remove(i);
                self.totals.failed += 1;
                log(&format!(
                    "job {} ({}): no report socket: {e}",
                    job.id, job.label
                ));
                reply(
                    &job.client,
                    &Reply::Error(format!("cannot start a worker: {e}")),
                );
                return;
            }
        };
        let _ = report.set_nonblocking(true);
        let job = &mut self.jobs[i];
        let user = (self.own_uid == 0 && job.uid != 0).then_some((job.uid, job.gid));
        let setup = daemon_sys::WorkerSetup {
            stdio: [
                job.stdio[0].as_fd(),
                job.stdio[1].as_fd(),
                job.stdio[2].as_fd(),
            ],
            report: Some(worker_end.as_fd()),
            memory_limit: (config.daemon.job_memory_mb > 0)
                .then_some(config.daemon.job_memory_mb << 20),
            user,
        };
        let _ = std::io::stderr().flush();
        match daemon_sys::fork() {
            Ok(None) => worker(&setup, job, &config, self.options.run_job),
            Ok(Some(pid)) => {
                self.totals.started += 1;
                let timeout = config.daemon.job_timeout_s;
                log(&format!(
                    "job {} ({}) started, pid {pid}, after {:.1} ms queued",
                    job.id,
                    job.label,
                    job.submitted.elapsed().as_secs_f64() * 1e3
                ));
                job.running = Some(Running {
                    pid,
                    started: Instant::now(),
                    deadline: (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout)),
                    killed_for: None,
                    pending: Vec::new(),
                    report,
                    report_buffer: Vec::new(),
                    functions: 0,
                    optimized_functions: 0,
                    continuations: 0,
                    compiles: 0,
                });
            }
            Err(e) => {
                let job = self.jobs.remove(i);
                self.totals.failed += 1;
                log(&format!("job {} ({}): cannot fork: {e}", job.id, job.label));
                reply(
                    &job.client,
                    &Reply::Error(format!("cannot start a worker: {e}")),
                );
            }
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
        let running: Vec<serde_json::Value> = self
            .jobs
            .iter()
            .filter_map(|j| {
                let r = j.running.as_ref()?;
                Some(serde_json::json!({
                    "id": j.id,
                    "pid": r.pid,
                    "job": j.label,
                    "uid": j.uid,
                    "elapsed_s": now.duration_since(r.started).as_secs_f64(),
                    "functions": {
                        "O0": r.functions - r.optimized_functions,
                        "O3": r.optimized_functions,
                    },
                    "osr_continuations": r.continuations,
                    "compiles": r.compiles,
                }))
            })
            .collect();
        let queued: Vec<serde_json::Value> = self
            .jobs
            .iter()
            .filter(|j| j.running.is_none())
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
            serde_json::json!({ "dir": c.root().display().to_string(), "summary": crate::cache::describe(&c) })
        });
        serde_json::json!({
            "pid": std::process::id(),
            "uptime_s": now.duration_since(self.started).as_secs_f64(),
            "socket": self.options.socket.display().to_string(),
            "stopping": self.stopping.is_some(),
            "config": serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null),
            "running": running,
            "queued": queued,
            "recent": recent,
            "totals": {
                "started": self.totals.started,
                "completed": self.totals.completed,
                "failed": self.totals.failed,
                "refused": self.totals.refused,
                "compiles": self
                    .totals
                    .compiles
                    .iter()
                    .map(|(tier, t)| (tier.clone(), serde_json::json!({
                        "count": t.count,
                        "failed": t.failed,
                        "seconds": t.seconds,
                    })))
                    .collect::<serde_json::Map<_, _>>(),
                "cache": self
                    .totals
                    .cache
                    .iter()
                    .map(|(kind, (hits, misses))| (kind.clone(), serde_json::json!({
                        "hits": hits,
                        "misses": misses,
                    })))
                    .collect::<serde_json::Map<_, _>>(),
            },
            "cache": cache,
        })
    }

    /// Compiles and cache lookups as OpenMetrics families.
    fn compile_metrics(&self) -> String {
        let mut out = String::from(
            "# TYPE tierjit_compiles counter\n# HELP tierjit_compiles Compiles by tier (O0: a module's baseline; O3: optimized versions and continuations).\n",
        );
        for (tier, t) in &self.totals.compiles {
            out += &format!("tierjit_compiles_total{{tier=\"{tier}\"}} {}\n", t.count);
        }
        out += "# TYPE tierjit_compile_failures counter\n# HELP tierjit_compile_failures Compiles that failed (the job kept its lower tier).\n";
        for (tier, t) in &self.totals.compiles {
            out += &format!(
                "tierjit_compile_failures_total{{tier=\"{tier}\"}} {}\n",
                t.failed
            );
        }
        out += "# TYPE tierjit_compile_seconds histogram\n# HELP tierjit_compile_seconds Time of each compile, by tier.\n";
        for (tier, t) in &self.totals.compiles {
            for (bound, count) in COMPILE_BUCKETS.iter().zip(t.buckets) {
                out += &format!(
                    "tierjit_compile_seconds_bucket{{tier=\"{tier}\",le=\"{bound}\"}} {count}\n"
                );
            }
            out += &format!(
                "tierjit_compile_seconds_bucket{{tier=\"{tier}\",le=\"+Inf\"}} {}\n",
                t.count
            );
            out += &format!(
                "tierjit_compile_seconds_sum{{tier=\"{tier}\"}} {}\n",
                t.seconds
            );
            out += &format!(
                "tierjit_compile_seconds_count{{tier=\"{tier}\"}} {}\n",
                t.count
            );
        }
        let families = [
            (
                "tierjit_cache_hits",
                "Persistent-cache lookups that found an entry, by kind.",
                true,
            ),
            (
                "tierjit_cache_misses",
                "Persistent-cache lookups that did not, by kind.",
                false,
            ),
        ];
        for (family, help, hits) in families {
            out += &format!("# TYPE {family} counter\n# HELP {family} {help}\n");
            for (kind, (hit_count, miss_count)) in &self.totals.cache {
                let value = if hits { hit_count } else { miss_count };
                let kind = kind.replace(' ', "_");
                out += &format!("{family}_total{{kind=\"{kind}\"}} {value}\n");
            }
        }
        out
    }

    fn metrics(&self) -> String {
        let running = self.jobs.iter().filter(|j| j.running.is_some()).count();
        let queued = self.jobs.len() - running;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# TYPE {name} counter\n# HELP {name} {help}\n{name}_total {value}\n"
            ));
        };
        counter(
            "tierjit_jobs_started",
            "Jobs whose worker started.",
            self.totals.started,
        );
        counter(
            "tierjit_jobs_completed",
            "Jobs that exited with status 0.",
            self.totals.completed,
        );
        counter(
            "tierjit_jobs_failed",
            "Jobs that exited non-zero, were killed, or could not start.",
            self.totals.failed,
        );
        counter(
            "tierjit_requests_refused",
            "Requests refused (bad input, not allowed, stopping).",
            self.totals.refused,
        );
        let mut gauge = |name: &str, help: &str, value: f64| {
            out.push_str(&format!(
                "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {value}\n"
            ));
        };
        gauge("tierjit_jobs_running", "Jobs running now.", running as f64);
        gauge(
            "tierjit_jobs_queued",
            "Jobs waiting for a slot.",
            queued as f64,
        );
        gauge(
            "tierjit_uptime_seconds",
            "Seconds since the daemon started.",
            self.started.elapsed().as_secs_f64(),
        );
        out.push_str(&self.compile_metrics());
        out.push_str("# EOF\n");
        out
    }
}

/// The worker process: sets itself up and runs the job; never returns.
fn worker(setup: &daemon_sys::WorkerSetup<'_>, job: &Job, config: &Config, run: RunJob) -> ! {
    let fail = |why: String| -> ! {
        let mut stderr = std::fs::File::from(job.stdio[2].try_clone().expect("dup stderr"));
        let _ = writeln!(stderr, "tierjit: error: cannot start the job: {why}");
        std::process::exit(125)
    };
    if let Err(why) = daemon_sys::set_up_worker(setup) {
        fail(why);
    }
    report::open(daemon_sys::take_report_channel());
    if let Err(e) = std::env::set_current_dir(&job.cwd) {
        eprintln!("tierjit: error: cannot enter {}: {e}", job.cwd);
        std::process::exit(125);
    }
    // Single-threaded until the job starts: the environment may change.
    for (key, _) in std::env::vars_os() {
        std::env::remove_var(key);
    }
    for (key, value) in &job.env {
        if !key.is_empty() && !key.contains('=') && !key.contains('\0') && !value.contains('\0') {
            std::env::set_var(key, value);
        }
    }
    let args = job.args.iter().map(OsString::from).collect();
    std::process::exit(run(config, args))
}

/// Jobs run at once: `daemon.max_jobs`, or one per CPU.
fn max_jobs(config: &Config) -> usize {
    match config.daemon.max_jobs {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    }
}

/// What `status` calls a job: its file name, else its first argument.
fn job_label(args: &[String]) -> String {
    let before_job_args = args.iter().take_while(|a| *a != "--");
    before_job_args
        .filter(|a| [".c", ".ll", ".bc"].iter().any(|ext| a.ends_with(ext)))
        .last()
        .cloned()
        .unwrap_or_else(|| args.first().cloned().unwrap_or_default())
}

/// Sends `answer`, best effort: a client that went away has no use for
/// it.
fn reply(stream: &UnixStream, answer: &Reply) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = (&*stream).write_all(&protocol::encode(answer));
}

trait ExtractQueued {
    fn extract_if_queued(&mut self) -> Vec<Job>;
}

impl ExtractQueued for Vec<Job> {
    fn extract_if_queued(&mut self) -> Vec<Job> {
        let (queued, running) = std::mem::take(self)
            .into_iter()
            .partition(|j| j.running.is_none());
        *self = running;
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_named_by_its_file() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(job_label(&args(&["--stats", "k.c", "--", "x.c"])), "k.c");
        assert_eq!(job_label(&args(&["--mode", "baseline", "m.ll"])), "m.ll");
        assert_eq!(job_label(&args(&["weird"])), "weird");
    }
}
