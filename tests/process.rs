//! The job's process behaves as the native program's would, in every mode:
//! a closed pipe ends it with SIGPIPE, a stack overflow with SIGSEGV, its
//! stack is as deep as native `main`'s, and it ends as soon as its work is
//! done even when a compile is in flight. (What output alone shows, such
//! as fork, constructors and error(3), is covered by fixtures.)

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MODES: [&str; 3] = ["baseline", "optimized", "tiered"];

fn job(name: &str, source: &str) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, source).unwrap();
    path
}

fn native(source: &Path) -> PathBuf {
    let exe = source.with_extension("native");
    let built = build_native(source, &exe, &["-O0"]);
    assert!(built.status.success(), "{built:?}");
    exe
}

/// Starts `command` with stdout piped, reads one line, closes the pipe and
/// returns the signal that ended the process.
fn signal_after_first_line(mut command: Command) -> Option<i32> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "y\n");
    // The reader is dropped: the pipe has no reader any more.
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.signal();
        }
        if start.elapsed() > job_limit() {
            let _ = child.kill();
            panic!("the job went on writing into a closed pipe");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_closed_pipe_ends_the_job_with_sigpipe() {
    // `tierjit run yes.c | head -1`
    let path = job(
        "yes.c",
        "#include <stdio.h>\nint main(void) { for (;;) { puts(\"y\"); fflush(stdout); } }\n",
    );
    assert_eq!(
        signal_after_first_line(native_command(&native(&path))),
        Some(libc::SIGPIPE)
    );
    for mode in MODES {
        let mut cmd = tierjit_command();
        cmd.arg("run").arg(&path).args(["--mode", mode]);
        assert_eq!(signal_after_first_line(cmd), Some(libc::SIGPIPE), "{mode}");
    }
}

/// A job whose `work` gets hot at once and whose compile takes ten
/// minutes (injected); `main` is done a moment later.
const HOT_THEN_DONE: &str = r#"
#include <stdio.h>
unsigned work(unsigned x) { return x * 2654435761u + 1; }
int main(void) {
  unsigned v = 1;
  for (int i = 0; i < 2000000; i++) v = work(v);
  printf("%u\n", v);
  return 0;
}
"#;

#[test]
fn exit_does_not_wait_for_a_compile_in_flight() {
    let path = job("hot_then_done.c", HOT_THEN_DONE);
    let mut cmd = tierjit_command();
    cmd.arg("run")
        .arg(&path)
        .args(["--events", "--stats", "--set", "thresholds.calls=100"])
        .args(["--set", "osr.enabled=false"])
        .env("TIERJIT_INJECT_SLOW_COMPILE", "work");
    let start = Instant::now();
    let run = run_with_limit(&mut cmd, job_limit());
    let took = start.elapsed();
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(!run.timed_out);
    assert!(
        took < Duration::from_secs(60),
        "exit waited {took:?} for the compile"
    );
    // The compile was requested and never finished.
    assert!(
        !run.stderr.contains(" work O0->O3 "),
        "no compile of work finished:\n{}",
        run.stderr
    );
    let (tier, calls) = run
        .stderr
        .lines()
        .find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 4 && cols[0] == "work")
                .then(|| (cols[1].to_string(), cols[2].to_string()))
        })
        .expect("work's stats row");
    assert_eq!((tier.as_str(), calls.as_str()), ("O0", "2000000"));
}

