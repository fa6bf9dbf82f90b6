//! Tuning knobs. `config.example.ron` at the repository root documents every
//! field with its default; keep the two in step (a test parses the example).
//!
//! Layers, lowest first: built-in defaults, a `--config` RON file, then
//! `--set key=value` overrides. Unknown keys and bad values are errors.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;

mod knob;

knob::knobs! {
    /// When a function counts as hot (either condition suffices).
    thresholds: Thresholds {
        /// Calls seen by baseline code.
        calls: u64 = 1000, range 1 => u64::MAX;
        /// Loop back-edges taken inside the function by baseline code.
        backedges: u64 = 20_000, range 1 => u64::MAX;
        /// Back-edges of one loop after which frames running it move to an
        /// optimized continuation (on-stack replacement).
        osr_backedges: u64 = 20_000, range 1 => u64::MAX;
    }

    /// The thread that watches the counters.
    profiler: Profiler {
        /// Milliseconds between two reads of the counters.
        interval_ms: u64 = 1, range 1 => 60_000;
    }

    /// The background compiler threads.
    compiler: Compiler {
        /// Background compiler threads, each with its own LLVM context.
        threads: usize = 1, range 1 => 64;
        /// Profiler requests that may wait; a hot function finding it full
        /// is asked for again at the next profiler tick. (Each queued
        /// request holds a little memory; the bound keeps a runaway
        /// profiler from growing the queue without limit.)
        queue_size: usize = 256, range 1 => 65_536;
        /// Optimization level of the top tier (1, 2 or 3).
        opt_level: u8 = 3, range 1 => 3;
        /// Compile attempts per function before it stays on baseline for
        /// good.
        max_attempts: u32 = 2, range 1 => 100;
        /// Callees with at most this many IR instructions are copied into a
        /// hot function's module so the optimizer can inline them (0: none).
        inline_callee_max_instructions: usize = 400, range 0 => 1_000_000;
        /// Compiles after which a compiler thread drops its LLVM context
        /// and starts a fresh one (contexts only grow).
        context_reuse: u32 = 200, range 1 => 1_000_000;
        /// false: a job thread whose call makes a function hot waits until
        /// its optimized version is installed (HotSpot's -Xbatch); its
        /// request goes ahead of the profiler's. For tests and debugging:
        /// tier-ups become deterministic.
        background: bool = true;
        /// An optimized version calls itself directly; false: through its
        /// slot like every other call (to measure what slot calls cost).
        direct_self_calls: bool = true;
    }

    /// On-stack replacement of running loops.
    osr: Osr {
        /// false: baseline code has no OSR checks; running loops stay
        /// baseline.
        enabled: bool = true;
        /// Stress mode for tests: at its first back-edge each loop waits
        /// for its continuation to be compiled and transfers to it.
        force: bool = false;
    }

    /// Profile-guided optimization: what baseline code records beyond its
    /// tier-up counters, and what optimized builds do with it. Each part
    /// can be turned off to compare; off also removes its instrumentation.
    pgo: Pgo {
        /// Count branch and switch edges; give optimized builds
        /// `branch_weights`, function entry counts and a profile summary.
        profile_metadata: bool = true;
        /// Record the targets of calls through function pointers; call the
        /// dominant ones directly (so they can be inlined) behind a check.
        call_promotion: bool = true;
        /// Sample integer arguments at function entry; compile a version
        /// with a dominant value folded in, entered through a guard.
        value_specialization: bool = true;
        /// A specialized version is replaced by a general one once its
        /// guard has failed this many times... (and promoted calls that
        /// took their fallback this many times within 250 ms may be in a
        /// new phase)
        guard_miss_limit: u64 = 1000, range 1 => u64::MAX;
        /// ...on at least this percentage of the calls it checked.
        guard_miss_percent: u64 = 10, range 0 => 100;
        /// New versions one function may get for a new phase: a failed
        /// value guard whose misses agree on new values, promoted calls
        /// whose fallbacks agree on a target not promoted, or branch biases
        /// that profiling windows saw move. 0: no limit
        /// (new versions are still held back when phases are short next
        /// to the compile they cost).
        max_respeculations: u32 = 0, range 0 => 1_000_000;
        /// Every this many milliseconds (doubling up to 16 times while
        /// nothing changes), an optimized function's new calls run its
        /// counting baseline code for a window of 64 calls or 2 ms, to
        /// see whether its branch biases moved to a new phase; if so (and
        /// a second window agrees) it is recompiled with the new weights.
        /// 0 turns this off.
        resample_interval_ms: u64 = 500, range 0 => 3_600_000;
    }

    /// Freeing retired versions (see `tiering::reclaim`).
    reclaim: Reclaim {
        /// Free a retired version's code and counter tables once a check of
        /// every thread proves none can run it; false: retired code stays
        /// loaded until the job ends.
        enabled: bool = true;
        /// Milliseconds between two checks while retired code waits.
        interval_ms: u64 = 20, range 1 => 60_000;
        /// Debugging: freed code's pages are made inaccessible before they
        /// are released and stay reserved, so a thread that ran freed code
        /// would crash at once instead of running what is loaded there
        /// next.
        poison: bool = false;
        /// Stress mode for tests: at each profiler tick a function with two
        /// specialized versions swaps them, and a running loop's
        /// continuation is compiled once more, so versions are retired and
        /// freed under running threads all the time.
        stress: bool = false;
    }

    /// Reading C and C++ inputs.
    frontend: Frontend {
        /// Keep the bitcode clang makes in the cache (see `cache`), keyed
        /// by the source, every header it read, the flags and the clang
        /// binary, so that running the same job again skips clang (see
        /// src/ir/frontend_cache.rs). Needs cache.enabled.
        cache: bool = true;
    }

    /// The persistent cache of what runs learned: the front end's
    /// bitcode, optimized objects, profiles (see src/cache).
    cache: Cache {
        /// false: nothing is read from or stored in the cache.
        enabled: bool = true;
        /// Keep compiled objects for later runs: the module as prepared
        /// for tiering, its baseline, optimized function versions and OSR
        /// continuations; false: prepare and compile every time (the front
        /// end's bitcode is `frontend.cache`).
        objects: bool = true;
        /// Keep each job's profile (its counts, merged over runs with the
        /// older runs' halved, and which functions got hot) and start the
        /// next `tierjit run` of the same code from it: last run's hot
        /// functions are installed before `main`, and the first compiles
        /// use the earlier runs' counts (see src/profile/store.rs).
        profiles: bool = true;
        /// The cache directory. Empty: $TIERJIT_CACHE_DIR (set but empty:
        /// no cache), else $XDG_CACHE_HOME/tierjit, else ~/.cache/tierjit.
        dir: String = String::new();
        /// Bound on the directory's size (MB): after a run whose entries
        /// grew the directory past it (and at least hourly otherwise), the
        /// least recently used go until it is back under 90%.
        max_mb: u64 = 1024, range 1 => 1 << 32;
    }

    /// `tierjit serve` (see src/daemon).
    daemon: Daemon {
        /// Jobs run at once; more wait in a queue. 0: one per CPU.
        max_jobs: u32 = 0, range 0 => 4096;
        /// Address-space limit of each job's worker process (MB), which a
        /// job that exhausts memory runs into; 0: none.
        job_memory_mb: u64 = 0, range 0 => 1 << 30;
        /// Seconds a job may run before the daemon kills it; 0: no limit.
        job_timeout_s: u64 = 0, range 0 => 1 << 32;
        /// After SIGTERM: seconds to wait for running jobs before they
        /// are killed.
        shutdown_grace_s: u64 = 10, range 0 => 86_400;
    }

    /// What code every tier is generated for.
    target: Target {
        /// LLVM CPU name every tier generates code for; "host" detects it.
        cpu: String = "host".into();
        /// "host" (the host's features), or an LLVM feature string applied
        /// on top of them (e.g. "-avx512f"): code runs here, so a
        /// `+feature` the host lacks is refused (see
        /// `codegen::TargetSpec::resolve`).
        features: String = "host".into();
    }
}

