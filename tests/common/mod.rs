//! Helpers shared by the integration tests: running tierjit and native
//! builds of the same job.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The tierjit binary under test: this build's, or `TIERJIT_TEST_BIN`.
/// .ci/test-aarch64 points that at the cross-built binary, so the test
/// harness runs natively and only tierjit and the native references run
/// under the emulator: user-mode QEMU sometimes deadlocks in the child when
/// a multithreaded program forks, which a harness spawning thousands of
/// processes from parallel tests would hit.
pub fn tierjit() -> PathBuf {
    std::env::var_os("TIERJIT_TEST_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tierjit")))
}

/// A command that runs the tierjit binary. When the tests run under an
/// emulator (`TIERJIT_TEST_RUNNER="qemu-aarch64 -L /"`, set by
/// .ci/test-aarch64), the binary is started through it: the kernel here
/// cannot execute the cross-built binary directly.
/// The cache is the tests' own, not the user's, and holds only the front
/// end's bitcode (shared by the test processes of a run, so a fixture's C
/// is compiled once across modes): objects and profiles from it would turn
/// the compiles most tests are about into loads, and start runs warm
/// (tests/warm.rs turns them on).
pub fn tierjit_command() -> Command {
    let mut cmd = emulated_command(&tierjit());
    cmd.env(
        "TIERJIT_CACHE_DIR",
        std::env::temp_dir().join(format!("tierjit-tests-cache-{}", uid())),
    );
    cmd.env(
        "TIERJIT_OPTIONS",
        "cache.objects=false cache.profiles=false",
    );
    cmd
}

/// This user's id: the tests' cache directory is per user, so another
/// user's (unwritable here) is never in the way.
fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// The emulator command the tests run target code through
/// (`TIERJIT_TEST_RUNNER`), if any.
fn runner() -> Option<String> {
    std::env::var("TIERJIT_TEST_RUNNER")
        .ok()
        .filter(|r| !r.trim().is_empty())
}

/// Whether target code runs under an emulator.
pub fn emulated() -> bool {
    runner().is_some()
}

/// A command running `program`, through the emulator if there is one.
fn emulated_command(program: &Path) -> Command {
    let runner = runner().unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut cmd = Command::new(emulator);
            cmd.args(words).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A scratch directory for this test process.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tierjit-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

/// clang-19 as tierjit finds it.
pub fn clang() -> PathBuf {
    if let Some(p) = std::env::var_os("TIERJIT_CLANG") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/lib/llvm-19/bin/clang");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("clang-19")
    }
}

