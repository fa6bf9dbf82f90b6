//! A run's trace: what the JIT did, when and on which thread, kept in
//! memory while the job runs and written at its end (`--trace` as
//! Chrome trace events, `--timeline` as a picture).
//!
//! Bounded: events past `MAX_EVENTS` are counted, not kept, and each hot
//! unit's counter samples are thinned (every other one dropped, the
//! interval doubled) whenever they reach `MAX_SAMPLES`, so a job that runs
//! for days keeps a trace of bounded size (tens of megabytes at most,
//! mostly events' arguments; a few megabytes for most runs).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Events kept; later ones are only counted.
const MAX_EVENTS: usize = 200_000;
/// Counter samples kept per unit.
const MAX_SAMPLES: usize = 2048;

/// One thing that happened: a span (`duration` set) or an instant.
#[derive(Clone, Debug)]
pub struct Event {
    /// The kernel's id of the thread it happened on.
    pub thread: i32,
    /// Microseconds since the run started.
    pub at_us: f64,
    pub duration_us: Option<f64>,
    /// `compile`, `install`, `osr`, `guard`, `revoke`, `reclaim`, `cache`,
    /// `thread`, or an `--events` topic.
    pub category: &'static str,
    pub name: String,
    /// The function (`f`) or loop (`f@loopK`) it is about, if one.
    pub unit: Option<String>,
    pub args: Vec<(&'static str, Value)>,
}

/// What baseline code counted for one unit, sampled by the profiler.
#[derive(Clone, Debug, Default)]
pub struct CounterTrack {
    pub unit: String,
    /// Samples closer than this to the previous one are skipped.
    every_us: f64,
    /// (time, calls, back-edges), counts since the start.
    pub points: Vec<(f64, u64, u64)>,
}

/// Everything recorded, as the writers take it.
#[derive(Clone, Debug, Default)]
pub struct TraceData {
    /// Each thread seen, with its role, in order of first appearance.
    pub threads: Vec<(i32, String)>,
    /// The threads in `threads`.
    seen: std::collections::HashSet<i32>,
    /// Where each unit's track is in `counters`.
    tracks: std::collections::HashMap<String, usize>,
    pub events: Vec<Event>,
    /// Events past `MAX_EVENTS`, not kept.
    pub dropped: u64,
    pub counters: Vec<CounterTrack>,
    /// When the run ended (microseconds since its start).
    pub end_us: f64,
    /// What ran: the job's path.
    pub job: String,
    pub pid: u32,
}

pub struct Trace {
    start: Instant,
    data: Mutex<TraceData>,
    /// Job threads running: thread, since when (`main`'s included).
    running: Mutex<Vec<(i32, f64, &'static str)>>,
}

impl Trace {
    pub fn new(start: Instant, job: &str) -> Trace {
        Trace {
            start,
            data: Mutex::new(TraceData {
                job: job.to_string(),
                pid: std::process::id(),
                ..TraceData::default()
            }),
            running: Mutex::new(Vec::new()),
        }
    }

