//! `--timeline FILE.svg`: the run as one picture. Time runs left to right
//! (in ms). On top, the rate at which baseline code counted calls and
//! back-edges in the hottest units; below, a row per function or loop
//! that got hot, coloured by the tier running it at each moment, with its
//! compiles, installs, OSR transitions and guard failures marked; then a
//! row per thread that compiled, with its compile spans. SVG text written
//! directly: no dependency, and it opens in any browser.

use std::fmt::Write as _;

use super::trace::{Event, TraceData};

const WIDTH: f64 = 1200.0;
const LABELS: f64 = 230.0;
const RIGHT: f64 = 24.0;
const ROW: f64 = 16.0;
const ROW_GAP: f64 = 5.0;
const RATE_HEIGHT: f64 = 110.0;
/// Rows drawn at most; the rest are counted in a note.
const MAX_ROWS: usize = 48;
/// Units drawn in the rate panel at most.
const MAX_SERIES: usize = 6;

const O0: &str = "#bdbdbd";
const O3: &str = "#2e7d32";
const O3_SPECIALIZED: &str = "#1565c0";
const O3_OSR: &str = "#7b1fa2";
const COMPILING: &str = "#f9a825";
const FAILED: &str = "#c62828";
const SERIES: [&str; MAX_SERIES] = [
    "#d81b60", "#1e88e5", "#43a047", "#fb8c00", "#5e35b1", "#00897b",
];

/// What happened to one unit, gathered from the events.
#[derive(Default)]
struct UnitStory {
    name: String,
    first_seen: f64,
    /// (time, specialized)
    installs: Vec<(f64, bool)>,
    /// (start, duration, installed)
    compiles: Vec<(f64, f64, bool)>,
    transitions: Vec<f64>,
    guard_failures: Vec<f64>,
}

impl UnitStory {
    fn is_loop(&self) -> bool {
        self.name.contains("@loop")
    }

    /// Coloured segments of its row: (from, to, colour).
    fn segments(&self, end: f64) -> Vec<(f64, f64, &'static str)> {
        let mut changes: Vec<(f64, &'static str)> = vec![(0.0, O0)];
        if self.is_loop() {
            // A loop runs optimized code once a frame moved over.
            if let Some(&t) = self.transitions.first() {
                changes.push((t, O3_OSR));
            }
        } else {
            for &(t, specialized) in &self.installs {
                changes.push((t, if specialized { O3_SPECIALIZED } else { O3 }));
            }
        }
        changes.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut segments = Vec::new();
        for (i, &(from, colour)) in changes.iter().enumerate() {
            let to = changes.get(i + 1).map_or(end, |c| c.0);
            if to > from {
                segments.push((from, to, colour));
            }
        }
        segments
    }
}

fn stories(data: &TraceData) -> Vec<UnitStory> {
    let mut stories: Vec<UnitStory> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut story = |name: &str, at: f64| -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            stories.push(UnitStory {
                name: name.to_string(),
                first_seen: at,
                ..UnitStory::default()
            });
            stories.len() - 1
        })
    };
    let mut events: Vec<&Event> = data.events.iter().collect();
    events.sort_by(|a, b| a.at_us.total_cmp(&b.at_us));
    let mut per_event = Vec::new();
    for event in events {
        let Some(unit) = &event.unit else { continue };
        if !matches!(event.category, "compile" | "install" | "osr" | "guard") {
            continue;
        }
        per_event.push((story(unit, event.at_us), event));
    }
    for track in &data.counters {
        if let Some(&(at, _, _)) = track.points.first() {
            story(&track.unit, at);
        }
    }
    for (i, event) in per_event {
        let s = &mut stories[i];
        let flag = |key: &str| {
            event
                .args
                .iter()
                .any(|(k, v)| *k == key && v.as_bool() == Some(true))
        };
        match (event.category, event.duration_us) {
            ("compile", Some(duration)) => {
                s.compiles.push((event.at_us, duration, installed(event)));
            }
            ("install", _) => s.installs.push((event.at_us, flag("specialized"))),
            ("osr", _) => s.transitions.push(event.at_us),
            ("guard", _) => s.guard_failures.push(event.at_us),
            _ => {}
        }
    }
    stories.sort_by(|a, b| a.first_seen.total_cmp(&b.first_seen));
    stories
}

