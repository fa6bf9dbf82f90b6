//! What a run reports: tier events as they happen (`--events`) and a
//! summary at exit (`--stats`).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use serde_json::Value;

use crate::daemon::report;
use crate::observe::trace::Trace;
use crate::versions::Tier;

/// One tier-up, from request to outcome.
pub struct TierEvent<'a> {
    /// `f`, or `f@loopK` for an OSR continuation.
    pub function: &'a str,
    pub osr: bool,
    pub from: Tier,
    pub to: Tier,
    pub calls: u64,
    pub backedges: u64,
    pub queued: Duration,
    pub compile: Duration,
    pub code_bytes: usize,
    /// Whether `compile` goes into the latency histogram: a compile that
    /// built several units is one compile, recorded with one of them.
    pub records_latency: bool,
    /// The installed version is specialized for an argument value (set
    /// only when a trace is kept, which alone shows it).
    pub specialized: bool,
    pub outcome: Result<(), &'a str>,
}

pub struct Metrics {
    start: Instant,
    events_enabled: bool,
    sequence: AtomicU64,
    /// Each compile's time (µs), per tier: a histogram is made of them
    /// when the summary asks (see `latency_rows`).
    baseline_compile: Mutex<Vec<u64>>,
    optimized_compile: Mutex<Vec<u64>>,
    installed: AtomicU64,
    failed: AtomicU64,
    /// Profiling windows closed, and branch-bias moves they confirmed.
    windows: AtomicU64,
    moves: AtomicU64,
    /// Persistent-cache lookups: (kind, hits, misses), in first-seen order.
    cache: Mutex<Vec<(&'static str, u64, u64)>>,
    /// The run's trace (`--trace`, `--timeline`), if one is kept.
    trace: Option<Arc<Trace>>,
}

/// A histogram of compile times: microseconds from 1 µs to 10 minutes, 3
/// significant digits. Its 160 KB of counters are written when it is
/// made, about 0.3 ms of page faults: made only for a summary, not at
/// every start.
fn histogram(micros: &[u64]) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
    for &m in micros {
        let _ = h.record(m);
    }
    h
}

impl Metrics {
    pub fn new(start: Instant, events_enabled: bool) -> Metrics {
        Metrics {
            start,
            events_enabled,
            sequence: AtomicU64::new(0),
            baseline_compile: Mutex::new(Vec::new()),
            optimized_compile: Mutex::new(Vec::new()),
            installed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            moves: AtomicU64::new(0),
            cache: Mutex::new(Vec::new()),
            trace: None,
        }
    }

    /// These metrics with every event also recorded in `trace`.
    pub fn with_trace(mut self, trace: Option<Arc<Trace>>) -> Metrics {
        self.trace = trace;
        self
    }

