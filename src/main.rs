//! The `tierjit` command line. Exit status: the job's own, or 125 when
//! tierjit could not start the job (bad input, bad config, bad usage), so
//! that a wrapper can tell tierjit's failures from the job's statuses.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tierjit::{Config, Mode, RunOptions};

/// Knob settings (`KEY=VALUE`, separated by whitespace) applied over the
/// preset and `--config`, under `--set`: a site-wide or test-wide default
/// without editing every command line (as .NET's `DOTNET_` variables).
const OPTIONS_ENV: &str = "TIERJIT_OPTIONS";

/// Exit status when tierjit itself fails (as `env` and `nohup` do).
const TOOL_FAILURE: u8 = 125;

#[derive(Parser)]
#[command(
    name = "tierjit",
    version,
    about = "A tiered JIT for compute jobs in LLVM IR or C"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job (.ll, .bc, .c, .cpp, .f90 inputs, linked into one);
    /// exits with the job's exit status.
    Run(RunArgs),
    /// Show the persistent cache: entries, size and hit rates.
    Cache(CacheArgs),
    /// Run the daemon: jobs sent with `submit` run in worker processes.
    Serve(ServeArgs),
    /// Run a job on a daemon, as `run` would here: same options, streams,
    /// exit status.
    Submit(SubmitArgs),
    /// Show a daemon's config, running and recent jobs, and cache.
    Status(StatusArgs),
    /// Print a daemon's metrics (OpenMetrics text).
    Metrics(MetricsArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The Unix socket to listen on (created mode 0600).
    #[arg(long)]
    socket: PathBuf,
    /// Tuning preset from profiles/ (see `run --help`).
    #[arg(long)]
    profile: Option<String>,
    /// RON config file, read again on SIGHUP (see config.example.ron).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one config knob (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args)]
struct SubmitArgs {
    /// The daemon's socket.
    #[arg(long)]
    socket: PathBuf,
    /// What `tierjit run` takes: options, the job, `--` and its arguments.
    #[arg(
        value_name = "RUN_ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    run_args: Vec<std::ffi::OsString>,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// The daemon's socket.
    #[arg(long)]
    socket: PathBuf,
    /// Print the status document as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct MetricsArgs {
    /// The daemon's socket.
    #[arg(long)]
    socket: PathBuf,
}

#[derive(clap::Args)]
struct CacheArgs {
    #[command(subcommand)]
    action: Option<CacheAction>,
    /// Tuning preset from profiles/ (see `run --help`).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// RON config file naming cache.dir (see config.example.ron).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override one config knob, e.g. --set cache.dir=/srv/cache.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum CacheAction {
    /// Remove every entry and the hit counts.
    Clear,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The job's inputs, linked into one job: LLVM IR (.ll), bitcode
    /// (.bc), C (.c), C++ (.cpp, .cc, .cxx, .C, .c++) or Fortran (.f90,
    /// .f95, .f03, .f08, .f, .for, .F, .F90). The first names the job (its
    /// argv[0]).
    #[arg(value_name = "JOB", required_unless_present = "print_target")]
    inputs: Vec<PathBuf>,
    /// Load the shared library libNAME.so (searched in -L directories,
    /// LIBRARY_PATH, then the system's), or -l :FILE (repeatable).
    #[arg(short = 'l', value_name = "NAME")]
    libraries: Vec<String>,
    /// Look for -l libraries in DIR first (repeatable).
    #[arg(short = 'L', value_name = "DIR")]
    library_dirs: Vec<PathBuf>,
    /// tiered: start on baseline, optimize hot functions in the background;
    /// baseline: instrumented O0 only; optimized: everything at O3 first.
    #[arg(long, value_enum, default_value_t = ModeArg::Tiered)]
    mode: ModeArg,
    /// Tuning preset from profiles/: cortex-a53, cortex-a72, cortex-a76,
    /// neoverse-n1, x86-64-server. Applied under --config and --set.
    #[arg(long)]
    profile: Option<String>,
    /// RON config file (see config.example.ron).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one config knob, e.g. --set thresholds.calls=1 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print one line per tier event to stderr.
    #[arg(long)]
    events: bool,
    /// Print a summary to stderr at exit.
    #[arg(long)]
    stats: bool,
    /// Extra front-end flag for C, C++ and Fortran inputs, e.g.
    /// --cflag=-DN=100 or --cflag=-fopenmp; a -std= reaches only the
    /// language it names (repeatable).
    #[arg(long = "cflag", value_name = "FLAG", allow_hyphen_values = true)]
    cflags: Vec<String>,
    /// Extra front-end flag for C++ inputs only (repeatable).
    #[arg(long = "cxxflag", value_name = "FLAG", allow_hyphen_values = true)]
    cxxflags: Vec<String>,
    /// Extra front-end flag for Fortran inputs only (repeatable).
    #[arg(long = "fflag", value_name = "FLAG", allow_hyphen_values = true)]
    fflags: Vec<String>,
    /// Print the target triple, CPU, features and preset, then exit.
    #[arg(long)]
    print_target: bool,
    /// Write perf's map of the JIT'd code to /tmp/perf-PID.map, so that
    /// `perf report` names it (function and tier).
    #[arg(long)]
    perf_map: bool,
    /// Let gdb and lldb see JIT'd code (the GDB JIT interface): function
    /// names and, for C, C++ and Fortran inputs (compiled with -g), source
    /// lines.
    #[arg(long)]
    debug_info: bool,
    /// Write the run's trace to FILE at exit (Chrome trace-event JSON, for
    /// Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Draw the run's timeline to FILE (SVG) at exit.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
    /// Arguments passed to the job's main (after `--`).
    #[arg(last = true)]
    job_args: Vec<std::ffi::OsString>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Tiered,
    Baseline,
    Optimized,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(e),
    };
    let outcome = match cli.command {
        Command::Run(args) => run(args),
        Command::Cache(args) => cache(args),
        Command::Serve(args) => serve(args),
        Command::Submit(args) => submit(args),
        Command::Status(args) => status(args),
        Command::Metrics(args) => metrics(args),
    };
    match outcome {
        // The job's exit: its handlers, then tierjit's report, then the
        // end of the process (see tierjit::run).
        Ok(status) => tierjit::exit(status),
        Err(e) => {
            // The message names its cause already (each error's text
            // includes its source), so the chain is not printed again.
            tool_error(&printable(&e.to_string()));
            ExitCode::from(TOOL_FAILURE)
        }
    }
}

