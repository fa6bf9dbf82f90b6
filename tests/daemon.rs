//! The daemon, end to end: `tierjit serve` on a socket in a scratch
//! directory, with `submit`, `status` and `metrics` as a user runs them,
//! and raw clients that send what no client should.
//!
//! Under an emulator only the protocol tests run (the daemon, its workers
//! and the clients under QEMU): user-mode QEMU may deadlock in the child
//! of a fork, and the others fork many workers, each 10-20 times slower.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

struct Daemon {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// A daemon in scratch directory `name`, with `flags` after `serve`.
    fn start(name: &str, flags: &[&str]) -> Daemon {
        Daemon::start_with(name, flags, &[])
    }

    /// The same, with `env` added to its environment.
    fn start_with(name: &str, flags: &[&str], env: &[(&str, &Path)]) -> Daemon {
        let dir = scratch().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("tierjit.sock");
        Daemon::start_at(dir, socket, flags, env)
    }

    /// A daemon whose scratch directory is `dir`, listening at `socket`.
    fn start_at(dir: PathBuf, socket: PathBuf, flags: &[&str], env: &[(&str, &Path)]) -> Daemon {
        let mut command = tierjit_command();
        command
            .env("TIERJIT_CACHE_DIR", dir.join("cache"))
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .args(flags)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the daemon");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let daemon = Daemon {
            child,
            dir,
            socket,
            log,
        };
        daemon.wait_for(|d| d.status_json().is_some(), "the daemon to answer");
        daemon
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn command(&self, verb: &str) -> Command {
        let mut command = tierjit_command();
        command.arg(verb).arg("--socket").arg(&self.socket);
        command
    }

    fn submit(&self, args: &[&str]) -> Run {
        run_with_limit(self.command("submit").args(args), job_limit())
    }

    /// `submit JOB` in the background, its stdout and stderr as given,
    /// stdin empty.
    fn spawn_submit(&self, job: &Path, stdout: Stdio, stderr: Stdio) -> Child {
        self.command("submit")
            .arg(job)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start submit")
    }

    /// Waits until `running` jobs run.
    fn wait_until_running(&self, running: u64, what: &str) {
        self.wait_for(|d| d.status()["jobs_running"] == running, what);
    }

    fn status_json(&self) -> Option<serde_json::Value> {
        let out = self.command("status").arg("--json").output().ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn status(&self) -> serde_json::Value {
        self.status_json()
            .unwrap_or_else(|| panic!("no status; daemon log:\n{}", self.log()))
    }

    fn wait_for(&self, done: impl Fn(&Daemon) -> bool, what: &str) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "waited 20 s for {what}; daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `dir/name`, then waits out the front-end cache's margin for a
/// file that may have changed while clang ran (which it does not keep).
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    path
}

const SUM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  long n = atol(argv[1]), s = 0;
  for (long i = 0; i < n; i++) s += i * i % 7;
  printf("%ld\n", s);
  fprintf(stderr, "done %ld\n", n);
  return (int)(s % 5);
}
"#;

const ECHO: &str = r#"
#include <stdio.h>
int main(void) {
  int c; long n = 0;
  while ((c = getchar()) != EOF) { putchar(c >= 'a' && c <= 'z' ? c - 32 : c); n++; }
  printf("[%ld]\n", n);
  return 0;
}
"#;

const CRASH: &str = r#"
#include <stdio.h>
int main(void) {
  printf("before\n");
  fflush(stdout);
  volatile int *p = 0;
  return *p;
}
"#;

const FOREVER: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(void) {
  printf("running\n");
  fflush(stdout);
  for (;;) sleep(1);
}
"#;