/// Tuning presets shipped in `profiles/`, built into the binary so that
/// `--profile NAME` works wherever tierjit is installed.
/// Each names the architecture it is for (`std::env::consts::ARCH`):
/// presets name CPUs, and LLVM given a CPU of another architecture only
/// warns and falls back to generic code.
/// One preset: `profiles/NAME.ron`, for hosts of architecture `ARCH`.
macro_rules! profile {
    ($name:literal, $arch:literal) => {
        Profile {
            name: $name,
            arch: $arch,
            ron: include_str!(concat!("../../profiles/", $name, ".ron")),
        }
    };
}

pub const PROFILES: &[Profile] = &[
    profile!("cortex-a53", "aarch64"),
    profile!("cortex-a72", "aarch64"),
    profile!("cortex-a76", "aarch64"),
    profile!("neoverse-n1", "aarch64"),
    profile!("x86-64-server", "x86_64"),
];

pub struct Profile {
    pub name: &'static str,
    pub arch: &'static str,
    pub ron: &'static str,
}

pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

/// `key=value` settings for every leaf of a parsed RON config.
fn flatten(prefix: &str, value: &ron::Value, out: &mut Vec<String>) {
    match value {
        ron::Value::Map(map) => {
            for (key, inner) in map.iter() {
                let ron::Value::String(name) = key else {
                    continue;
                };
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&path, inner, out);
            }
        }
        // An empty file `()` sets nothing.
        _ if prefix.is_empty() => {}
        leaf => {
            let text = ron::to_string(leaf).unwrap_or_default();
            out.push(format!("{prefix}={text}"));
        }
    }
}