/// `--help` and `--version` print and succeed; a usage error is a tool
/// failure like any other (not clap's status 2, which a job may return).
fn usage(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let text = e.render().to_string();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Help was asked for: even a failed write of it is no failure.
            let _ = print_out(&text);
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            tool_error(&format!("a command is required\n\n{}", text.trim_end()));
            ExitCode::from(TOOL_FAILURE)
        }
        _ => {
            let text = text.trim_start_matches("error: ").trim_end();
            tool_error(text);
            ExitCode::from(TOOL_FAILURE)
        }
    }
}

/// Prints tierjit's own error. A stderr nobody reads (a closed pipe) must
/// not turn the 125 into a panic's 101, so a failed write is ignored.
fn tool_error(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "tierjit: error: {text}");
}

/// `message` with control characters (from a binary file echoed by a
/// parser, say) shown as escapes, so that it cannot garble a terminal.
fn printable(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\u{fffd}' => out.push('?'),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// The config: defaults, then the preset, the file, `TIERJIT_OPTIONS` and
/// the overrides.
fn layered_config(
    profile: Option<&str>,
    file: Option<&std::path::Path>,
    settings: &[String],
) -> anyhow::Result<Config> {
    layered_over(Config::default(), profile, file, settings)
}

/// `base`, then the preset, the file, `TIERJIT_OPTIONS` and the overrides.
fn layered_over(
    base: Config,
    profile: Option<&str>,
    file: Option<&std::path::Path>,
    settings: &[String],
) -> anyhow::Result<Config> {
    let mut config = base;
    if let Some(name) = profile {
        config.layer_profile(name)?;
    }
    if let Some(path) = file {
        config.layer_file(path)?;
    }
    if let Some(options) = std::env::var_os(OPTIONS_ENV) {
        let options = options.to_string_lossy();
        for setting in options.split_whitespace() {
            config
                .apply_override(setting)
                .map_err(|e| anyhow::anyhow!("{OPTIONS_ENV}: {e}"))?;
        }
    }
    for setting in settings {
        config.apply_override(setting)?;
    }
    Ok(config)
}

/// `tierjit cache` and `tierjit cache clear`.
fn cache(args: CacheArgs) -> anyhow::Result<i32> {
    let config = layered_config(args.profile.as_deref(), args.config.as_deref(), &args.set)?;
    let Some(cache) = tierjit::cache::Cache::from_config(&config.cache) else {
        let env = tierjit::cache::CACHE_DIR_ENV;
        let why = if !config.cache.enabled {
            "cache.enabled is false".to_string()
        } else if std::env::var_os(env).is_some_and(|v| v.is_empty()) {
            format!("{env} is set and empty")
        } else {
            "no directory: set cache.dir, or HOME".to_string()
        };
        print_out(&format!("cache: off ({why})\n"))?;
        return Ok(0);
    };
    match args.action {
        None => print_out(&tierjit::cache::describe(&cache))?,
        Some(CacheAction::Clear) => {
            let removed = cache.clear().map_err(|e| {
                anyhow::anyhow!("cannot clear the cache at {}: {e}", cache.root().display())
            })?;
            print_out(&format!(
                "cache: removed {removed} entries from {}\n",
                cache.root().display()
            ))?;
        }
    }
    Ok(0)
}

fn run(args: RunArgs) -> anyhow::Result<i32> {
    run_over(Config::default(), args)
}

/// `tierjit run` with `base` under the job's own config options.
fn run_over(base: Config, args: RunArgs) -> anyhow::Result<i32> {
    let config = layered_over(
        base,
        args.profile.as_deref(),
        args.config.as_deref(),
        &args.set,
    )?;
    if args.print_target {
        print_out(&tierjit::describe_target(&config, args.profile.as_deref())?)?;
        std::process::exit(0);
    }
    let mut inputs = args.inputs.into_iter();
    let job = inputs
        .next()
        .expect("clap requires JOB unless --print-target");
    let mode = match args.mode {
        ModeArg::Tiered => Mode::Tiered,
        ModeArg::Baseline => Mode::Baseline,
        ModeArg::Optimized => Mode::Optimized,
    };
    Ok(tierjit::run(RunOptions {
        job,
        more_inputs: inputs.collect(),
        libraries: tierjit::libraries::LibrarySpec {
            names: args.libraries,
            dirs: args.library_dirs,
        },
        mode,
        config,
        events: args.events,
        stats: args.stats,
        cflags: args.cflags,
        cxxflags: args.cxxflags,
        fflags: args.fflags,
        args: args.job_args,
        perf_map: args.perf_map,
        debug_info: args.debug_info,
        trace: args.trace,
        timeline: args.timeline,
    })?)
}

/// `tierjit serve`.
fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let ServeArgs {
        socket,
        profile,
        config,
        set,
    } = args;
    let load_config = move || {
        layered_config(profile.as_deref(), config.as_deref(), &set).map_err(|e| e.to_string())
    };
    tierjit::daemon::serve(tierjit::daemon::ServeOptions {
        socket,
        load_config: Box::new(load_config),
        run_job: run_in_worker,
    })
    .map_err(|e| anyhow::anyhow!(e))
}