    /// The run's trace, if one is kept.
    pub fn trace(&self) -> Option<&Trace> {
        self.trace.as_deref()
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    fn compile_times(&self, tier: Tier) -> &Mutex<Vec<u64>> {
        match tier {
            Tier::Baseline => &self.baseline_compile,
            Tier::Optimized => &self.optimized_compile,
        }
    }

    /// Records the up-front compile of a whole module at `tier`.
    pub fn module_compiled(&self, tier: Tier, functions: usize, compile: Duration, bytes: usize) {
        self.record_latency(tier, compile);
        if let Some(trace) = &self.trace {
            trace.span(
                "compile",
                format!("module at {tier}"),
                None,
                Instant::now().checked_sub(compile).unwrap_or(self.start),
                compile,
                vec![
                    ("functions", functions.into()),
                    ("size", bytes.into()),
                    ("result", "installed".into()),
                ],
            );
        }
        if report::active() {
            report::send(&report::Event::Loaded {
                functions: functions as u64,
                optimized: tier == Tier::Optimized,
            });
            report::compiled(tier, compile, false, true, false);
        }
        if self.events_enabled {
            let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
            self.emit(format!(
                "{:>10.3}ms {seq:>4} <module> -> {tier}  {functions} functions  compile={:.2}ms size={bytes}B installed",
                self.elapsed_ms(),
                ms(compile),
            ));
        }
    }

    pub fn tier_event(&self, event: &TierEvent<'_>) {
        if event.records_latency {
            self.record_latency(event.to, event.compile);
        }
        let first = !event.osr && event.from == Tier::Baseline && event.outcome.is_ok();
        report::compiled(
            event.to,
            event.compile,
            event.osr,
            event.outcome.is_ok(),
            first,
        );
        let counter = if event.outcome.is_ok() {
            &self.installed
        } else {
            &self.failed
        };
        // Relaxed: a statistic, read once at exit after the threads joined.
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(trace) = &self.trace {
            trace_tier_event(trace, event);
        }
        if !self.events_enabled {
            return;
        }
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let outcome = match event.outcome {
            Ok(()) => "installed".to_string(),
            Err(reason) => format!("failed: {reason}"),
        };
        self.emit(format!(
            "{:>10.3}ms {seq:>4} {}{} {}->{}  calls={} backedges={}  queued={:.2}ms compile={:.2}ms size={}B {outcome}",
            self.elapsed_ms(),
            if event.osr { "osr " } else { "" },
            event.function,
            event.from,
            event.to,
            event.calls,
            event.backedges,
            ms(event.queued),
            ms(event.compile),
            event.code_bytes,
        ));
    }

    /// A lookup in the persistent cache: `kind` (its label, "front end"),
    /// for `label`, found or not and why not.
    pub fn cache_lookup(&self, kind: &'static str, label: &str, outcome: Result<(), &str>) {
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let at = match cache.iter().position(|c| c.0 == kind) {
                Some(at) => at,
                None => {
                    cache.push((kind, 0, 0));
                    cache.len() - 1
                }
            };
            match outcome {
                Ok(()) => cache[at].1 += 1,
                Err(_) => cache[at].2 += 1,
            }
        }
        if let Some(trace) = &self.trace {
            let (result, why) = match outcome {
                Ok(()) => ("hit", None),
                Err(why) => ("miss", Some(why)),
            };
            let mut args: Vec<(&'static str, Value)> =
                vec![("kind", kind.into()), ("result", result.into())];
            args.extend(why.map(|why| ("why", why.into())));
            trace.instant(
                "cache",
                format!("cache {result} {kind} {label}"),
                None,
                args,
            );
        }
        if report::active() {
            report::send(&report::Event::Cache {
                kind: kind.to_string(),
                hit: outcome.is_ok(),
            });
        }
        if self.events_enabled {
            let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
            let what = match outcome {
                Ok(()) => format!("cache hit {kind} {label}"),
                Err(why) => format!("cache miss {kind} {label}: {why}"),
            };
            self.emit(format!("{:>10.3}ms {seq:>4} {what}", self.elapsed_ms()));
        }
    }

    /// The `--stats` line of cache lookups, if there were any.
    pub fn cache_line(&self) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.is_empty() {
            return None;
        }
        let parts: Vec<String> = cache
            .iter()
            .map(|(kind, hits, misses)| format!("{kind} {hits} hit(s), {misses} miss(es)"))
            .collect();
        Some(format!("  cache: {}\n", parts.join("; ")))
    }