/// Rates (per ms) between samples of the hottest units: name, points.
fn series(data: &TraceData) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut tracks: Vec<_> = data
        .counters
        .iter()
        .filter(|t| t.points.len() >= 2)
        .map(|t| {
            let &(_, calls, backedges) = t.points.last().expect("two points");
            (calls + backedges, t)
        })
        .collect();
    tracks.sort_by_key(|t| std::cmp::Reverse(t.0));
    tracks
        .into_iter()
        .take(MAX_SERIES)
        .map(|(_, t)| {
            let points = t
                .points
                .windows(2)
                .map(|w| {
                    let ((t0, c0, b0), (t1, c1, b1)) = (w[0], w[1]);
                    let ms = ((t1 - t0) / 1000.0).max(1e-6);
                    let events = (c1 + b1).saturating_sub(c0 + b0) as f64;
                    ((t0 + t1) / 2.0, events / ms)
                })
                .collect();
            (t.unit.clone(), points)
        })
        .collect()
}

/// Whether compile span `event` installed what it built.
fn installed(event: &Event) -> bool {
    event
        .args
        .iter()
        .any(|(k, v)| *k == "result" && v.as_str() == Some("installed"))
}

/// Writes a section's title below `y`; returns where the section starts.
fn heading(body: &mut String, y: f64, title: &str) -> f64 {
    let y = y + 8.0;
    let _ = writeln!(
        body,
        r#"<text x="12" y="{y}" class="section">{title}</text>"#
    );
    y + 6.0
}

/// A round step for axis ticks: about `target` of them over `range`.
fn tick_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| m * magnitude >= raw)
        .unwrap_or(10.0);
    step * magnitude
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// A label that fits the label column.
fn short(name: &str) -> String {
    const MAX: usize = 34;
    if name.chars().count() <= MAX {
        name.to_string()
    } else {
        let head: String = name.chars().take(MAX - 1).collect();
        format!("{head}…")
    }
}