impl Config {
    /// Parses a RON config; errors carry the file, line and column.
    pub fn from_ron(text: &str, path: &Path) -> Result<Config, Error> {
        let config: Config = ron::Options::default()
            .from_str(text)
            .map_err(|e| Error::Config {
                path: path.to_path_buf(),
                line: e.position.line,
                column: e.position.col,
                message: e.code.to_string(),
            })?;
        config.validate().map_err(|message| Error::Config {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            message,
        })?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, Error> {
        let mut config = Config::default();
        config.layer_file(path)?;
        Ok(config)
    }

    /// Applies a config file on top of this one: only the knobs the file
    /// names change.
    pub fn layer_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.layer_ron(&text, path)
    }

    /// Applies RON text on top of this config. The text is first parsed
    /// strictly on its own (unknown keys and bad values are reported with
    /// line and column), then each knob it names is set as `--set` would.
    pub fn layer_ron(&mut self, text: &str, path: &Path) -> Result<(), Error> {
        Config::from_ron(text, path)?;
        let value: ron::Value =
            ron::Options::default()
                .from_str(text)
                .map_err(|e| Error::Config {
                    path: path.to_path_buf(),
                    line: e.position.line,
                    column: e.position.col,
                    message: e.code.to_string(),
                })?;
        let mut settings = Vec::new();
        flatten("", &value, &mut settings);
        let mut layered = self.clone();
        for setting in settings {
            layered
                .apply_override(&setting)
                .map_err(|e| Error::Config {
                    path: path.to_path_buf(),
                    line: 1,
                    column: 1,
                    message: e.to_string(),
                })?;
        }
        *self = layered;
        Ok(())
    }

    /// Applies a preset from `profiles/` by name (see `profile_names`) if
    /// it is meant for this architecture.
    pub fn layer_profile(&mut self, name: &str) -> Result<(), Error> {
        self.layer_profile_for(name, std::env::consts::ARCH)
    }

    fn layer_profile_for(&mut self, name: &str, host_arch: &str) -> Result<(), Error> {
        let Some(profile) = PROFILES.iter().find(|p| p.name == name) else {
            return Err(Error::ConfigValue(format!(
                "unknown profile `{name}`; known profiles: {}",
                profile_names().join(", ")
            )));
        };
        if profile.arch != host_arch {
            return Err(Error::ConfigValue(format!(
                "profile `{name}` is for {} hosts; this host is {host_arch}",
                profile.arch
            )));
        }
        self.layer_ron(profile.ron, Path::new(&format!("profiles/{name}.ron")))
    }