/// `command` run to its end with `input` (then end of file) on stdin, or
/// none.
fn run_fed(command: &mut Command, input: Option<&[u8]>) -> Run {
    let Some(bytes) = input else {
        return run_with_limit(command, job_limit());
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut stdin = child.stdin.take().unwrap();
    let bytes = bytes.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().expect("wait");
    feeder.join().unwrap().expect("feed stdin");
    Run {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        timed_out: false,
    }
}

/// `tierjit run ARGS` here, for comparison, with `input` on stdin.
fn run_locally(args: &[&str], input: Option<&[u8]>) -> Run {
    run_fed(tierjit_command().arg("run").args(args), input)
}

#[test]
fn concurrent_submissions_match_tierjit_run() {
    if emulated() {
        return;
    }
    let daemon = Daemon::start("daemon-concurrent", &["--set", "daemon.max_jobs=3"]);
    let dir = daemon.dir.clone();
    let sum = write(&dir, "sum.c", SUM);
    let echo = write(&dir, "echo.c", ECHO);
    let crash = write(&dir, "crash.c", CRASH);
    let garbage = write(&dir, "garbage.ll", "this is not IR\n");
    let sum = sum.to_str().unwrap().to_string();
    let echo = echo.to_str().unwrap().to_string();
    let crash = crash.to_str().unwrap().to_string();
    let garbage = garbage.to_str().unwrap().to_string();
    let missing = dir.join("missing.c").to_str().unwrap().to_string();
    type Case = (Vec<String>, Option<Vec<u8>>);
    let cases: Vec<Case> = vec![
        (vec![sum.clone(), "--".into(), "1000000".into()], None),
        (
            vec![
                "--mode".into(),
                "baseline".into(),
                sum.clone(),
                "--".into(),
                "77".into(),
            ],
            None,
        ),
        (
            vec!["--stats".into(), sum.clone(), "--".into(), "3000000".into()],
            None,
        ),
        (
            vec![echo.clone()],
            Some(b"hello daemon\nsecond line".to_vec()),
        ),
        (vec![crash.clone()], None),
        (vec![garbage.clone()], None),
        (vec![missing.clone()], None),
        (
            vec!["--set".into(), "thresholds.nope=1".into(), sum.clone()],
            None,
        ),
    ];
    let submitted: Vec<_> = cases
        .iter()
        .cloned()
        .map(|(args, input)| {
            let socket = daemon.socket.clone();
            std::thread::spawn(move || {
                let mut command = tierjit_command();
                command
                    .arg("submit")
                    .arg("--socket")
                    .arg(&socket)
                    .args(&args);
                run_fed(&mut command, input.as_deref())
            })
        })
        .collect();
    let remote: Vec<Run> = submitted.into_iter().map(|t| t.join().unwrap()).collect();
    for ((args, input), remote) in cases.iter().zip(&remote) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let local = run_locally(&args, input.as_deref());
        assert_eq!(
            (remote.status, &remote.stdout),
            (local.status, &local.stdout),
            "{args:?}\nremote stderr:\n{}\nlocal stderr:\n{}\ndaemon log:\n{}",
            remote.stderr,
            local.stderr,
            daemon.log()
        );
        // --stats times differ; everything else on stderr is the same.
        if !args.contains(&"--stats") {
            assert_eq!(remote.stderr, local.stderr, "{args:?}");
        }
    }
    // The crash is the job's (submit dies of it too, as run would), bad
    // input tierjit's (125).
    assert_eq!(remote[4].status, None, "{}", remote[4].stderr);
    assert_eq!(remote[4].stdout, "before\n");
    assert_eq!(remote[3].stdout, "HELLO DAEMON\nSECOND LINE[24]\n");
    for refused in &remote[5..8] {
        assert_eq!(refused.status, Some(125), "{}", refused.stderr);
    }
    let status = daemon.status();
    assert_eq!(status["totals"]["started"], 8, "{status:#}");
    assert_eq!(status["recent"].as_array().unwrap().len(), 8);
    let metrics = daemon.command("metrics").output().expect("tierjit metrics");
    let text = String::from_utf8(metrics.stdout).unwrap();
    assert!(text.contains("tierjit_jobs_started_total 8"), "{text}");
    assert!(text.contains("tierjit_jobs_running 0"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// Sends `bytes` as a client and returns what the daemon answered.
fn raw_exchange(socket: &Path, bytes: &[u8], close_write: bool) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stream.write_all(bytes);
    if close_write {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

#[test]
fn garbage_and_oversized_requests_leave_it_serving() {
    let daemon = Daemon::start("daemon-garbage", &[]);
    let socket = &daemon.socket;
    let answers = [
        raw_exchange(socket, &frame(b"\x00\xff\xfe garbage"), false),
        raw_exchange(socket, &frame(br#"{"version":1,"op":"reboot"}"#), false),
        raw_exchange(socket, &frame(br#"{"version":99,"op":"status"}"#), false),
        raw_exchange(socket, &frame(br#"{"op":"status"}"#), false),
        raw_exchange(socket, &[0xff, 0xff, 0xff, 0x7f, b'x'], false),
        // A submission without the job's streams.
        raw_exchange(
            socket,
            &frame(br#"{"version":1,"op":"submit","args":["x.c"],"env":[]}"#),
            false,
        ),
    ];
    let expected = [
        "not a JSON request",
        "bad request",
        "protocol version 99 is not supported",
        "without a protocol version",
        "over the limit",
        "4 descriptors",
    ];
    for (answer, expected) in answers.iter().zip(expected) {
        assert!(answer.contains(expected), "{answer:?} for {expected:?}");
    }
    // Half a frame, then gone; and a client that says nothing.
    raw_exchange(
        socket,
        &frame(br#"{"version":1,"op":"status"}"#)[..10],
        true,
    );
    drop(UnixStream::connect(socket).unwrap());
    let sum = write(&daemon.dir, "sum.c", SUM);
    let run = daemon.submit(&[sum.to_str().unwrap(), "--", "1000"]);
    assert_eq!(run.status, Some(1), "{}\n{}", run.stderr, daemon.log());
    assert_eq!(run.stdout, "2001\n");
    let log = daemon.log();
    assert!(log.contains("went away mid-request"), "{log}");
    assert_eq!(daemon.status()["totals"]["refused"], 6);
}

#[test]
fn sighup_rereads_the_config_and_keeps_it_when_bad() {
    if emulated() {
        return;
    }
    let dir = scratch().join("daemon-sighup-config");
    std::fs::create_dir_all(&dir).unwrap();
    let config = write(&dir, "daemon.ron", "(daemon: (max_jobs: 2))\n");
    let daemon = Daemon::start("daemon-sighup", &["--config", config.to_str().unwrap()]);
    let max_jobs = |d: &Daemon| d.status()["config"]["daemon"]["max_jobs"].clone();
    assert_eq!(max_jobs(&daemon), 2);
    std::fs::write(
        &config,
        "(daemon: (max_jobs: 5), compiler: (opt_level: 2))\n",
    )
    .unwrap();
    daemon.signal("HUP");
    daemon.wait_for(|d| max_jobs(d) == 5, "the new config");
    assert_eq!(daemon.status()["config"]["compiler"]["opt_level"], 2);
    std::fs::write(&config, "(daemon: (max_jobs: \"many\"))\n").unwrap();
    daemon.signal("HUP");
    daemon.wait_for(|d| d.log().contains("keeping the old one"), "the refusal");
    assert_eq!(max_jobs(&daemon), 5);
}

#[test]
fn sigterm_ends_it_within_the_grace_period() {
    if emulated() {
        return;
    }
    let mut daemon = Daemon::start("daemon-sigterm", &["--set", "daemon.shutdown_grace_s=1"]);
    let forever = write(&daemon.dir, "forever.c", FOREVER);
    let socket = daemon.socket.clone();
    let submitter = std::thread::spawn(move || {
        let mut command = tierjit_command();
        command
            .arg("submit")
            .arg("--socket")
            .arg(&socket)
            .arg(forever);
        run_with_limit(&mut command, job_limit())
    });
    daemon.wait_until_running(1, "the job to run");
    let signalled = Instant::now();
    daemon.signal("TERM");
    let status = daemon.child.wait().unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(took < Duration::from_secs(5), "{took:?}");
    let run = submitter.join().unwrap();
    assert_eq!(run.status, None, "{}", run.stderr);
    assert_eq!(run.stdout, "running\n");
    assert!(!daemon.socket.exists());
    assert!(daemon.log().contains("stopping"), "{}", daemon.log());
}

#[test]
fn killing_submit_kills_its_job_and_timeouts_end_jobs() {
    if emulated() {
        return;
    }
    let daemon = Daemon::start("daemon-kill", &["--set", "daemon.job_timeout_s=2"]);
    let forever = write(&daemon.dir, "forever.c", FOREVER);
    let mut submit = daemon.spawn_submit(&forever, Stdio::null(), Stdio::null());
    daemon.wait_until_running(1, "the job to run");
    submit.kill().unwrap();
    submit.wait().unwrap();
    daemon.wait_until_running(0, "the job to end");
    let recent = &daemon.status()["recent"][0];
    assert_eq!(recent["outcome"], "killed (its submitter went away)");
    // Left alone, the same job runs into daemon.job_timeout_s.
    let run = daemon.submit(&[forever.to_str().unwrap()]);
    assert_eq!(run.status, None, "{}", run.stderr);
    assert!(
        run.stderr.contains("daemon.job_timeout_s"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_second_submission_starts_warm() {
    if emulated() {
        return;
    }
    // The tests' environment turns objects and profiles off (see
    // tierjit_command); a daemon's own settings turn them back on.
    let daemon = Daemon::start(
        "daemon-warm",
        &[
            "--set",
            "cache.objects=true",
            "--set",
            "cache.profiles=true",
        ],
    );
    let sum = write(&daemon.dir, "sum.c", SUM);
    let submit = |d: &Daemon| {
        let mut command = d.command("submit");
        // The tests' default turns objects and profiles off; a user's
        // submission keeps the daemon's cache settings.
        command.env_remove("TIERJIT_OPTIONS").args([
            "--events",
            sum.to_str().unwrap(),
            "--",
            // Long enough for the first run's loop to get its
            // continuation, even on a loaded machine.
            "100000000",
        ]);
        let run = run_with_limit(&mut command, job_limit());
        // s % 5 of the sum (199999997).
        assert_eq!(run.status, Some(2), "{}", run.stderr);
        run
    };
    let cold = submit(&daemon);
    assert!(
        cold.stderr.contains("O0->O3"),
        "no tier-up to start from:\n{}",
        cold.stderr
    );
    assert!(
        cold.stderr.contains("cache miss baseline"),
        "{}",
        cold.stderr
    );
    let warm = submit(&daemon);
    assert_eq!(warm.stdout, cold.stdout);
    for expected in [
        "cache hit front end",
        "cache hit baseline",
        "cache hit profile",
    ] {
        assert!(
            warm.stderr.contains(expected),
            "{expected}:\n{}",
            warm.stderr
        );
    }
    assert!(
        warm.stderr.contains("installing before main")
            || warm.stderr.contains("compiling before main"),
        "{}",
        warm.stderr
    );
    // The daemon's directory, not the submitter's default.
    assert!(daemon.dir.join("cache").join("b").is_dir());
}

#[test]
fn the_socket_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start("daemon-private", &[]);
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Gets `step` hot, prints, then waits for a line on stdin.
const HOT_THEN_WAIT: &str = r#"
#include <stdio.h>
__attribute__((noinline)) long step(long x) { return (x * 2654435761u) % 1000003; }
int main(void) {
  long h = 1;
  for (long i = 0; i < 20000000; i++) h = step(h + i);
  printf("%ld\n", h);
  fflush(stdout);
  getchar();
  return 0;
}
"#;

#[test]
fn status_and_metrics_show_what_the_workers_compiled() {
    if emulated() {
        return;
    }
    let daemon = Daemon::start("daemon-tiers", &[]);
    let job = write(&daemon.dir, "hot.c", HOT_THEN_WAIT);
    let mut submit = daemon
        .command("submit")
        .arg(&job)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let optimized = |d: &Daemon| {
        d.status()["running"][0]["functions"]["O3"]
            .as_u64()
            .unwrap_or(0)
    };
    daemon.wait_for(|d| optimized(d) >= 1, "a function to run optimized code");
    let running = &daemon.status()["running"][0];
    // main and step at least, one of them (or both) optimized.
    let functions = &running["functions"];
    let total = functions["O0"].as_u64().unwrap() + functions["O3"].as_u64().unwrap();
    assert!(total >= 2, "{running:#}");
    assert!(running["compiles"].as_u64().unwrap() >= 2, "{running:#}");
    // The line it waits for.
    submit.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = submit.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(daemon.command("metrics").output().unwrap().stdout).unwrap();
    for expected in [
        "tierjit_compiles_total{tier=\"O0\"} 1\n",
        "tierjit_compile_seconds_count{tier=\"O0\"} 1\n",
        "tierjit_compile_seconds_bucket{tier=\"O3\",le=\"+Inf\"}",
        "tierjit_cache_misses_total{kind=\"front_end\"} 1\n",
        "tierjit_jobs_completed_total 1\n",
    ] {
        assert!(text.contains(expected), "{expected}:\n{text}");
    }
    let totals = &daemon.status()["totals"];
    assert!(
        totals["compiles"]["O3"]["count"].as_u64().unwrap() >= 1,
        "{totals:#}"
    );
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    if emulated() {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let dir = scratch().join("daemon-notify-socket");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let next = || {
        let mut buffer = [0u8; 256];
        let n = systemd.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let mut daemon = Daemon::start_with("daemon-notify", &[], &[("NOTIFY_SOCKET", &path)]);
    assert_eq!(next(), "READY=1");
    daemon.signal("HUP");
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    daemon.signal("TERM");
    assert_eq!(next(), "STOPPING=1");
    assert_eq!(daemon.child.wait().unwrap().code(), Some(0));
}

#[test]
fn other_users_are_refused_and_jobs_that_exhaust_memory_fail_alone() {
    if emulated() {
        return;
    }
    let daemon = Daemon::start("daemon-users", &["--set", "daemon.job_memory_mb=512"]);
    // A job that allocates without end runs into its limit; the daemon
    // and the next job do not notice.
    let greedy = write(
        &daemon.dir,
        "greedy.c",
        // Each block is kept (a chain from a global), or the optimizer
        // would drop the allocation and leave an endless loop.
        "#include <stdlib.h>\n#include <string.h>\nvoid *head;\nint main(void) { for (;;) { char *p = malloc(1 << 20); if (!p) return 7; memset(p, 1, 1 << 20); *(void **)p = head; head = p; } }\n",
    );
    let run = daemon.submit(&[greedy.to_str().unwrap()]);
    assert_eq!(run.status, Some(7), "{}", run.stderr);
    let sum = write(&daemon.dir, "sum.c", SUM);
    assert_eq!(
        daemon.submit(&[sum.to_str().unwrap(), "--", "1000"]).stdout,
        "2001\n"
    );
    // Another user, let through the socket's mode, is refused by its
    // credentials. Needs root (to be another user) and setpriv.
    let root = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let setpriv = Command::new("setpriv").arg("--version").output();
    if root.unwrap_or(false) && setpriv.is_ok_and(|o| o.status.success()) {
        use std::os::unix::fs::PermissionsExt;
        // A directory the other user can pass through, and a socket it may
        // open: only the credentials stop it.
        let open_dir = std::env::temp_dir().join(format!("tierjit-users-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&open_dir);
        std::fs::create_dir_all(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        let daemon = Daemon::start_at(daemon.dir.clone(), open_dir.join("s"), &[], &[]);
        std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(tierjit())
            .arg("status")
            .arg("--socket")
            .arg(&daemon.socket)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert!(
            stderr.contains("uid 65534 may not use this daemon"),
            "{stderr}"
        );
        assert!(daemon.log().contains("refused pid"), "{}", daemon.log());
        let _ = std::fs::remove_dir_all(&open_dir);
    } else {
        eprintln!("not root or no setpriv: the other-user check is skipped");
    }
}

/// Writes to its stderr without end.
const SPEW: &str = r#"
#include <string.h>
#include <unistd.h>
int main(void) {
  static char block[65536];
  memset(block, 'x', sizeof block);
  for (;;) write(2, block, sizeof block);
}
"#;

#[test]
fn a_stalled_reader_or_client_never_holds_the_daemon_up() {
    if emulated() {
        return;
    }
    let daemon = Daemon::start("daemon-stalled", &["--set", "daemon.job_timeout_s=2"]);
    let spew = write(&daemon.dir, "spew.c", SPEW);
    // Its stderr is a pipe nobody reads: the job blocks, and is killed at
    // its time limit without the daemon writing there.
    let mut submit = daemon.spawn_submit(&spew, Stdio::null(), Stdio::piped());
    // Clients that ask and never read.
    let idle: Vec<UnixStream> = (0..20)
        .map(|_| {
            let mut stream = UnixStream::connect(&daemon.socket).unwrap();
            stream
                .write_all(&frame(br#"{"version":1,"op":"status"}"#))
                .unwrap();
            stream
        })
        .collect();
    let start = Instant::now();
    daemon.wait_for(
        |d| {
            d.status()["recent"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
        "the job to be killed at its time limit",
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    let asked = Instant::now();
    let metrics = daemon.command("metrics").output().unwrap();
    assert!(metrics.status.success());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    drop(idle);
    // Drained, submit ends as the job did, saying why.
    let mut stderr = submit.stderr.take().unwrap();
    let mut text = Vec::new();
    stderr.read_to_end(&mut text).unwrap();
    let status = submit.wait().unwrap();
    assert_eq!(status.code(), None);
    let text = String::from_utf8_lossy(&text);
    assert!(text.ends_with("tierjit: job killed: it ran past daemon.job_timeout_s (2 s)\n"));
}

/// Writes forged report lines to every descriptor it might find.
const FORGER: &str = r#"
#include <string.h>
#include <unistd.h>
int main(void) {
  const char *lines =
    "{\"loaded\":{\"functions\":5,\"optimized\":true}}\n"
    "{\"loaded\":{\"functions\":1,\"optimized\":false}}\n"
    "{\"compiled\":{\"tier\":\"O3\\\"} 1\\n# EOF\\n\",\"seconds\":0.1,\"osr\":false,\"installed\":true,\"first\":true}}\n"
    "{\"compiled\":{\"tier\":\"O3\",\"seconds\":1e308,\"osr\":false,\"installed\":true,\"first\":true}}\n"
    "{\"cache\":{\"kind\":\"x\\\"}\",\"hit\":true}}\n";
  for (int fd = 3; fd < 1024; fd++) write(fd, lines, strlen(lines));
  return 0;
}
"#;

#[test]
fn forged_reports_leave_status_and_metrics_sound() {
    if emulated() {
        return;
    }
    let daemon = Daemon::start("daemon-forged", &[]);
    let forger = write(&daemon.dir, "forger.c", FORGER);
    let run = daemon.submit(&[forger.to_str().unwrap()]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let text = String::from_utf8(daemon.command("metrics").output().unwrap().stdout).unwrap();
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(!text.contains("x\""), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok_and(f64::is_finite), "{line}");
    }
    let status = daemon.status();
    let totals = &status["totals"];
    let compiles = totals["compiles"].as_object().unwrap();
    assert!(
        compiles.keys().all(|t| t == "O0" || t == "O3"),
        "{totals:#}"
    );
    assert!(
        compiles.values().all(|c| c["seconds"].is_number()),
        "{totals:#}"
    );
    let kinds = totals["cache"].as_object().unwrap();
    assert!(kinds.keys().all(|k| !k.contains('"')), "{totals:#}");
}

#[test]
fn odd_arguments_environments_and_directories_are_passed_as_they_are() {
    if emulated() {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let daemon = Daemon::start("daemon-bytes", &[]);
    let show = write(
        &daemon.dir,
        "show.c",
        r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  for (unsigned char *p = (unsigned char *)argv[1]; *p; p++) printf("%02x", *p);
  const char *v = getenv("ODD");
  printf(" %s", v ? v : "(unset)");
  char here[4096];
  printf(" %s\n", getcwd(here, sizeof here) ? "named" : "unnamed");
  return 0;
}
"#,
    );
    let arg = std::ffi::OsStr::from_bytes(b"\xff\xfeA");
    let odd = std::ffi::OsStr::from_bytes(b"v\xffw");
    let gone = daemon.dir.join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    let both = |verb: &str, within: &Path| {
        let mut command = tierjit_command();
        if verb == "submit" {
            command.arg("submit").arg("--socket").arg(&daemon.socket);
        } else {
            command.arg("run");
        }
        command
            .arg(&show)
            .arg("--")
            .arg(arg)
            .env("ODD", odd)
            .current_dir(within);
        let mut command = command;
        let out = command.output().unwrap();
        (
            out.status.code(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let local = both("run", &daemon.dir);
    assert_eq!(local.0, Some(0), "{}", local.2);
    assert_eq!(both("submit", &daemon.dir), local);
    // A working directory removed under the submitter: the job runs there
    // all the same, as under run.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"cd "$1" && rmdir "$1" && exec "$2" submit --socket "$3" "$4" -- x"#)
        .arg("sh")
        .arg(&gone)
        .arg(tierjit())
        .arg(&daemon.socket)
        .arg(&show);
    let out = sh.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(" unnamed\n"));
}

#[test]
fn a_queued_job_whose_submitter_went_away_never_starts() {
    if emulated() {
        return;
    }
    let daemon = Daemon::start("daemon-queued", &["--set", "daemon.max_jobs=1"]);
    let forever = write(&daemon.dir, "forever.c", FOREVER);
    let mut first = daemon.spawn_submit(&forever, Stdio::null(), Stdio::null());
    daemon.wait_until_running(1, "the first job to run");
    let mut second = daemon.spawn_submit(&forever, Stdio::null(), Stdio::null());
    daemon.wait_for(|d| d.status()["jobs_queued"] == 1, "the second to queue");
    second.kill().unwrap();
    second.wait().unwrap();
    daemon.wait_for(|d| d.status()["jobs_queued"] == 0, "the queued job to go");
    first.kill().unwrap();
    first.wait().unwrap();
    daemon.wait_until_running(0, "the first to end");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(daemon.status()["totals"]["started"], 1, "{}", daemon.log());
    assert!(daemon.log().contains("while it was queued; dropped"));
}

/// Says whether it starts with SIGTERM ignored, then works a second.
const TERM_IGNORED: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
  struct sigaction current;
  sigaction(SIGTERM, 0, &current);
  printf("%s\n", current.sa_handler == SIG_IGN ? "ignored" : "default");
  fflush(stdout);
  sleep(1);
  return 5;
}
"#;

#[test]
fn signals_the_submitter_ignores_are_ignored_by_the_job_and_not_passed_on() {
    if emulated() {
        return;
    }
    let daemon = Daemon::start("daemon-ignored", &[]);
    let job = write(&daemon.dir, "term.c", TERM_IGNORED);
    // As `nohup` or a script's background job would start either: with
    // SIGTERM ignored, which exec keeps.
    let under_sh = |verb: &str| {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(r#"trap '' TERM; exec "$@""#)
            .arg("sh")
            .arg(tierjit());
        if verb == "submit" {
            sh.arg("submit").arg("--socket").arg(&daemon.socket);
        } else {
            sh.arg("run");
        }
        sh.arg(&job)
            .env("TIERJIT_CACHE_DIR", daemon.dir.join("cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = sh.spawn().unwrap();
        // Once it printed, the job runs: a SIGTERM now is ignored.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 8];
        stdout.read_exact(&mut first).unwrap();
        let killed = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        (status.code(), String::from_utf8_lossy(&first).into_owned())
    };
    let local = under_sh("run");
    assert_eq!(local, (Some(5), "ignored\n".to_string()));
    assert_eq!(under_sh("submit"), local);
}

#[test]
fn a_job_of_several_inputs_is_submitted_from_its_own_directory() {
    if emulated() {
        return;
    }
    // Relative paths are the client's: the worker runs in its directory.
    let daemon = Daemon::start("daemon-inputs", &[]);
    let dir = daemon.dir.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    write(
        &dir,
        "main.c",
        "#include <stdio.h>\nint twice(int);\nint main(void) { printf(\"%d\\n\", twice(21)); return 0; }\n",
    );
    write(&dir, "util.c", "int twice(int x) { return 2 * x; }\n");
    let mut submit = daemon.command("submit");
    submit.current_dir(&dir).args(["main.c", "util.c"]);
    let run = run_fed(&mut submit, None);
    assert_eq!(run.status, Some(0), "{run:?}\n{}", daemon.log());
    assert_eq!(run.stdout, "42\n");
    let status = daemon.status();
    let label = status["recent"][0]["job"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(label, "main.c + util.c", "{status}");
}
