//! The `tierjit` command line. Exit status: the job's own, or 125 when
//! tierjit could not start the job (bad input, bad config, bad usage), so
//! that a wrapper can tell tierjit's failures from the job's statuses.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tierjit::{Config, Mode, RunOptions};

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
    /// Run a job (.ll, .bc or .c); exits with the job's exit status.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The job: LLVM IR (.ll), bitcode (.bc) or C (.c).
    #[arg(required_unless_present = "print_target")]
    job: Option<PathBuf>,
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
    /// Extra clang flag for .c jobs, e.g. --cflag=-DN=100 (repeatable).
    #[arg(long = "cflag", value_name = "FLAG", allow_hyphen_values = true)]
    cflags: Vec<String>,
    /// Print the target triple, CPU, features and preset, then exit.
    #[arg(long)]
    print_target: bool,
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
    let Command::Run(args) = cli.command;
    match run(args) {
        // The job's exit: its handlers, then tierjit's report, then the
        // end of the process (see tierjit::run).
        Ok(status) => std::process::exit(status),
        Err(e) => {
            // The message names its cause already (each error's text
            // includes its source), so the chain is not printed again.
            eprintln!("tierjit: error: {}", printable(&e.to_string()));
            ExitCode::from(TOOL_FAILURE)
        }
    }
}

/// `--help` and `--version` print and succeed; a usage error is a tool
/// failure like any other (not clap's status 2, which a job may return).
fn usage(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    use std::io::Write;
    let text = e.render().to_string();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A closed stdout (`tierjit --help | head -1`) is not an error.
            let _ = write!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!(
                "tierjit: error: a command is required\n\n{}",
                text.trim_end()
            );
            ExitCode::from(TOOL_FAILURE)
        }
        _ => {
            let text = text.trim_start_matches("error: ").trim_end();
            eprintln!("tierjit: error: {text}");
            ExitCode::from(TOOL_FAILURE)
        }
    }
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

fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut config = Config::default();
    if let Some(name) = &args.profile {
        config.layer_profile(name)?;
    }
    if let Some(path) = &args.config {
        config.layer_file(path)?;
    }
    for setting in &args.set {
        config.apply_override(setting)?;
    }
    if args.print_target {
        print!(
            "{}",
            tierjit::describe_target(&config, args.profile.as_deref())?
        );
        std::process::exit(0);
    }
    let job = args.job.expect("clap requires JOB unless --print-target");
    let mode = match args.mode {
        ModeArg::Tiered => Mode::Tiered,
        ModeArg::Baseline => Mode::Baseline,
        ModeArg::Optimized => Mode::Optimized,
    };
    Ok(tierjit::run(RunOptions {
        job,
        mode,
        config,
        events: args.events,
        stats: args.stats,
        cflags: args.cflags,
        args: args.job_args,
    })?)
}