#[test]
fn exit_does_not_wait_for_a_sleeping_profiler() {
    let path = job(
        "quick.c",
        "#include <stdio.h>\nint main(void) { puts(\"done\"); return 3; }\n",
    );
    let start = Instant::now();
    let run = run_tierjit(&path, &["--set", "profiler.interval_ms=60000"], &[]);
    assert_eq!((run.status, run.stdout.as_str()), (Some(3), "done\n"));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

/// Recurses through frames of about 4 KiB: to `percent`% of the stack
/// limit, or forever with `overflow`. Prints "unlimited" (and does nothing
/// else) when the stack has no limit.
const DEEP: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
__attribute__((noinline)) long dive(long depth) {
  volatile char frame[4000];
  memset((char *)frame, (int)depth, sizeof frame);
  if (depth == 0) return frame[7];
  return dive(depth - 1) + frame[depth % 4000];
}
int main(int argc, char **argv) {
  struct rlimit limit;
  getrlimit(RLIMIT_STACK, &limit);
  if (limit.rlim_cur == RLIM_INFINITY) { puts("unlimited"); return 0; }
  long frames = argc > 1 && argv[1][0] == 'o' ? 1L << 40
                                              : (long)(limit.rlim_cur / 100 * atol(argv[1]) / 4096);
  printf("%ld\n", dive(frames) & 1);
  return 0;
}
"#;

#[test]
fn the_stack_is_as_deep_as_natives_and_an_overflow_is_sigsegv() {
    let path = job("deep.c", DEEP);
    let exe = native(&path);
    let deep = run_with_limit(native_command(&exe).arg("85"), job_limit());
    if deep.stdout == "unlimited\n" {
        eprintln!("stack size is unlimited here; nothing to compare");
        return;
    }
    assert_eq!(deep.status, Some(0), "native reaches 85% of the limit");
    let overflow = |cmd: &mut Command| {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (child.wait().unwrap().signal(), stderr)
    };
    let (signal, _) = overflow(native_command(&exe).arg("overflow"));
    assert_eq!(signal, Some(libc::SIGSEGV), "native overflow");
    for mode in MODES {
        let run = run_tierjit(&path, &["--mode", mode], &["85".into()]);
        assert_eq!(
            (run.status, run.stdout.as_str()),
            (Some(0), deep.stdout.as_str()),
            "{mode}: {}",
            run.stderr
        );
        let mut cmd = tierjit_command();
        cmd.arg("run")
            .arg(&path)
            .args(["--mode", mode, "--", "overflow"]);
        let (signal, stderr) = overflow(&mut cmd);
        assert_eq!(signal, Some(libc::SIGSEGV), "{mode}: {stderr}");
        assert!(!stderr.contains("overflowed its stack"), "{mode}: {stderr}");
    }
}

#[test]
fn error_3_names_the_job_and_the_report_follows_its_messages() {
    let path = fixtures_dir().join("error_exit.c");
    for mode in MODES {
        let run = run_tierjit(&path, &["--mode", mode, "--stats"], &[]);
        assert_eq!(run.status, Some(3), "{mode}: {}", run.stderr);
        assert!(
            run.stdout.ends_with("exit handler ran\n"),
            "{mode}: {}",
            run.stdout
        );
        let message = run.stderr.find("error_exit.c: giving up on purpose");
        let report = run.stderr.find("tierjit stats:");
        assert!(
            message.is_some() && report.is_some() && message < report,
            "{mode}: {}",
            run.stderr
        );
    }
}

#[test]
fn builtin_cpu_supports_reads_the_cpu_model() {
    // libgcc's __cpu_model and __cpu_indicator_init, which a native link
    // takes from libgcc.a (x86-64 only: AArch64 uses compiler-rt's).
    if job_arch() != "x86_64" {
        return;
    }
    let path = job(
        "cpu_model.c",
        "#include <stdio.h>\nint main(void) { __builtin_cpu_init(); printf(\"%d %d\\n\", __builtin_cpu_supports(\"sse2\") != 0, __builtin_cpu_supports(\"avx2\") != 0); return 0; }\n",
    );
    let native = run_with_limit(&mut native_command(&native(&path)), job_limit());
    for mode in MODES {
        let run = run_tierjit(&path, &["--mode", mode], &[]);
        assert_eq!(
            (run.status, &run.stdout),
            (Some(0), &native.stdout),
            "{mode}: {}",
            run.stderr
        );
    }
}

#[test]
fn job_arguments_need_not_be_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let path = job(
        "bytes.c",
        "#include <stdio.h>\nint main(int argc, char **argv) { for (int i = 1; i < argc; i++) { for (unsigned char *p = (unsigned char *)argv[i]; *p; p++) printf(\"%02x\", *p); printf(\"\\n\"); } return argc; }\n",
    );
    let mut cmd = tierjit_command();
    cmd.arg("run")
        .arg(&path)
        .arg("--")
        .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"))
        .arg("ab");
    let run = run_with_limit(&mut cmd, job_limit());
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (Some(3), "fffe\n6162\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_function_compiled_for_more_features_keeps_them() {
    // Runtime dispatch: a function for a feature this machine may lack,
    // called only where the CPU has it (here: never). Its features used to
    // be replaced by the machine's, and instruction selection failed.
    if job_arch() != "x86_64" {
        return;
    }
    let path = job(
        "dispatch.c",
        "#include <stdio.h>\n#include <immintrin.h>\n__attribute__((target(\"avx512vp2intersect,avx512f\"))) int fancy(const int *a, const int *b) { __m512i x = _mm512_loadu_si512(a), y = _mm512_loadu_si512(b); __mmask16 m1, m2; _mm512_2intersect_epi32(x, y, &m1, &m2); return m1; }\nint main(int argc, char **argv) { int a[16] = {0}, b[16] = {0}; if (argc > 5) printf(\"%d\\n\", fancy(a, b)); puts(\"ok\"); return 0; }\n",
    );
    for mode in MODES {
        let run = run_tierjit(&path, &["--mode", mode, "--set", "thresholds.calls=1"], &[]);
        assert_eq!(
            (run.status, run.stdout.as_str()),
            (Some(0), "ok\n"),
            "{mode}: {}",
            run.stderr
        );
    }
}

/// The usual way to take signals in one thread: block it everywhere and
/// `sigwait` for it. tierjit's own threads must block it too, or the
/// process-directed signal goes to a profiler or compiler thread, whose
/// default action for SIGUSR1 ends the process. Tiered mode runs hot code
/// so those threads are busy while the signals arrive.
const SIGWAIT: &str = r#"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>
static sigset_t set;
static atomic_int taken;
static void *waiter(void *unused) {
  int sig;
  while (atomic_load(&taken) < 20)
    if (sigwait(&set, &sig) == 0 && sig == SIGUSR1) atomic_fetch_add(&taken, 1);
  return unused;
}
__attribute__((noinline)) unsigned work(unsigned x, long n) {
  for (long k = 0; k < n; k++) x = x * 1103515245u + 12345u + (unsigned)(k >> 3);
  return x;
}
int main(void) {
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, 0);
  pthread_t thread;
  pthread_create(&thread, 0, waiter, 0);
  unsigned h = 1;
  for (int i = 0; i < 20; i++) {
    h = work(h, 1000000);
    kill(getpid(), SIGUSR1);
    while (atomic_load(&taken) <= i) usleep(100);
  }
  pthread_join(thread, 0);
  printf("%u taken=%d\n", h, atomic_load(&taken));
  return 0;
}
"#;

