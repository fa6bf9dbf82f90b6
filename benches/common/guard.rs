//! The ratio guard: flags a job whose tiered/optimized ratio in this run
//! regressed against the ratio recorded when the figures were last quoted
//! (`benches/recorded_ratios.ron`), or, for a job with none recorded, is
//! above the target, so a closing note's figures cannot silently stop
//! holding after a later commit.
//!
//!   TIERJIT_RECORD_RATIOS=1 cargo bench --bench nests   # record this run's
//!
//! Timings on a shared machine are noisy: a flag is a reason to re-run
//! and look, not a verdict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The target: tiered within 1.10x of optimized on every job.
pub const TARGET: f64 = 1.10;
/// How much worse than recorded a ratio may get before it is flagged.
pub const TOLERANCE: f64 = 0.10;

fn recorded_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/recorded_ratios.ron")
}

fn read_recorded() -> BTreeMap<String, f64> {
    std::fs::read_to_string(recorded_path())
        .ok()
        .and_then(|text| ron::from_str(&text).ok())
        .unwrap_or_default()
}

/// What the guard flags about one job, if anything: a regression against
/// the recorded ratio, or, with none recorded, a ratio above the target.
/// (A ratio recorded above the target is a known shortfall, quoted as
/// such; it is flagged only if it gets worse.)
pub fn verdict(ratio: f64, recorded: Option<f64>) -> Option<String> {
    match recorded {
        Some(r) if ratio > r * (1.0 + TOLERANCE) => Some(format!(
            "regressed: {ratio:.2} against {r:.2} recorded (tolerance {:.0}%)",
            TOLERANCE * 100.0
        )),
        Some(_) => None,
        None if ratio > TARGET => Some(format!("{ratio:.2} is above the {TARGET:.2} target")),
        None => None,
    }
}

/// Prints the guard's table for `ratios` (key, tiered/optimized), records
/// them when asked, and returns whether any was flagged.
pub fn check(ratios: &[(String, f64)]) -> bool {
    let mut recorded = read_recorded();
    println!("\nratio guard (tiered / optimized; target {TARGET:.2}, recorded in benches/recorded_ratios.ron):");
    let mut flagged = false;
    for (key, ratio) in ratios {
        let was = recorded.get(key).copied();
        let note = verdict(*ratio, was);
        flagged |= note.is_some();
        let status = match (note, *ratio > TARGET) {
            (Some(n), _) => format!("FLAGGED: {n}"),
            (None, true) => format!("above the {TARGET:.2} target, as recorded"),
            (None, false) => "ok".into(),
        };
        println!(
            "  {key:<28} {ratio:>6.2}  recorded {:>6}  {status}",
            was.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into()),
        );
    }
    if std::env::var_os("TIERJIT_RECORD_RATIOS").is_some() {
        for (key, ratio) in ratios {
            recorded.insert(key.clone(), (ratio * 100.0).round() / 100.0);
        }
        let pretty = ron::ser::PrettyConfig::new();
        match ron::ser::to_string_pretty(&recorded, pretty) {
            Ok(text) => {
                let header = "// tiered/optimized ratios when the figures were last quoted; see benches/common/guard.rs\n";
                if let Err(e) = std::fs::write(recorded_path(), format!("{header}{text}\n")) {
                    eprintln!("cannot record ratios: {e}");
                }
            }
            Err(e) => eprintln!("cannot record ratios: {e}"),
        }
    }
    flagged
}