/// The picture of `data`, as SVG text.
pub fn render(data: &TraceData) -> String {
    let end_us = data.end_us.max(1.0);
    let plot = WIDTH - LABELS - RIGHT;
    let x = |t_us: f64| LABELS + (t_us / end_us).clamp(0.0, 1.0) * plot;
    let stories = stories(data);
    let shown = stories.len().min(MAX_ROWS);
    let series = series(data);
    let compiled_on: std::collections::HashSet<i32> = data
        .events
        .iter()
        .filter(|e| e.category == "compile" && e.duration_us.is_some())
        .map(|e| e.thread)
        .collect();
    let compiler_threads: Vec<&(i32, String)> = data
        .threads
        .iter()
        .filter(|(t, _)| compiled_on.contains(t))
        .collect();

    let mut body = String::new();
    let mut y = 20.0;
    let _ = writeln!(
        body,
        r#"<text x="12" y="{y}" class="title">tierjit timeline: {} ({:.1} ms)</text>"#,
        escape(&data.job),
        end_us / 1000.0
    );
    y += 20.0;
    let legend = [
        (O0, "O0 (baseline)"),
        (O3, "O3"),
        (O3_SPECIALIZED, "O3, specialized"),
        (O3_OSR, "O3 via OSR (loop)"),
        (COMPILING, "compiling"),
        (FAILED, "failed compile"),
    ];
    let mut lx = 12.0;
    for (colour, label) in legend {
        let _ = writeln!(
            body,
            r#"<rect x="{lx}" y="{}" width="12" height="10" fill="{colour}"/><text x="{}" y="{y}">{label}</text>"#,
            y - 9.0,
            lx + 16.0
        );
        lx += 24.0 + 6.5 * label.len() as f64;
    }
    let _ = writeln!(
        body,
        r#"<path d="M{lx} {} l4 7 l4 -7 z" fill="{O3_OSR}"/><text x="{}" y="{y}">OSR transition</text>"#,
        y - 9.0,
        lx + 12.0
    );
    lx += 110.0;
    let _ = writeln!(
        body,
        r#"<path d="M{lx} {} l8 8 M{} {} l-8 8" stroke="{FAILED}" stroke-width="2"/><text x="{}" y="{y}">guard failed</text>"#,
        y - 9.0,
        lx + 8.0,
        y - 9.0,
        lx + 12.0
    );
    lx += 100.0;
    let _ = writeln!(
        body,
        r#"<path d="M{lx} {} v10" stroke="black" stroke-width="1.5"/><text x="{}" y="{y}">install</text>"#,
        y - 9.0,
        lx + 6.0
    );
    y += 14.0;
    let top = y;

    // The rate panel.
    if !series.is_empty() {
        let max = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, r)| *r))
            .fold(0.0f64, f64::max)
            .max(1e-9);
        y = heading(&mut body, y, "calls + back-edges per ms counted by O0 code");
        let base = y + RATE_HEIGHT;
        let _ = writeln!(
            body,
            r##"<rect x="{LABELS}" y="{y}" width="{plot}" height="{RATE_HEIGHT}" fill="#fafafa" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            body,
            r#"<text x="{}" y="{}" class="small">max {}</text>"#,
            LABELS + 4.0,
            y + 11.0,
            format_rate(max)
        );
        for (i, (name, points)) in series.iter().enumerate() {
            let colour = SERIES[i % SERIES.len()];
            let _ = writeln!(
                body,
                r#"<text x="12" y="{}" fill="{colour}">{}</text>"#,
                y + 12.0 + 13.0 * i as f64,
                escape(&short(name))
            );
            let path: Vec<String> = points
                .iter()
                .map(|(t, r)| format!("{:.1},{:.1}", x(*t), base - r / max * RATE_HEIGHT))
                .collect();
            let _ = writeln!(
                body,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"><title>{}</title></polyline>"#,
                path.join(" "),
                escape(name)
            );
        }
        y = base + 12.0;
    }

    // A row per unit that got hot.
    if !stories.is_empty() {
        y = heading(&mut body, y, "functions and loops that got hot");
    }
    for story in &stories[..shown] {
        let mid = y + ROW / 2.0;
        let _ = writeln!(
            body,
            r#"<text x="12" y="{}">{}</text>"#,
            mid + 4.0,
            escape(&short(&story.name))
        );
        for (from, to, colour) in story.segments(end_us) {
            let _ = writeln!(
                body,
                r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="{ROW}" fill="{colour}"/>"#,
                x(from),
                (x(to) - x(from)).max(0.5)
            );
        }
        for &(start, duration, installed) in &story.compiles {
            let colour = if installed { COMPILING } else { FAILED };
            let _ = writeln!(
                body,
                r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="5" fill="{colour}"><title>compile {}: {:.2} ms</title></rect>"#,
                x(start),
                (x(start + duration) - x(start)).max(1.0),
                escape(&story.name),
                duration / 1000.0
            );
        }
        for &(t, _) in &story.installs {
            let _ = writeln!(
                body,
                r#"<path d="M{:.1} {} v{ROW}" stroke="black" stroke-width="1.5"/>"#,
                x(t),
                y
            );
        }
        for &t in &story.transitions {
            let _ = writeln!(
                body,
                r#"<path d="M{:.1} {} l5 8 l5 -8 z" fill="{O3_OSR}" stroke="white" stroke-width="0.5"><title>OSR transition</title></path>"#,
                x(t) - 5.0,
                y - 3.0
            );
        }
        for &t in &story.guard_failures {
            let cx = x(t);
            let _ = writeln!(
                body,
                r#"<path d="M{:.1} {:.1} l8 8 m0 -8 l-8 8" stroke="{FAILED}" stroke-width="2"><title>guard failed</title></path>"#,
                cx - 4.0,
                mid - 4.0
            );
        }
        y += ROW + ROW_GAP;
    }
    if stories.len() > shown {
        let _ = writeln!(
            body,
            r#"<text x="12" y="{}" class="small">… and {} more (see --trace)</text>"#,
            y + 10.0,
            stories.len() - shown
        );
        y += 16.0;
    }

    // A row per thread that compiled.
    if !compiler_threads.is_empty() {
        y = heading(&mut body, y, "compiles, by thread");
    }
    for (thread, name) in compiler_threads {
        let _ = writeln!(
            body,
            r##"<text x="12" y="{}">{}</text><rect x="{LABELS}" y="{y}" width="{plot}" height="{ROW}" fill="#f3f3f3"/>"##,
            y + ROW / 2.0 + 4.0,
            escape(&short(name))
        );
        for event in data
            .events
            .iter()
            .filter(|e| e.thread == *thread && e.category == "compile")
        {
            let Some(duration) = event.duration_us else {
                continue;
            };
            let colour = if installed(event) { O3 } else { FAILED };
            let (x0, x1) = (x(event.at_us), x(event.at_us + duration));
            let _ = writeln!(
                body,
                r#"<rect x="{x0:.1}" y="{y}" width="{:.1}" height="{ROW}" fill="{colour}" stroke="white" stroke-width="0.5"><title>{}: {:.2} ms</title></rect>"#,
                (x1 - x0).max(1.0),
                escape(&event.name),
                duration / 1000.0
            );
            if x1 - x0 > 7.0 * event.name.len() as f64 {
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{}" class="onbar">{}</text>"#,
                    x0 + 3.0,
                    y + ROW / 2.0 + 4.0,
                    escape(&event.name)
                );
            }
        }
        y += ROW + ROW_GAP;
    }

    // The time axis, with grid lines over everything above it.
    let axis = y + 6.0;
    let step_ms = tick_step(end_us / 1000.0, 10.0);
    let mut ticks = String::new();
    let mut t_ms = 0.0;
    while t_ms <= end_us / 1000.0 + 1e-9 {
        let tx = x(t_ms * 1000.0);
        let _ = writeln!(
            ticks,
            r##"<path d="M{tx:.1} {top} V{axis}" stroke="#e0e0e0"/><text x="{tx:.1}" y="{}" class="small" text-anchor="middle">{}</text>"##,
            axis + 14.0,
            format_ms(t_ms, step_ms)
        );
        t_ms += step_ms;
    }
    let _ = writeln!(
        ticks,
        r#"<path d="M{LABELS} {axis} H{}" stroke="black"/><text x="{}" y="{}" class="small" text-anchor="middle">time since start (ms)</text>"#,
        LABELS + plot,
        LABELS + plot / 2.0,
        axis + 30.0
    );
    let height = axis + 42.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