/// A job in a daemon's worker process: `tierjit run ARGS` over the
/// daemon's config; its exit status, 125 for tierjit's own failures.
fn run_in_worker(base: &Config, args: Vec<std::ffi::OsString>) -> i32 {
    let argv = ["tierjit".into(), "run".into()].into_iter().chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let status: u8 = if usage(e) == ExitCode::SUCCESS {
                0
            } else {
                TOOL_FAILURE
            };
            return i32::from(status);
        }
    };
    let Command::Run(args) = cli.command else {
        unreachable!("parsed as `run`")
    };
    match run_over(base.clone(), args) {
        Ok(status) => status,
        Err(e) => {
            tool_error(&printable(&e.to_string()));
            i32::from(TOOL_FAILURE)
        }
    }
}

/// `tierjit submit`: the options are checked here first, so that a usage
/// error reads as `run`'s would without a round trip.
fn submit(args: SubmitArgs) -> anyhow::Result<i32> {
    let argv = ["tierjit".into(), "run".into()]
        .into_iter()
        .chain(args.run_args.iter().cloned());
    if let Err(e) = Cli::try_parse_from(argv) {
        return Ok(if usage(e) == ExitCode::SUCCESS {
            0
        } else {
            i32::from(TOOL_FAILURE)
        });
    }
    tierjit::daemon::client::submit(&args.socket, args.run_args).map_err(|e| anyhow::anyhow!(e))
}

/// `tierjit status`.
fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let status = tierjit::daemon::client::status(&args.socket).map_err(|e| anyhow::anyhow!(e))?;
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&status)?))?;
    } else {
        print_out(&tierjit::daemon::client::describe_status(&status))?;
    }
    Ok(0)
}

/// `tierjit metrics`.
fn metrics(args: MetricsArgs) -> anyhow::Result<i32> {
    let text = tierjit::daemon::client::metrics(&args.socket).map_err(|e| anyhow::anyhow!(e))?;
    print_out(&text)?;
    Ok(0)
}

/// Writes a report of tierjit's own (not the job's output) to stdout. A
/// reader that went away (`tierjit cache | head -1`) is not an error, as
/// for `--help` (which ignores every error); `print!` would panic there,
/// since Rust ignores SIGPIPE.
/// Any other failure to write (a full disk) is.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write to standard output: {e}"))
        }
        _ => Ok(()),
    }
}