/// The directory cargo builds this profile into (`target/debug`).
pub fn cargo_build_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tierjit"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the cdylib and the Rust example for this profile: `cargo test`
/// builds neither the cdylib nor, when only this test is selected, the
/// example. (Cargo does not hold its build lock while tests run.)
pub fn build_embedders() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root())
            .args(["build", "--lib", "--example", "embed"]);
        if cargo_build_dir().ends_with("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles the C embedder `source` against include/tierjit.h and this
/// profile's libtierjit.so; returns the executable.
pub fn build_c_embedder(source: &Path, name: &str) -> PathBuf {
    build_embedders();
    let library = cargo_build_dir();
    let exe = scratch().join(name);
    let built = Command::new(clang())
        .arg(source)
        .arg("-I")
        .arg(root().join("include"))
        .arg("-L")
        .arg(&library)
        .arg("-ltierjit")
        .arg(format!("-Wl,-rpath,{}", library.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run clang");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    exe
}

/// The outcome of one process run.
#[derive(Debug, Clone)]
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// Runs a command to completion, killing it after `limit`.
pub fn run_with_limit(command: &mut Command, limit: Duration) -> Run {
    run_answering(command, limit, None)
}

/// Like `run_with_limit`, with a standard input that stays open until a
/// line of stderr contains `cue`: then it gets `answer` and ends. For a
/// job that must wait for something only `--events` shows.
pub fn run_with_cue(command: &mut Command, limit: Duration, cue: &str, answer: &[u8]) -> Run {
    run_answering(command, limit, Some((cue.to_owned(), answer.to_vec())))
}

fn run_answering(command: &mut Command, limit: Duration, cue: Option<(String, Vec<u8>)>) -> Run {
    let stdin = if cue.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let mut input = child.stdin.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let mut lines = std::io::BufReader::new(err);
        loop {
            let start = s.len();
            match std::io::BufRead::read_until(&mut lines, b'\n', &mut s) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let (Some((cue, answer)), Some(_)) = (&cue, &input) {
                if String::from_utf8_lossy(&s[start..]).contains(cue.as_str()) {
                    let mut stdin = input.take().unwrap();
                    // A job that ended meanwhile closed its end: nothing to do.
                    std::io::Write::write_all(&mut stdin, answer).ok();
                }
            }
        }
        s
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        status: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        timed_out,
    }
}

/// How many times longer to make jobs whose test depends on a background
/// compile landing while the job still runs: 1 natively, 5 under an
/// emulator (where compiles are ~50 times slower and job code ~10 times),
/// or `TIERJIT_TEST_SCALE`.
pub fn workload_scale() -> u64 {
    if let Some(n) = std::env::var("TIERJIT_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return n;
    }
    if emulated() {
        5
    } else {
        1
    }
}

/// How long any single job may take in the tests; generous because the
/// suite also runs under QEMU.
pub fn job_limit() -> Duration {
    let secs = std::env::var("TIERJIT_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// Runs `tierjit run JOB <flags> [-- args]`.
pub fn run_tierjit(job: &Path, flags: &[&str], args: &[String]) -> Run {
    let mut cmd = tierjit_command();
    cmd.arg("run").arg(job).args(flags);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    run_with_limit(&mut cmd, job_limit())
}

/// The target triple native references and IR are built for when tierjit
/// runs under an emulator (`TIERJIT_TEST_TARGET`, set by .ci/test-aarch64):
/// the reference must come from the architecture tierjit runs on.
pub fn test_target() -> Option<String> {
    std::env::var("TIERJIT_TEST_TARGET")
        .ok()
        .filter(|t| !t.trim().is_empty())
}

/// The architecture job code runs on: the emulated one under an emulator,
/// this machine's otherwise.
pub fn job_arch() -> &'static str {
    match test_target() {
        None => std::env::consts::ARCH,
        Some(t) if t.starts_with("aarch64") => "aarch64",
        Some(t) if t.starts_with("x86_64") => "x86_64",
        Some(t) => panic!("TIERJIT_TEST_TARGET={t}: the tests know aarch64 and x86_64"),
    }
}

pub fn target_flags() -> Vec<String> {
    test_target()
        .map(|t| vec![format!("--target={t}")])
        .unwrap_or_default()
}

/// Compiles `source` (.c or .ll) natively with clang-19 into `exe`, at -O2
/// unless `extra` says otherwise (clang takes the last -O).
pub fn build_native(source: &Path, exe: &Path, extra: &[&str]) -> Output {
    Command::new(clang())
        .args(["-O2", "-w"])
        .args(target_flags())
        .args(extra)
        .arg(source)
        .arg("-o")
        .arg(exe)
        .args(["-lm", "-lpthread"])
        .output()
        .expect("run clang-19")
}

/// A command running a native build, through the emulator when the tests
/// run under one.
pub fn native_command(exe: &Path) -> Command {
    emulated_command(exe)
}

/// A way a C job reaches tierjit: as C, or as LLVM IR that clang-19 made
/// at some optimization level, as text or bitcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    C,
    Ir { opt: &'static str, text: bool },
}

impl Shape {
    /// The job as a user hands it over: every clang optimization level,
    /// text and bitcode. -O0 IR carries `optnone`; -O1 and up carry phis,
    /// lifetime markers, vectors and whatever else the optimizer makes.
    pub const ALL: &'static [Shape] = &[
        Shape::C,
        Shape::Ir {
            opt: "-O0",
            text: true,
        },
        Shape::Ir {
            opt: "-O1",
            text: false,
        },
        Shape::Ir {
            opt: "-O2",
            text: true,
        },
        Shape::Ir {
            opt: "-O3",
            text: false,
        },
        Shape::Ir {
            opt: "-Os",
            text: false,
        },
    ];

    /// `c`, `O2.ll`, `O3.bc`, ...
    pub fn label(self) -> String {
        match self {
            Shape::C => "c".into(),
            Shape::Ir { opt, text } => {
                format!("{}.{}", &opt[1..], if text { "ll" } else { "bc" })
            }
        }
    }

    /// Whether this run tests the shape: all unless `TIERJIT_TEST_SHAPES`
    /// lists labels (`c,O3.bc`; .ci/test-aarch64 does, since
    /// every run costs a second or two under emulation).
    pub fn selected(self) -> bool {
        match std::env::var("TIERJIT_TEST_SHAPES") {
            Ok(list) if !list.trim().is_empty() => {
                list.split(',').any(|s| s.trim() == self.label())
            }
            _ => true,
        }
    }

    /// Whether the optimizer ran over it (it may have inlined functions
    /// away or unrolled loops completely).
    pub fn optimized(self) -> bool {
        matches!(self, Shape::Ir { opt, .. } if opt != "-O0")
    }

    /// The job file for C source `source` in this shape, made in `dir`.
    pub fn prepare(self, source: &Path, dir: &Path, cflags: &[&str]) -> PathBuf {
        let Shape::Ir { opt, text } = self else {
            return source.to_path_buf();
        };
        let stem = source.file_stem().unwrap().to_string_lossy();
        let out = dir.join(format!("{stem}.{}", self.label()));
        let output = Command::new(clang())
            .args([opt, "-w", "-emit-llvm", "-c"])
            .args(text.then_some("-S"))
            .args(target_flags())
            .args(cflags)
            .arg(source)
            .arg("-o")
            .arg(&out)
            .output()
            .expect("run clang-19");
        assert!(
            output.status.success(),
            "clang {opt} -emit-llvm failed for {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        out
    }
}

/// The modes every differential test compares, as tierjit flags.
/// Batch tier-up at the 400th call (and never for back-edges alone): by
/// then an argument sampled every 8th call has 50 samples, above the
/// specializer's minimum. (The PGO tests' flags, and the warm tests' that
/// cache speculating versions.)
pub const PGO_FLAGS: &[&str] = &[
    "--events",
    "--stats",
    "--set",
    "thresholds.calls=400",
    "--set",
    "thresholds.backedges=1000000000000",
    "--set",
    "compiler.background=false",
];

/// Whether this run tests `shape` in mode `label`: every mode, unless
/// `TIERJIT_TEST_IR_MODES` lists the modes IR shapes run in, or
/// `TIERJIT_TEST_C_MODES` those C runs in (.ci/test-aarch64 sets both,
/// since every run costs a second or two under emulation).
pub fn mode_selected(label: &str, shape: Shape) -> bool {
    let variable = if shape == Shape::C {
        "TIERJIT_TEST_C_MODES"
    } else {
        "TIERJIT_TEST_IR_MODES"
    };
    match std::env::var(variable) {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|m| m.trim() == label),
        _ => true,
    }
}

pub const MODES: &[(&str, &[&str])] = &[
    ("baseline", &["--mode", "baseline"]),
    ("optimized", &["--mode", "optimized"]),
    (
        "tiered",
        &[
            "--mode",
            "tiered",
            "--set",
            "thresholds.calls=1",
            "--set",
            "thresholds.backedges=1",
        ],
    ),
    (
        "tiered-batch",
        &[
            "--mode",
            "tiered",
            "--set",
            "thresholds.calls=1",
            "--set",
            "thresholds.backedges=1",
            "--set",
            "compiler.background=false",
            "--events",
        ],
    ),
    (
        // Tier-up where the profile has something in it: at the 200th call
        // (in batch mode, so it happens), with PGO on as by default.
        "tiered-pgo",
        &[
            "--mode",
            "tiered",
            "--set",
            "thresholds.calls=200",
            "--set",
            "thresholds.backedges=1000000000000",
            "--set",
            "compiler.background=false",
        ],
    ),
    (
        "tiered-osr-forced",
        &[
            "--mode",
            "tiered",
            "--set",
            "thresholds.calls=1",
            "--set",
            "compiler.background=false",
            "--set",
            "osr.force=true",
            "--stats",
        ],
    ),
];

/// OSR transitions reported by `--stats`, if the line is there.
pub fn osr_transitions(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("osr totals:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with("transitions"))?;
    words.get(at - 1)?.parse().ok()
}

/// Functions that `--events` output says were installed at O3.
pub fn installed_tierups(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            l.starts_with("[tierjit]") && l.contains(" O0->O3 ") && l.ends_with(" installed")
        })
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// `function`'s row in --stats output: tier, calls, back-edges.
pub fn stats_row(stderr: &str, function: &str) -> Option<(String, u64, u64)> {
    stderr.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() != 4 || cols[0] != function {
            return None;
        }
        Some((
            cols[1].to_string(),
            cols[2].parse().ok()?,
            cols[3].parse().ok()?,
        ))
    })
}

/// `long NAME(long)`, big enough that its O3 compile takes a while (many
/// functions, each with a loop), so a drop soon after the first calls
/// meets a compile in flight.
pub fn slow_kernel_source(name: &str) -> String {
    let mut text = String::new();
    for k in 0..40 {
        text.push_str(&format!(
            "static long step{k}(long x) {{ long s = 0; for (long i = 0; i < x; i++) s += (i ^ {k}) % 7; return s; }}\n"
        ));
    }
    text.push_str(&format!("long {name}(long n) {{\n  long sum = 0;\n"));
    for k in 0..40 {
        text.push_str(&format!("  sum += step{k}(n);\n"));
    }
    text.push_str("  return sum;\n}\n");
    text
}