    /// Applies one `key=value` override; the value is RON (`1`, `"cortex-a72"`).
    pub fn apply_override(&mut self, setting: &str) -> Result<(), Error> {
        let err = |message: String| Error::ConfigOverride {
            setting: setting.into(),
            message,
        };
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| err("expected KEY=VALUE, e.g. thresholds.calls=1".into()))?;
        let (key, value) = (key.trim(), value.trim());
        let result = self.set_knob(key, value).unwrap_or_else(|| {
            Err(format!(
                "unknown key `{key}`; known keys: {}",
                KEYS.join(", ")
            ))
        });
        result.map_err(err)?;
        self.validate().map_err(err)
    }

    /// Checks ranges serde cannot express: every numeric knob has one
    /// (`RANGES`), so no value can make tierjit allocate absurdly, divide
    /// by zero or spin.
    pub fn validate(&self) -> Result<(), String> {
        let values = self.numeric_knobs();
        let mut problems: Vec<String> = values
            .iter()
            .filter_map(|&(key, value)| {
                let value = value?;
                let &(_, min, max) = RANGES.iter().find(|(k, _, _)| *k == key)?;
                (!(min..=max).contains(&value)).then(|| match max {
                    u64::MAX => format!("{key} must be at least {min} (got {value})"),
                    _ => format!("{key} must be between {min} and {max} (got {value})"),
                })
            })
            .collect();
        if self.target.cpu.trim().is_empty() {
            problems.push("target.cpu must name a CPU or be \"host\"".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_to_the_defaults() {
        let text = include_str!("../../config.example.ron");
        let parsed = Config::from_ron(text, Path::new("config.example.ron")).unwrap();
        // Every knob is documented there.
        for key in KEYS {
            let field = key.rsplit('.').next().unwrap();
            assert!(
                text.contains(&format!("{field}:")),
                "{key} is not in config.example.ron"
            );
        }
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        let text = "(\n  thresholds: (\n    callz: 5,\n  ),\n)";
        let err = Config::from_ron(text, Path::new("c.ron"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.ron:3:"), "{err}");
        assert!(err.contains("callz"), "{err}");
    }

    #[test]
    fn bad_value_is_rejected() {
        let err = Config::from_ron("(compiler: (opt_level: 7))", Path::new("c.ron")).unwrap_err();
        assert!(err.to_string().contains("opt_level"), "{err}");
        let err = Config::from_ron("(thresholds: (calls: \"x\"))", Path::new("c.ron")).unwrap_err();
        assert!(err.to_string().starts_with("c.ron:1:"), "{err}");
    }

    #[test]
    fn an_empty_config_file_changes_nothing() {
        let mut c = Config::default();
        c.layer_ron("()", Path::new("empty.ron")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn layers_change_only_what_they_name() {
        let mut c = Config::default();
        c.layer_ron("(compiler: (threads: 3))", Path::new("a.ron"))
            .unwrap();
        c.layer_ron(
            "(thresholds: (calls: 7), target: (cpu: \"cortex-a72\"))",
            Path::new("b.ron"),
        )
        .unwrap();
        assert_eq!(
            c.compiler.threads, 3,
            "an earlier layer survives a later one"
        );
        assert_eq!(c.thresholds.calls, 7);
        assert_eq!(c.thresholds.backedges, Thresholds::default().backedges);
        assert_eq!(c.target.cpu, "cortex-a72");
        let err = c
            .layer_ron("(compiler: (threds: 1))", Path::new("c.ron"))
            .unwrap_err();
        assert!(err.to_string().starts_with("c.ron:1:"), "{err}");
        assert_eq!(c.compiler.threads, 3, "a bad layer changes nothing");
    }

    #[test]
    fn every_profile_loads_and_changes_something() {
        for profile in PROFILES {
            let mut c = Config::default();
            c.layer_profile_for(profile.name, profile.arch)
                .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
            assert_ne!(c, Config::default(), "{} changes no knob", profile.name);
            c.validate().unwrap();
            let other = if profile.arch == "x86_64" {
                "aarch64"
            } else {
                "x86_64"
            };
            let err = Config::default()
                .layer_profile_for(profile.name, other)
                .unwrap_err();
            assert!(err.to_string().contains("is for"), "{err}");
        }
        // Every file in profiles/ is built in.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        for entry in std::fs::read_dir(dir).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            let name = file
                .strip_suffix(".ron")
                .expect("profiles/ holds .ron files");
            assert!(profile_names().contains(&name), "{file} is not in PROFILES");
        }
        assert!(Config::default().layer_profile("pi-9000").is_err());
    }

    #[test]
    fn every_numeric_knob_has_a_range_and_extremes_are_refused() {
        for (key, number) in Config::default().numeric_knobs() {
            assert_eq!(
                RANGES.iter().any(|(k, _, _)| *k == key),
                number.is_some(),
                "{key}: a numeric knob needs a range, and only a numeric one has one"
            );
        }
        for (key, min, max) in RANGES {
            let mut c = Config::default();
            if *max < u64::MAX {
                let err = c.apply_override(&format!("{key}={}", max + 1)).unwrap_err();
                assert!(err.to_string().contains(key), "{err}");
            }
            if *min > 0 {
                assert!(
                    c.apply_override(&format!("{key}={}", min - 1)).is_err(),
                    "{key}"
                );
            }
            c.apply_override(&format!("{key}={min}")).unwrap();
        }
        let mut c = Config::default();
        let err = c
            .apply_override("compiler.queue_size=18446744073709551615")
            .unwrap_err();
        assert!(err.to_string().contains("between 1 and 65536"), "{err}");
        assert!(c.apply_override("compiler.queue_size=1000000000").is_err());
    }

    #[test]
    fn overrides_apply_and_validate() {
        let mut c = Config::default();
        c.apply_override("thresholds.calls=1").unwrap();
        c.apply_override("target.cpu=cortex-a72").unwrap();
        c.apply_override("target.features=\"+neon\"").unwrap();
        assert_eq!(c.thresholds.calls, 1);
        assert_eq!(c.target.cpu, "cortex-a72");
        assert_eq!(c.target.features, "+neon");
        assert!(c.apply_override("thresholds.nope=1").is_err());
        assert!(c.apply_override("compiler.threads=0").is_err());
        assert!(c.apply_override("compiler.threads").is_err());
        assert!(c.apply_override("compiler.threads=two").is_err());
    }
}