<style>.title {{ font-size: 16px; font-weight: bold; }} .section {{ font-weight: bold; }} .small {{ font-size: 10px; fill: #555; }} .onbar {{ font-size: 10px; fill: white; }}</style>
<rect width="100%" height="100%" fill="white"/>"#
    );
    svg.push_str(&ticks);
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

fn format_ms(t_ms: f64, step_ms: f64) -> String {
    if step_ms >= 1.0 {
        format!("{t_ms:.0}")
    } else if step_ms >= 0.1 {
        format!("{t_ms:.1}")
    } else {
        format!("{t_ms:.2}")
    }
}

fn format_rate(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.1}M/ms", r / 1e6),
        r if r >= 1e3 => format!("{:.1}k/ms", r / 1e3),
        r => format!("{r:.0}/ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_up_is_drawn_with_its_names() {
        let trace = crate::observe::trace::tier_up_of_kernel("job <1>.c");
        trace.instant(
            "osr",
            "osr transition".into(),
            Some("main@loop0".into()),
            vec![],
        );
        let svg = render(&trace.finish());
        assert!(svg.contains("job &lt;1&gt;.c"));
        assert!(svg.contains(">kernel</text>"));
        assert!(svg.contains(">main@loop0</text>"));
        assert!(svg.contains(O3) && svg.contains(O3_OSR));
        assert!(svg.contains("time since start (ms)"));
    }

    #[test]
    fn ticks_are_round() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b;
        assert!(close(tick_step(1000.0, 10.0), 100.0));
        assert!(close(tick_step(37.0, 10.0), 5.0));
        assert!(close(tick_step(0.3, 10.0), 0.05));
    }
}
