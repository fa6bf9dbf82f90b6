//! perf's map of JIT'd code: `/tmp/perf-PID.map`, one line `START SIZE
//! NAME` (hex, no `0x`) per code range, which `perf report` reads to name
//! samples in memory no file backs.
//!
//! The format has no way to say that a range went away. Freed code keeps
//! its lines (samples taken while it ran still get its name), until new
//! code is loaded over it: then the file is rewritten without them, so no
//! line names memory that holds something else.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// One line of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub start: usize,
    pub size: usize,
    pub name: String,
}

impl MapEntry {
    fn end(&self) -> usize {
        self.start.saturating_add(self.size)
    }

    fn overlaps(&self, other: &MapEntry) -> bool {
        self.start < other.end() && other.start < self.end()
    }

    fn line(&self) -> String {
        // A name is the rest of its line: no line breaks in it.
        let name: String = self
            .name
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        format!("{:x} {:x} {name}\n", self.start, self.size)
    }
}

/// The map of this process: the lines, which are also in its file.
///
/// The file is opened for each change and closed again, never held: a job
/// may close descriptors it did not open and reuse their numbers.
#[derive(Default)]
pub struct PerfMap {
    entries: Vec<MapEntry>,
}

/// Where process `pid`'s map goes (perf looks there).
pub fn path_for(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

impl PerfMap {
    /// Starts this process's map, empty (a file a process with the same
    /// pid left is replaced).
    pub fn create() -> std::io::Result<PerfMap> {
        let path = path_for(std::process::id());
        // A new file, never one someone put there (a symbolic link to
        // another file, in a shared /tmp): what a process with this pid
        // left is removed first, and if it cannot be, the map fails.
        let _ = std::fs::remove_file(&path);
        crate::code::without_file_size_signal(|| new_file(&path).map(drop))?;
        Ok(PerfMap::default())
    }

    /// In a child just forked: the child runs the parent's code, so its
    /// map (perf looks it up by the child's pid) starts as a copy of the
    /// parent's file. Only the file system is touched: another thread of
    /// the parent may have held the map's lock at the fork.
    pub fn copy_for_forked_child() {
        let parent = std::os::unix::process::parent_id();
        let child = path_for(std::process::id());
        let _ = std::fs::remove_file(&child);
        let copy = || -> std::io::Result<()> {
            let mut from = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path_for(parent))?;
            std::io::copy(&mut from, &mut new_file(&child)?).map(drop)
        };
        let _ = crate::code::without_file_size_signal(copy);
    }

    /// Adds `entries` (code just loaded) to the map of the calling process
    /// (a forked child's own). An error leaves the file as it was.
    pub fn add(&mut self, entries: Vec<MapEntry>) -> std::io::Result<()> {
        let before = self.entries.len();
        self.entries
            .retain(|old| !entries.iter().any(|new| new.overlaps(old)));
        let dropped = self.entries.len() != before;
        let added = entries.len();
        self.entries.extend(entries);
        let path = path_for(std::process::id());
        if dropped {
            return self.rewrite(&path);
        }
        let text: String = self.entries[self.entries.len() - added..]
            .iter()
            .map(MapEntry::line)
            .collect();
        // One write of whole lines to a file opened for appending: a
        // reader never sees half a line.
        crate::code::without_file_size_signal(|| {
            OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?
                .write_all(text.as_bytes())
        })
    }

    /// Writes every line again, through a new file renamed over the old
    /// one, so a reader sees the old map or the new one.
    fn rewrite(&self, path: &std::path::Path) -> std::io::Result<()> {
        let temporary = path.with_extension(format!("map.{}.tmp", std::process::id()));
        let text: String = self.entries.iter().map(MapEntry::line).collect();
        let _ = std::fs::remove_file(&temporary);
        crate::code::without_file_size_signal(|| new_file(&temporary)?.write_all(text.as_bytes()))?;
        std::fs::rename(&temporary, path)
    }
}

/// Creates `path`, which must not exist (not even as a symbolic link).
fn new_file(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// The entries of a map file's text (for tests and tools).
pub fn parse(text: &str) -> Option<Vec<MapEntry>> {
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            Some(MapEntry {
                start: usize::from_str_radix(parts.next()?, 16).ok()?,
                size: usize::from_str_radix(parts.next()?, 16).ok()?,
                name: parts.next()?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(start: usize, size: usize, name: &str) -> MapEntry {
        MapEntry {
            start,
            size,
            name: name.to_string(),
        }
    }

    #[test]
    fn code_loaded_over_freed_code_replaces_its_lines() {
        let mut map = PerfMap::create().unwrap();
        map.add(vec![
            entry(0x1000, 0x40, "f [O0]"),
            entry(0x1040, 0x20, "g [O0]"),
        ])
        .unwrap();
        map.add(vec![entry(0x2000, 0x100, "f [O3]")]).unwrap();
        let read = || parse(&std::fs::read_to_string(path_for(std::process::id())).unwrap());
        assert_eq!(read().unwrap().len(), 3);
        // New code where `g` was: its line goes, the others stay.
        map.add(vec![entry(0x1050, 0x10, "h [O3]")]).unwrap();
        let names: Vec<String> = read().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["f [O0]", "f [O3]", "h [O3]"]);
        let _ = std::fs::remove_file(path_for(std::process::id()));
    }

    #[test]
    fn names_stay_on_their_line() {
        assert_eq!(entry(0xab, 0x10, "a\nb").line(), "ab 10 a?b\n");
        assert_eq!(parse("ab 10 f [O3 osr]\n").unwrap()[0].name, "f [O3 osr]");
        assert!(parse("zz 10 f\n").is_none());
    }
}
