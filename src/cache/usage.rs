//! Hit rates across runs: each run appends a line per kind it looked up,
//! `KIND HITS MISSES`, to `usage.log` in the cache directory, in one
//! `write` to a file opened with `O_APPEND`, so lines from runs ending
//! together never interleave. `tierjit cache` sums them. A log grown past
//! `COMPACT_AT` is rewritten as its sums (renamed into place; counts a
//! concurrent run appends in between may be lost, which only blurs a rate).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Kind;

const COMPACT_AT: u64 = 64 * 1024;

pub fn path(root: &Path) -> PathBuf {
    root.join("usage.log")
}

/// Appends this run's counts. Best effort.
pub fn append(root: &Path, counts: &[(Kind, u64, u64)]) {
    if counts.is_empty() {
        return;
    }
    let lines: String = counts
        .iter()
        .map(|(kind, hits, misses)| format!("{} {hits} {misses}\n", kind.dir()))
        .collect();
    let log = path(root);
    let _ = std::fs::create_dir_all(root);
    // Without blocking, and only into a regular file: a FIFO put in its
    // place must not hold up the end of the run.
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut file) = std::fs::File::options()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&log)
    else {
        return;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return;
    }
    let _ = file.write_all(lines.as_bytes());
    if file.metadata().is_ok_and(|m| m.len() > COMPACT_AT) {
        compact(root);
    }
}

fn compact(root: &Path) {
    let sums = summary(root).per_kind;
    let text: String = sums
        .iter()
        .map(|(kind, (hits, misses))| format!("{} {hits} {misses}\n", kind.dir()))
        .collect();
    let temporary = root.join(format!("usage.log.{}.tmp", std::process::id()));
    if std::fs::write(&temporary, text).is_err() || std::fs::rename(&temporary, path(root)).is_err()
    {
        let _ = std::fs::remove_file(&temporary);
    }
}

/// Hits and misses per kind over every run the log remembers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub per_kind: BTreeMap<Kind, (u64, u64)>,
}

/// Sums the log of the cache at `root`; lines it cannot read are skipped.
pub fn summary(root: &Path) -> Summary {
    let mut out = Summary::default();
    let Ok(bytes) = super::read_regular_file(&path(root), 16 << 20) else {
        return out;
    };
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines() {
        let mut words = line.split(' ');
        let (Some(kind), Some(hits), Some(misses), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Some(kind), Ok(hits), Ok(misses)) = (
            Kind::from_dir(kind),
            hits.parse::<u64>(),
            misses.parse::<u64>(),
        ) else {
            continue;
        };
        let sum = out.per_kind.entry(kind).or_default();
        sum.0 = sum.0.saturating_add(hits);
        sum.1 = sum.1.saturating_add(misses);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_add_up_and_a_damaged_line_is_skipped() {
        let root = std::env::temp_dir().join(format!("tierjit-usage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        append(&root, &[(Kind::Frontend, 1, 2)]);
        append(&root, &[(Kind::Frontend, 3, 0)]);
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(path(&root))
            .unwrap();
        log.write_all(b"c 5\nzz 1 1\nc x 1\n").unwrap();
        assert_eq!(summary(&root).per_kind[&Kind::Frontend], (4, 2));
        compact(&root);
        assert_eq!(
            std::fs::read_to_string(path(&root)).unwrap(),
            "c 4 2\n",
            "compacted to its sums"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
