//! The daemon's figures: what each running job's worker reported
//! (`daemon::report`) and the totals over all jobs, and how `metrics`
//! renders them (OpenMetrics text).
//!
//! Reports come from the job's own process, which runs arbitrary code
//! that can write to the report socket too: every event is checked (a
//! known tier and cache kind, a finite time, one module per job) and the
//! arithmetic saturates, so a forged line can skew that job's figures at
//! worst, never the daemon or the text it serves.

use std::collections::BTreeMap;

use super::report::Event;
use crate::cache::Kind;

/// Upper bounds (s) of the compile-time histogram's buckets.
const COMPILE_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The tiers a compile can be at.
const TIERS: [&str; 2] = ["O0", "O3"];

/// What one running job's worker reported so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFigures {
    pub loaded: bool,
    pub functions: u64,
    pub optimized_functions: u64,
    pub continuations: u64,
    pub compiles: u64,
}

#[derive(Clone, Debug, Default)]
struct CompileTimes {
    count: u64,
    failed: u64,
    seconds: f64,
    /// Compiles at or under each of `COMPILE_BUCKETS`.
    buckets: [u64; COMPILE_BUCKETS.len()],
}

/// Over every job since the daemon started.
#[derive(Debug, Default)]
pub struct Totals {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub refused: u64,
    /// Per tier (one of `TIERS`).
    compiles: BTreeMap<&'static str, CompileTimes>,
    /// Per cache kind (its label): hits, misses.
    cache: BTreeMap<&'static str, (u64, u64)>,
}

impl Totals {
    /// Adds what a worker reported to its job's figures and the totals;
    /// an event that does not check out is ignored.
    pub fn note(&mut self, event: &Event, job: &mut JobFigures) {
        match event {
            Event::Loaded {
                functions,
                optimized,
            } => {
                // One module per job: a second report is not the runtime's.
                if job.loaded {
                    return;
                }
                job.loaded = true;
                job.functions = *functions;
                if *optimized {
                    job.optimized_functions = *functions;
                }
            }
            Event::Compiled {
                tier,
                seconds,
                osr,
                installed,
                first,
            } => {
                let Some(tier) = TIERS.iter().copied().find(|t| t == tier) else {
                    return;
                };
                if !seconds.is_finite() || !(0.0..=86_400.0).contains(seconds) {
                    return;
                }
                job.compiles = job.compiles.saturating_add(1);
                if *installed && *osr {
                    job.continuations = job.continuations.saturating_add(1);
                }
                if *first {
                    job.optimized_functions = (job.optimized_functions + 1).min(job.functions);
                }
                let times = self.compiles.entry(tier).or_default();
                times.count = times.count.saturating_add(1);
                if !installed {
                    times.failed = times.failed.saturating_add(1);
                }
                times.seconds += seconds;
                for (bound, count) in COMPILE_BUCKETS.iter().zip(&mut times.buckets) {
                    if seconds <= bound {
                        *count = count.saturating_add(1);
                    }
                }
            }
            Event::Cache { kind, hit } => {
                let Some(kind) = Kind::ALL.iter().map(|k| k.label()).find(|l| l == kind) else {
                    return;
                };
                let counts = self.cache.entry(kind).or_default();
                if *hit {
                    counts.0 = counts.0.saturating_add(1);
                } else {
                    counts.1 = counts.1.saturating_add(1);
                }
            }
        }
    }