#[test]
fn a_signal_every_job_thread_blocks_is_not_taken_by_tierjits_threads() {
    let source = job("sigwait.c", SIGWAIT);
    let expected = native_command(&native(&source)).output().unwrap();
    assert!(expected.status.success(), "{expected:?}");
    for mode in MODES {
        let run = run_tierjit(&source, &["--mode", mode], &[]);
        assert_eq!(run.status, Some(0), "{mode}: {run:?}");
        assert_eq!(
            run.stdout,
            String::from_utf8_lossy(&expected.stdout),
            "{mode}"
        );
    }
}

/// Runs `tests/process/NAME` in every mode against its native build.
fn matches_native_in_every_mode(name: &str, args: &[String]) {
    let text = std::fs::read_to_string(root().join("tests/process").join(name)).unwrap();
    let source = job(name, &text);
    let exe = native(&source);
    let native = run_with_limit(native_command(&exe).args(args), job_limit());
    for mode in MODES {
        let run = run_tierjit(&source, &["--mode", mode], args);
        assert_eq!(run.status, native.status, "{name} {mode}: {}", run.stderr);
        assert_eq!(run.stdout, native.stdout, "{name} {mode}: {}", run.stderr);
    }
}

#[test]
fn a_signal_handler_forks_while_the_job_forks() {
    // Forks of a process under an emulator are slow: fewer there, and a
    // 20 ms timer. A fork of tierjit's process under QEMU (its and LLVM's
    // memory, QEMU's code cache) took 3 ms or more on a loaded machine, so
    // with the 3 ms timer the handler's forks took all the time and the
    // job's loop made no progress until the limit (twice in CI, 2 runs in
    // 8 here; 15 of 15 passed with 30 ms). The native build's 60 forks
    // take 90 ms under QEMU, so its handler forks too, as the output says.
    let args: &[&str] = if emulated() {
        &["60", "20000"]
    } else {
        &["400"]
    };
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    matches_native_in_every_mode("fork_in_handler.c", &args);
}

