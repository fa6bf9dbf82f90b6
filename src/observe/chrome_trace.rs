//! `--trace FILE`: the run in Chrome's trace-event format (JSON), which
//! Perfetto (ui.perfetto.dev) and chrome://tracing open. A track per
//! thread (the job's, the profiler, each compiler), compile spans, instant
//! events, and a counter track per hot unit of what baseline code counted.

use std::io::Write;

use serde_json::{json, Map, Value};

use super::trace::TraceData;

/// Writes `data` to `out` as a JSON object with `traceEvents`, one event
/// at a time (a trace near its bound has 200,000).
pub fn write(data: &TraceData, out: &mut impl Write) -> std::io::Result<()> {
    let other = json!({
        "job": data.job,
        "tool": concat!("tierjit ", env!("CARGO_PKG_VERSION")),
        "dropped_events": data.dropped,
    });
    write!(
        out,
        "{{\"displayTimeUnit\":\"ms\",\"otherData\":{other},\"traceEvents\":["
    )?;
    let mut first = true;
    let mut emit = |out: &mut dyn Write, event: Value| -> std::io::Result<()> {
        if !std::mem::take(&mut first) {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut *out, &event)?;
        Ok(())
    };
    let pid = data.pid;
    emit(
        out,
        json!({
            "name": "process_name", "ph": "M", "pid": pid,
            "args": {"name": format!("tierjit {}", data.job)},
        }),
    )?;
    for (index, (thread, name)) in data.threads.iter().enumerate() {
        emit(
            out,
            json!({
                "name": "thread_name", "ph": "M", "pid": pid, "tid": thread,
                "args": {"name": name},
            }),
        )?;
        // The job's threads first, then tierjit's, in order of appearance.
        let rank = if name.starts_with("job") { 0 } else { 1000 };
        emit(
            out,
            json!({
                "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": thread,
                "args": {"sort_index": rank + index},
            }),
        )?;
    }
    for event in &data.events {
        let mut args: Map<String, Value> = event
            .args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Some(unit) = &event.unit {
            args.insert("unit".into(), unit.clone().into());
        }
        let mut value = json!({
            "name": event.name,
            "cat": event.category,
            "pid": pid,
            "tid": event.thread,
            "ts": event.at_us,
            "args": args,
        });
        match event.duration_us {
            Some(duration) => {
                value["ph"] = "X".into();
                value["dur"] = duration.into();
            }
            None => {
                value["ph"] = "i".into();
                value["s"] = "t".into();
            }
        }
        emit(out, value)?;
    }
    for track in &data.counters {
        // Rates between samples: what a reader wants to see move.
        for pair in track.points.windows(2) {
            let ((t0, c0, b0), (t1, c1, b1)) = (pair[0], pair[1]);
            let seconds = ((t1 - t0) / 1e6).max(1e-9);
            emit(
                out,
                json!({
                    "name": format!("{} (O0 counts)", track.unit),
                    "ph": "C", "pid": pid, "ts": t0,
                    "args": {
                        "calls/s": (c1.saturating_sub(c0) as f64 / seconds).round(),
                        "back-edges/s": (b1.saturating_sub(b0) as f64 / seconds).round(),
                    },
                }),
            )?;
        }
    }
    out.write_all(b"]}\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_instants_and_counters_are_trace_events() {
        let trace = crate::observe::trace::tier_up_of_kernel("job.c");
        let mut out = Vec::new();
        write(&trace.finish(), &mut out).unwrap();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        let events = parsed["traceEvents"].as_array().unwrap();
        let span = events.iter().find(|e| e["ph"] == "X").unwrap();
        assert_eq!(span["name"], "kernel");
        assert_eq!(span["dur"].as_f64().unwrap().round(), 3000.0);
        assert_eq!(span["args"]["result"], "installed");
        assert!(events
            .iter()
            .any(|e| e["ph"] == "i" && e["args"]["unit"] == "kernel"));
        let counter = events.iter().find(|e| e["ph"] == "C").unwrap();
        assert!(counter["args"]["calls/s"].as_f64().unwrap() > 0.0);
        assert!(events.iter().any(|e| e["name"] == "thread_name"));
    }
}