    /// A frame entered an OSR continuation for the first time. `since_hot`:
    /// from the profiler's request (loop hot) to the transfer, i.e. queue
    /// wait, compile and the wait for the frame's next back-edge (measured
    /// to within one profiler tick).
    pub fn osr_transition(&self, label: &str, frames: u64, since_hot: Option<Duration>) {
        if let Some(trace) = &self.trace {
            let mut args: Vec<(&'static str, Value)> = vec![("frames", frames.into())];
            args.extend(since_hot.map(|d| ("hot_to_running_ms", ms(d).into())));
            trace.instant(
                "osr",
                format!("osr transition {label}"),
                Some(label.to_string()),
                args,
            );
        }
        if !self.events_enabled {
            return;
        }
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let since = since_hot
            .map(|d| format!("  hot->running={:.2}ms", ms(d)))
            .unwrap_or_default();
        self.emit(format!(
            "{:>10.3}ms {seq:>4} osr {label} transition: {frames} frame(s) now in O3{since}",
            self.elapsed_ms(),
        ));
    }

    /// Something `--events` tells about `label` under `topic` (`queue`,
    /// `osr`, `pgo`).
    pub fn note(&self, topic: &str, label: &str, note: &str) {
        if let Some(trace) = &self.trace {
            trace.instant(
                "note",
                format!("{topic} {label}"),
                None,
                vec![("topic", topic.into()), ("note", note.into())],
            );
        }
        self.note_line(topic, label, note);
    }

    /// The `--events` line of a note.
    fn note_line(&self, topic: &str, label: &str, note: &str) {
        if self.events_enabled {
            let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
            self.emit(format!(
                "{:>10.3}ms {seq:>4} {topic} {label}: {note}",
                self.elapsed_ms()
            ));
        }
    }

    /// Retired code (`label`, its symbols) was freed: `bytes` of object,
    /// `--events` saying `note`.
    pub fn code_freed(&self, label: &str, bytes: usize, note: &str) {
        if let Some(trace) = &self.trace {
            trace.instant(
                "reclaim",
                format!("freed {label}"),
                None,
                vec![("symbols", label.into()), ("bytes", bytes.into())],
            );
        }
        self.note_line("reclaim", label, note);
    }

    /// A value guard failed too often (`hits` and `misses` in its recent
    /// window); what replaces its version.
    pub fn guard_failed(
        &self,
        label: &str,
        condition: &str,
        hits: u64,
        misses: u64,
        action: GuardAction<'_>,
    ) {
        if let Some(trace) = &self.trace {
            let what = match action {
                GuardAction::Respecialize(next) => format!("respecialize for {next}"),
                GuardAction::Reinstate(next) => format!("reinstate the version for {next}"),
                GuardAction::Despecialize => "despecialize".to_string(),
            };
            trace.instant(
                "guard",
                format!("guard failed {label}"),
                Some(label.to_string()),
                vec![
                    ("condition", condition.into()),
                    ("hits", hits.into()),
                    ("misses", misses.into()),
                    ("action", what.into()),
                ],
            );
            match action {
                GuardAction::Despecialize => trace.instant(
                    "revoke",
                    format!("specialization revoked {label}"),
                    Some(label.to_string()),
                    vec![("condition", condition.into())],
                ),
                // Published again without a compile: an install all the same.
                GuardAction::Reinstate(next) => trace.instant(
                    "install",
                    format!("install {label} [O3 specialized] (reinstated for {next})"),
                    Some(label.to_string()),
                    vec![
                        ("tier", "O3 specialized".into()),
                        ("specialized", true.into()),
                        ("osr", false.into()),
                        ("reinstated", true.into()),
                    ],
                ),
                GuardAction::Respecialize(_) => {}
            }
        }
        if self.events_enabled {
            let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
            let action = match action {
                GuardAction::Respecialize(next) => format!("new phase: respecializing for {next}"),
                GuardAction::Reinstate(next) => {
                    format!("phase came back: reinstated its version for {next} (no compile)")
                }
                GuardAction::Despecialize => "despecializing (recompiling without it)".to_string(),
            };
            self.emit(format!(
                "{:>10.3}ms {seq:>4} pgo {label}: guard {condition} failed {misses} of {} recent calls; {action}",
                self.elapsed_ms(),
                hits + misses
            ));
        }
    }

    /// Promoted calls of a version kept taking the fallback.
    pub fn promotions_failed(&self, label: &str, fallbacks: u64) {
        if let Some(trace) = &self.trace {
            trace.instant(
                "revoke",
                format!("promotions revoked {label}"),
                Some(label.to_string()),
                vec![("fallbacks", fallbacks.into())],
            );
        }
        if self.events_enabled {
            let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
            self.emit(format!(
                "{:>10.3}ms {seq:>4} pgo {label}: promoted calls took the fallback {fallbacks} times, mostly to targets not promoted (a new phase); recompiling to promote them",
                self.elapsed_ms(),
            ));
        }
    }

    fn record_latency(&self, tier: Tier, compile: Duration) {
        let micros = (compile.as_micros() as u64).clamp(1, 600_000_000);
        self.compile_times(tier)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(micros);
    }

    fn elapsed_ms(&self) -> f64 {
        ms(self.start.elapsed())
    }

    fn emit(&self, line: String) {
        // One write: a line made of several could be split by the job's
        // own output (stderr is unbuffered).
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(format!("[tierjit] {line}\n").as_bytes());
    }

    /// A profiling window closed (see `tiering::resample`).
    pub fn profiling_window(&self) {
        // Relaxed: a statistic, read at exit.
        self.windows.fetch_add(1, Ordering::Relaxed);
    }

    /// Two profiling windows saw `label`'s branch biases move (`what`):
    /// its replacement is requested.
    pub fn branch_biases_moved(&self, label: &str, what: &str) {
        // Relaxed: as above.
        self.moves.fetch_add(1, Ordering::Relaxed);
        if let Some(trace) = &self.trace {
            trace.instant(
                "pgo",
                format!("branch biases moved {label}"),
                Some(label.to_string()),
                vec![("moved", what.into())],
            );
        }
        if self.events_enabled {
            let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
            self.emit(format!(
                "{:>10.3}ms {seq:>4} pgo {label}: branch biases moved ({what}), confirmed by a second window; recompiling with the new weights",
                self.elapsed_ms(),
            ));
        }
    }

    /// Profiling windows closed, and branch-bias moves confirmed.
    pub fn profiling_windows(&self) -> (u64, u64) {
        // Relaxed: statistics; nothing else is read through them.
        (
            self.windows.load(Ordering::Relaxed),
            self.moves.load(Ordering::Relaxed),
        )
    }

    pub fn tier_ups(&self) -> (u64, u64) {
        (
            self.installed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Latency lines for the summary: tier, count, p50, p90, p99, max (ms).
    pub fn latency_rows(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for tier in [Tier::Baseline, Tier::Optimized] {
            // Copied out: compiler threads still recording wait for the
            // copy, not for the histogram.
            let times = self
                .compile_times(tier)
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if times.is_empty() {
                continue;
            }
            let h = histogram(&times);
            let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            rows.push(format!(
                "  {tier}  n={:<5} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
                h.len(),
                q(0.5),
                q(0.9),
                q(0.99),
                h.max() as f64 / 1000.0
            ));
        }
        rows
    }
}

/// A tier-up in the trace: its compile span on the compiling thread, and
/// an install event when the version went in.
fn trace_tier_event(trace: &Trace, event: &TierEvent<'_>) {
    let result = match event.outcome {
        Ok(()) => "installed".to_string(),
        Err(reason) => format!("failed: {reason}"),
    };
    let unit = Some(event.function.to_string());
    trace.span(
        "compile",
        event.function.to_string(),
        unit.clone(),
        Instant::now()
            .checked_sub(event.compile)
            .unwrap_or_else(Instant::now),
        event.compile,
        vec![
            ("from", event.from.to_string().into()),
            ("to", event.to.to_string().into()),
            ("osr", event.osr.into()),
            ("queued_ms", ms(event.queued).into()),
            ("compile_ms", ms(event.compile).into()),
            ("size", event.code_bytes.into()),
            ("calls", event.calls.into()),
            ("backedges", event.backedges.into()),
            ("result", result.into()),
        ],
    );
    if event.outcome.is_ok() {
        let tier = match (event.osr, event.specialized) {
            (true, _) => format!("{} osr", event.to),
            (false, true) => format!("{} specialized", event.to),
            (false, false) => event.to.to_string(),
        };
        trace.instant(
            "install",
            format!("install {} [{tier}]", event.function),
            unit,
            vec![
                ("tier", tier.into()),
                ("specialized", event.specialized.into()),
                ("osr", event.osr.into()),
            ],
        );
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What replaces a version whose value guard failed.
#[derive(Clone, Copy, Debug)]
pub enum GuardAction<'a> {
    /// A version specialized for the values the misses agreed on.
    Respecialize(&'a str),
    /// A retired version specialized for those values, published again.
    Reinstate(&'a str),
    /// A general version.
    Despecialize,
}