    /// The totals for `status --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let compiles: serde_json::Map<String, serde_json::Value> = self
            .compiles
            .iter()
            .map(|(tier, t)| {
                let figures = serde_json::json!({
                    "count": t.count,
                    "failed": t.failed,
                    "seconds": t.seconds,
                });
                (tier.to_string(), figures)
            })
            .collect();
        let cache: serde_json::Map<String, serde_json::Value> = self
            .cache
            .iter()
            .map(|(kind, (hits, misses))| {
                let counts = serde_json::json!({ "hits": hits, "misses": misses });
                (kind.to_string(), counts)
            })
            .collect();
        serde_json::json!({
            "started": self.started,
            "completed": self.completed,
            "failed": self.failed,
            "refused": self.refused,
            "compiles": compiles,
            "cache": cache,
        })
    }

    /// OpenMetrics text, with the daemon's gauges.
    pub fn metrics(&self, running: usize, queued: usize, uptime_s: f64) -> String {
        let mut out = String::new();
        let counters = [
            (
                "tierjit_jobs_started",
                "Jobs whose worker started.",
                self.started,
            ),
            (
                "tierjit_jobs_completed",
                "Jobs that exited with status 0.",
                self.completed,
            ),
            (
                "tierjit_jobs_failed",
                "Jobs that exited non-zero, were killed, or could not start.",
                self.failed,
            ),
            (
                "tierjit_requests_refused",
                "Requests refused (bad input, not allowed, stopping).",
                self.refused,
            ),
        ];
        for (name, help, value) in counters {
            out += &format!("# TYPE {name} counter\n# HELP {name} {help}\n{name}_total {value}\n");
        }
        let gauges = [
            ("tierjit_jobs_running", "Jobs running now.", running as f64),
            (
                "tierjit_jobs_queued",
                "Jobs waiting for a slot.",
                queued as f64,
            ),
            (
                "tierjit_uptime_seconds",
                "Seconds since the daemon started.",
                uptime_s,
            ),
        ];
        for (name, help, value) in gauges {
            out += &format!("# TYPE {name} gauge\n# HELP {name} {help}\n{name} {value}\n");
        }
        out += "# TYPE tierjit_compiles counter\n# HELP tierjit_compiles Compiles by tier (O0: a module's baseline; O3: optimized versions and continuations).\n";
        for (tier, t) in &self.compiles {
            out += &format!("tierjit_compiles_total{{tier=\"{tier}\"}} {}\n", t.count);
        }
        out += "# TYPE tierjit_compile_failures counter\n# HELP tierjit_compile_failures Compiles that failed (the job kept its lower tier).\n";
        for (tier, t) in &self.compiles {
            out += &format!(
                "tierjit_compile_failures_total{{tier=\"{tier}\"}} {}\n",
                t.failed
            );
        }
        out += "# TYPE tierjit_compile_seconds histogram\n# HELP tierjit_compile_seconds Time of each compile, by tier.\n";
        for (tier, t) in &self.compiles {
            for (bound, count) in COMPILE_BUCKETS.iter().zip(t.buckets) {
                // `{:?}` keeps the decimal point OpenMetrics' canonical
                // form has (1.0, not 1).
                out += &format!(
                    "tierjit_compile_seconds_bucket{{tier=\"{tier}\",le=\"{bound:?}\"}} {count}\n"
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
        for (name, help, hits) in families {
            out += &format!("# TYPE {name} counter\n# HELP {name} {help}\n");
            for (kind, (hit_count, miss_count)) in &self.cache {
                let value = if hits { hit_count } else { miss_count };
                let kind = kind.replace(' ', "_");
                out += &format!("{name}_total{{kind=\"{kind}\"}} {value}\n");
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(tier: &str, seconds: f64, first: bool) -> Event {
        Event::Compiled {
            tier: tier.into(),
            seconds,
            osr: false,
            installed: true,
            first,
        }
    }

    #[test]
    fn forged_reports_cannot_break_the_figures() {
        let mut totals = Totals::default();
        let mut job = JobFigures::default();
        let loaded = |functions, optimized| Event::Loaded {
            functions,
            optimized,
        };
        totals.note(&loaded(2, false), &mut job);
        // A second module, larger then smaller: ignored.
        totals.note(&loaded(10, true), &mut job);
        totals.note(&compiled("O3", 0.01, true), &mut job);
        totals.note(&compiled("O3", 0.01, true), &mut job);
        totals.note(&compiled("O3", 0.01, true), &mut job);
        assert_eq!((job.functions, job.optimized_functions), (2, 2));
        for bad in [
            compiled("O3\"} 1\n# EOF\n", 0.1, false),
            compiled("O3", f64::INFINITY, false),
            compiled("O3", 1e308, false),
            compiled("O3", -1.0, false),
            Event::Cache {
                kind: "x\"}\n".into(),
                hit: true,
            },
        ] {
            totals.note(&bad, &mut job);
        }
        assert_eq!(job.compiles, 3);
        let text = totals.metrics(0, 0, 1.0);
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(
            text.contains("tierjit_compiles_total{tier=\"O3\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("le=\"1.0\""), "{text}");
        assert!(!text.contains("inf\n") && !text.contains("NaN"), "{text}");
        totals.note(
            &Event::Cache {
                kind: "front end".into(),
                hit: false,
            },
            &mut job,
        );
        assert!(totals
            .metrics(0, 0, 1.0)
            .contains("tierjit_cache_misses_total{kind=\"front_end\"} 1\n"));
    }
}