#[test]
fn threads_that_exit_at_once_end_the_job_once_with_its_report() {
    let text = std::fs::read_to_string(root().join("tests/process/exits_at_once.c")).unwrap();
    let source = job("exits_at_once.c", &text);
    let runs = if emulated() { 3 } else { 20 };
    for mode in MODES {
        for _ in 0..runs {
            let run = run_tierjit(&source, &["--mode", mode, "--stats"], &[]);
            assert_eq!(run.status, Some(7), "{mode}: {}", run.stderr);
            assert_eq!(run.stdout, "exit handler ran\n", "{mode}");
            assert!(
                run.stderr.contains("tierjit stats:"),
                "{mode}: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn a_signal_handler_that_exits_during_exit_leaves_the_report_whole() {
    let text = std::fs::read_to_string(root().join("tests/process/exit_in_handler.c")).unwrap();
    let source = job("exit_in_handler.c", &text);
    let runs = if emulated() { 2 } else { 10 };
    for _ in 0..runs {
        let run = run_tierjit(&source, &["--stats"], &[]);
        assert!(!run.timed_out, "{}", run.stderr);
        assert!(
            matches!(run.status, Some(3) | Some(42)),
            "{:?}: {}",
            run.status,
            run.stderr
        );
        assert_eq!(
            run.stdout,
            format!("s={}\n", 20_000 * 6_000),
            "{}",
            run.stderr
        );
        // Once tierjit's report has begun, no handler interrupts it: the
        // first `exit` ends the job with its report. (`exit` is not
        // async-signal-safe: a handler's `exit` that lands inside the C
        // library's own exit, just before the report, may end the process
        // there, as natively it would skip what was left.)
        if run.status == Some(3) {
            assert!(run.stderr.contains("compile latency:"), "{}", run.stderr);
        }
    }
}

#[test]
fn the_sigwait_family_fails_on_a_bad_set_as_natively() {
    matches_native_in_every_mode("sigwait_badptr.c", &[]);
}

#[test]
fn an_exception_nothing_catches_ends_in_std_terminate_as_natively() {
    // From main (with the job's own terminate handler, and without: then
    // libstdc++'s message and abort, no destructor run), from a static
    // constructor, and from an exit handler. Natively the unwinder finds
    // the end of the stack below main; tierjit's frames must look the same
    // to it, not catch the exception as a foreign one.
    let source = job(
        "uncaught.cpp",
        r#"#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
struct Local { ~Local() { std::printf("destructor ran\n"); } };
struct Early { Early() { if (std::getenv("THROW_IN_CTOR")) throw std::runtime_error("ctor"); } };
static Early early;
static void on_terminate() { std::printf("job's terminate handler\n"); std::fflush(stdout); std::_Exit(3); }
static void throwing_handler() { throw std::runtime_error("atexit"); }
int main(int argc, char **argv) {
  Local local;
  if (argc > 1 && !std::strcmp(argv[1], "handler")) std::set_terminate(on_terminate);
  if (argc > 1 && !std::strcmp(argv[1], "atexit")) { std::atexit(throwing_handler); return 0; }
  throw std::runtime_error("main");
}
"#,
    );
    let exe = source.with_extension("native");
    // Linked as clang++ links (libstdc++).
    let built = build_native(&source, &exe, &["--driver-mode=g++"]);
    assert!(built.status.success(), "{built:?}");
    let cases: [(&[&str], Option<&str>); 4] = [
        (&["handler"], None),
        (&["plain"], None),
        (&["atexit"], None),
        (&["plain"], Some("THROW_IN_CTOR")),
    ];
    for (args, env) in cases {
        let mut native = native_command(&exe);
        native.args(args);
        if let Some(var) = env {
            native.env(var, "1");
        }
        let want = run_with_limit(&mut native, job_limit());
        for mode in MODES {
            let mut cmd = tierjit_command();
            cmd.arg("run")
                .arg(&source)
                .args(["--mode", mode, "--"])
                .args(args);
            if let Some(var) = env {
                cmd.env(var, "1");
            }
            let got = run_with_limit(&mut cmd, job_limit());
            let label = format!("{mode} {args:?} {env:?}");
            assert_eq!(got.status, want.status, "{label}: {got:?}");
            assert_eq!(got.stdout, want.stdout, "{label}: {got:?}");
            assert!(!got.stderr.contains("Rust"), "{label}: {}", got.stderr);
            let message = |run: &Run| run.stderr.contains("terminate called after throwing");
            assert_eq!(message(&got), message(&want), "{label}: {}", got.stderr);
        }
    }
}