    fn micros(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64() * 1e6
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TraceData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A span on this thread, from `began` for `duration`.
    pub fn span(
        &self,
        category: &'static str,
        name: String,
        unit: Option<String>,
        began: Instant,
        duration: Duration,
        args: Vec<(&'static str, Value)>,
    ) {
        let event = Event {
            thread: this_thread(),
            at_us: self.micros(began),
            duration_us: Some(duration.as_secs_f64() * 1e6),
            category,
            name,
            unit,
            args,
        };
        self.push(event);
    }

    /// An instant event on this thread, now.
    pub fn instant(
        &self,
        category: &'static str,
        name: String,
        unit: Option<String>,
        args: Vec<(&'static str, Value)>,
    ) {
        let event = Event {
            thread: this_thread(),
            at_us: self.micros(Instant::now()),
            duration_us: None,
            category,
            name,
            unit,
            args,
        };
        self.push(event);
    }

    fn push(&self, event: Event) {
        let mut data = self.lock();
        note_thread(&mut data, event.thread);
        if data.events.len() < MAX_EVENTS {
            data.events.push(event);
        } else {
            data.dropped += 1;
        }
    }

    /// What baseline code has counted for `unit` so far, now.
    pub fn sample(&self, unit: &str, calls: u64, backedges: u64) {
        let at = self.micros(Instant::now());
        let mut data = self.lock();
        let data = &mut *data;
        let next = data.counters.len();
        let index = *data.tracks.entry(unit.to_string()).or_insert(next);
        if index == next {
            data.counters.push(CounterTrack {
                unit: unit.to_string(),
                ..CounterTrack::default()
            });
        }
        let track = &mut data.counters[index];
        if let Some(&(last, _, _)) = track.points.last() {
            if at - last < track.every_us {
                return;
            }
        }
        track.points.push((at, calls, backedges));
        if track.points.len() >= MAX_SAMPLES {
            // Every other sample goes, and the interval doubles: the
            // track covers the whole run at half the resolution.
            let span = at - track.points[0].0;
            let mut k = 0;
            track.points.retain(|_| {
                k += 1;
                k % 2 == 1
            });
            track.every_us = (2.0 * span / MAX_SAMPLES as f64).max(track.every_us * 2.0);
        }
    }

    /// This thread began doing `what` (`job thread`, `main`, `profiler`,
    /// `compiler`, `reclaim`): a span from now until `thread_ended` or the
    /// end of the run, so that each thread has its track.
    pub fn thread_began(&self, what: &'static str) {
        let at = self.micros(Instant::now());
        let thread = this_thread();
        note_thread(&mut self.lock(), thread);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.push((thread, at, what));
    }

    /// This thread is done: its span (see `thread_began`).
    pub fn thread_ended(&self) {
        let thread = this_thread();
        let began = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let Some(i) = running.iter().position(|(t, _, _)| *t == thread) else {
                return;
            };
            running.remove(i)
        };
        let now = self.micros(Instant::now());
        self.push(Event {
            thread,
            at_us: began.1,
            duration_us: Some(now - began.1),
            category: "thread",
            name: began.2.into(),
            unit: None,
            args: Vec::new(),
        });
    }

    /// What was recorded, with the spans of job threads still running
    /// (`main`'s too) closed now.
    pub fn finish(&self) -> TraceData {
        let end = self.micros(Instant::now());
        let running: Vec<(i32, f64, &'static str)> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Taken: this is the end (a job thread that ends later records
        // into an empty trace, which is never written).
        let mut data = std::mem::take(&mut *self.lock());
        let mut close = |thread: i32, began: f64, name: &str| {
            note_thread(&mut data, thread);
            data.events.push(Event {
                thread,
                at_us: began,
                duration_us: Some(end - began),
                category: "thread",
                name: name.to_string(),
                unit: None,
                args: Vec::new(),
            });
        };
        for (thread, began, name) in running {
            close(thread, began, name);
        }
        data.end_us = end;
        data
    }
}

fn this_thread() -> i32 {
    crate::code::current_os_thread()
}

/// Names `thread` the first time it is seen: tierjit's threads by their
/// names, the others as the job's.
fn note_thread(data: &mut TraceData, thread: i32) {
    if !data.seen.insert(thread) {
        return;
    }
    // Threads are noted by themselves, except `main` and job threads
    // still running at the end (noted by the thread that writes).
    let name = match std::thread::current().name() {
        _ if thread as u32 == data.pid => "job main".to_string(),
        Some(name) if this_thread() == thread && name.starts_with("tierjit") => {
            name.trim_start_matches("tierjit-").to_string()
        }
        _ => format!("job thread {thread}"),
    };
    data.threads.push((thread, name));
}

/// The trace job threads report to (`tierjit run` has one job).
static JOB_TRACE: OnceLock<Arc<Trace>> = OnceLock::new();

/// Makes `trace` the one job threads report their lives to.
pub fn follow_job_threads(trace: Arc<Trace>) {
    if JOB_TRACE.set(trace).is_ok() {
        crate::code::on_job_threads(|began| {
            if let Some(trace) = JOB_TRACE.get() {
                if began {
                    trace.thread_began("job thread");
                } else {
                    trace.thread_ended();
                }
            }
        });
    }
}

/// A trace of one tier-up, for the writers' tests.
#[cfg(test)]
pub(crate) fn tier_up_of_kernel(job: &str) -> Trace {
    let start = Instant::now();
    let trace = Trace::new(start, job);
    trace.sample("kernel", 10, 0);
    std::thread::sleep(Duration::from_millis(2));
    trace.sample("kernel", 30, 5);
    trace.span(
        "compile",
        "kernel".into(),
        Some("kernel".into()),
        start,
        Duration::from_millis(3),
        vec![("result", "installed".into())],
    );
    trace.instant(
        "install",
        "install kernel [O3]".into(),
        Some("kernel".into()),
        vec![],
    );
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_thinned_not_lost() {
        let trace = Trace::new(Instant::now(), "job");
        for i in 0..10 * MAX_SAMPLES as u64 {
            trace.sample("f", i, 2 * i);
        }
        let data = trace.finish();
        let points = &data.counters[0].points;
        assert!(points.len() < MAX_SAMPLES, "{}", points.len());
        assert_eq!(points[0], (points[0].0, 0, 0), "the first sample stays");
        assert!(points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
    }

    #[test]
    fn events_past_the_bound_are_counted() {
        let trace = Trace::new(Instant::now(), "job");
        for _ in 0..MAX_EVENTS + 5 {
            trace.instant("osr", String::new(), None, Vec::new());
        }
        trace.thread_began("main");
        let data = trace.finish();
        assert_eq!(data.dropped, 5);
        // The main thread's span is added at the end, past the bound.
        assert_eq!(data.events.len(), MAX_EVENTS + 1);
    }
}
