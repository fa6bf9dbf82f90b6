//! A cache of the bitcode clang makes for `.c` jobs, so that running the
//! same job again skips the C front end (about 40-60 ms here, most of it
//! clang's own start-up: a tenth of a one-second job).
//!
//! An entry is found by a key: SHA-256 of clang's identity (its resolved
//! path, size and modification time), every argument it is given (flags,
//! target triple, the job's path), the environment variables that change
//! what clang reads (`CPATH` and the like) and the job's source. The entry
//! lists every file clang read (its `-MD` dependency file) with the
//! SHA-256 of its contents, and is used only if all of them still hash the
//! same, so editing an included header recompiles. This is ccache's
//! "direct mode", with its known blind spot: a new header that would
//! shadow a listed one earlier on the include path (or make a
//! `__has_include` true) goes unnoticed.
//!
//! Hashing every header took a millisecond of each warm run (a tenth of
//! its start-up), so each file's status is listed too: the boot, its
//! device, inode, size, and modification and status-change times
//! (`FileStatus`). A file whose status is still the listed one is not read
//! again. That is sound because no change to a file's contents leaves
//! that status as it was: a write or truncation sets the status-change
//! time to the current time (`utimensat` on the modification time sets it
//! too), and replacing the file gives another inode, or the same inode
//! with a new status-change time. The current time differs from the
//! listed one: files are listed only if their status changed at least
//! `FILE_CLOCK_MARGIN` before clang started, more than the file clock's
//! tick, and the clock is the same boot's (a board without a real-time
//! clock may start each boot at the same time). Where that reasoning does
//! not hold the status is listed as `-` and the file is always hashed:
//! network and FUSE filesystems (which cache attributes for seconds and
//! stamp times with another clock), read-only images, FAT, anything
//! unknown (see `code::status_trust`). A status-change time in whole
//! seconds may come from a filesystem that keeps no finer time, where two
//! changes within a second look the same: it stands for any time in that
//! second, and is listed only if that second ended before this boot began
//! (a file written into a disk image by its builder; not on overlayfs,
//! which shows a lower image's times), so that any later change, even
//! after a step back of the clock, stamps another time. A file whose
//! status moved but whose contents still hash the same (touched, checked
//! out again, the cache copied to another board) is a hit, and the entry
//! is stored again with its new status.
//!
//! Not cached: sources, headers or flags that name `__DATE__`, `__TIME__`
//! or `__TIMESTAMP__`; flags that bring in files clang does not list
//! (`@file`, `--config`, profiles to use) or that change what clang writes
//! (`-M...`, `-E`, `-working-directory`); a dependency that is not a
//! regular file (`#embed "/dev/urandom"`); and any file that changed while
//! clang ran (its status-change time is after clang started, less a
//! margin for the kernel's coarse file clock), since its hash might not be
//! what clang read.
//!
//! An entry (the manifest, an empty line, the bitcode) is stored in the
//! persistent cache (`crate::cache`, kind `c`), which checksums it and
//! writes it atomically, evicts by size, and never makes a cache problem
//! the job's: a cache that cannot be read or written only costs the
//! compile.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::cache::entry::hex;
use crate::cache::{Cache, Kind, Miss};
use crate::code::StatusTrust;

/// Part of every key: bumped when the payload's layout or what clang is
/// asked for changes, so that an older tierjit's entries are not found.
const FORMAT: &str = "tierjit-frontend-4";

/// Environment variables that change what clang reads or makes.
const CLANG_ENVIRONMENT: [&str; 8] = [
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "CCC_OVERRIDE_OPTIONS",
    "COMPILER_PATH",
    "SOURCE_DATE_EPOCH",
    "SDKROOT",
];

/// Flags after which the dependency file does not tell the whole story, or
/// clang's output is not the IR tierjit asked for.
const UNCACHEABLE_FLAGS: [&str; 12] = [
    "@",
    "--config",
    // A virtual file system overlay: its YAML maps headers to files, and
    // is not in the dependency list.
    "-ivfsoverlay",
    "-fplugin",
    "-working-directory",
    "-M",
    "-E",
    "-fsyntax-only",
    "-fprofile-use",
    "-fprofile-instr-use",
    "-fprofile-sample-use",
    "-Xpreprocessor",
];

/// Files whose status changed this soon before clang started may have
/// changed after it: the kernel stamps files with a clock that runs up to
/// a tick (a few ms) behind the one `SystemTime` reads.
const FILE_CLOCK_MARGIN: Duration = Duration::from_millis(20);

/// Macros whose value changes between runs: an entry would freeze them.
const VOLATILE_MACROS: [&[u8]; 3] = [b"__DATE__", b"__TIME__", b"__TIMESTAMP__"];

pub struct FrontendCache<'a> {
    cache: &'a Cache,
}

/// One job's place in the cache: its key, and where clang should write
/// the dependency file on a miss.
pub struct Entry {
    key: String,
    pub depfile: PathBuf,
    /// When clang was about to start (set by `prepare`).
    started: SystemTime,
}

impl<'a> FrontendCache<'a> {
    pub fn new(cache: &'a Cache) -> FrontendCache<'a> {
        FrontendCache { cache }
    }

    /// The entry for compiling `source` (the job's bytes) with `clang` and
    /// `args`; `Err` with the reason when the compile must not be cached
    /// (see the module doc) or clang cannot be identified (a missing clang
    /// must still be reported as missing).
    pub fn entry(
        &self,
        clang: &Path,
        args: &[OsString],
        source: &[u8],
    ) -> Result<Entry, &'static str> {
        let uncacheable = args.iter().any(|arg| {
            let arg = arg.as_encoded_bytes();
            UNCACHEABLE_FLAGS
                .iter()
                .any(|flag| arg.starts_with(flag.as_bytes()))
        });
        if uncacheable {
            return Err("a flag makes clang read or write files it does not list");
        }
        if args
            .iter()
            .any(|a| names_volatile_macro(a.as_encoded_bytes()))
            || names_volatile_macro(source)
        {
            return Err("it names __DATE__, __TIME__ or __TIMESTAMP__");
        }
        const UNKNOWN_CLANG: &str = "clang cannot be identified";
        let binary = resolve_on_path(clang).ok_or(UNKNOWN_CLANG)?;
        let binary = std::fs::canonicalize(binary).map_err(|_| UNKNOWN_CLANG)?;
        let meta = std::fs::metadata(&binary).map_err(|_| UNKNOWN_CLANG)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .ok_or(UNKNOWN_CLANG)?;
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(FORMAT.as_bytes());
        field(binary.as_os_str().as_encoded_bytes());
        field(&meta.len().to_le_bytes());
        field(&modified.as_nanos().to_le_bytes());
        for arg in args {
            field(arg.as_encoded_bytes());
        }
        for name in CLANG_ENVIRONMENT {
            let value = std::env::var_os(name);
            field(name.as_bytes());
            field(value.as_ref().map_or(b"(unset)", |v| v.as_encoded_bytes()));
        }
        field(source);
        Ok(Entry {
            key: hex(&hash.finalize()),
            depfile: PathBuf::new(),
            started: SystemTime::now(),
        })
    }

    /// The cached bitcode for `entry`, if the entry is whole and every
    /// file its compile read still has the contents it had then; else why
    /// not. Counted as the cache's hit or miss.
    pub fn lookup(&self, entry: &Entry) -> Result<Vec<u8>, Miss> {
        self.checked_lookup(entry).map(|(bitcode, _)| bitcode)
    }

    /// `lookup`, and how many files it had to read (their status moved).
    fn checked_lookup(&self, entry: &Entry) -> Result<(Vec<u8>, usize), Miss> {
        let looked = SystemTime::now();
        let found = self
            .cache
            .get(Kind::Frontend, &entry.key)
            .and_then(|payload| {
                let (manifest, bitcode) = parse_payload(&payload)
                    .ok_or_else(|| Miss::Stale("entry without a manifest".into()))?;
                let bad = || Miss::Stale("entry with a bad manifest".into());
                let mut read = 0;
                // The manifest with each file's status as it is now.
                let mut now_listed = String::new();
                let mut relistable = true;
                let mut trust = TrustByDevice::default();
                for line in manifest.lines() {
                    let (digest, rest) = line.split_once(' ').ok_or_else(bad)?;
                    let (listed, path) = rest.split_once(' ').ok_or_else(bad)?;
                    let status = FileStatus::of(path, &mut trust)
                        .ok_or_else(|| Miss::Stale(format!("{path} is gone")))?;
                    let listed_now = status.listed();
                    if listed_now.as_deref() != Some(listed) {
                        read += 1;
                        let contents = std::fs::read(path)
                            .map_err(|_| Miss::Stale(format!("{path} is gone")))?;
                        if hex(&Sha256::digest(&contents)) != digest {
                            return Err(Miss::Stale(format!("{path} changed")));
                        }
                        // Listed again only if it read what `status` says.
                        relistable &= FileStatus::of(path, &mut trust) == Some(status)
                            && status.changed_before(looked - FILE_CLOCK_MARGIN);
                    }
                    let listed_now = listed_now.as_deref().unwrap_or("-");
                    now_listed.push_str(&format!("{digest} {listed_now} {path}\n"));
                }
                // A file that is always hashed (listed as `-`) lists the
                // same: no store at every run.
                if read > 0 && relistable && now_listed.trim_end_matches('\n') != manifest {
                    let mut payload = format!("{now_listed}\n").into_bytes();
                    payload.extend_from_slice(bitcode);
                    self.cache.put(Kind::Frontend, &entry.key, &payload);
                }
                Ok((bitcode.to_vec(), read))
            });
        self.cache.count(Kind::Frontend, found.is_ok());
        found
    }

    /// Stores `bitcode` for `entry`, with the files listed in the
    /// dependency file clang wrote. Best effort: any failure, or a file
    /// that must not be cached, leaves the entry absent (or the previous
    /// one in place). Removes the dependency file.
    pub fn store(&self, entry: &Entry, bitcode: &[u8]) {
        let depfile = std::fs::read_to_string(&entry.depfile);
        let _ = std::fs::remove_file(&entry.depfile);
        let Ok(depfile) = depfile else { return };
        let changed_since = entry.started - FILE_CLOCK_MARGIN;
        let mut manifest = String::new();
        let mut trust = TrustByDevice::default();
        for path in dependencies(&depfile) {
            // A path that a line of the manifest cannot hold is not cached.
            if path.contains('\n') {
                return;
            }
            let Some(status) = FileStatus::of(&path, &mut trust) else {
                return;
            };
            if !status.changed_before(changed_since) {
                return;
            }
            let Ok(contents) = std::fs::read(&path) else {
                return;
            };
            // Changed while read: the hash may not be of what `status` is.
            if FileStatus::of(&path, &mut trust) != Some(status) || names_volatile_macro(&contents)
            {
                return;
            }
            let digest = hex(&Sha256::digest(&contents));
            let status = status.listed().unwrap_or_else(|| "-".into());
            manifest.push_str(&format!("{digest} {status} {path}\n"));
        }
        if manifest.is_empty() {
            return;
        }
        let mut payload = format!("{manifest}\n").into_bytes();
        payload.extend_from_slice(bitcode);
        self.cache.put(Kind::Frontend, &entry.key, &payload);
    }

    /// Names an empty dependency file for clang to fill, in the cache's
    /// directory, and notes the time clang starts. False if it cannot be
    /// made: then clang is run without `-MD` and nothing is stored.
    pub fn prepare(&self, entry: &mut Entry) -> bool {
        entry.started = SystemTime::now();
        let Some(depfile) = self.cache.scratch(Kind::Frontend, &entry.key) else {
            return false;
        };
        entry.depfile = depfile;
        std::fs::File::create(&entry.depfile).is_ok()
    }
}

/// What tells whether a regular file may have changed (see the module
/// doc): equal statuses mean equal contents, where `listed` says so.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileStatus {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    /// How far its filesystem's times can stand for the contents.
    trust: StatusTrust,
}

/// Each filesystem's `StatusTrust`, by device, as one lookup or store has
/// asked it: its files (a job's headers are mostly on one) cost one
/// `statfs` between them. Not kept longer, so a filesystem mounted later
/// is asked again. A device number names one filesystem, with one
/// exception: overlayfs without a shared inode space reports a copied-up
/// file by its upper filesystem's device, whose answer (a local,
/// fine-grained one) then stands for it, as it should, since that file's
/// times are the upper filesystem's.
#[derive(Default)]
struct TrustByDevice(Vec<(u64, StatusTrust)>);

impl TrustByDevice {
    fn of(&mut self, device: u64, path: &str) -> StatusTrust {
        if let Some(&(_, trust)) = self.0.iter().find(|(d, _)| *d == device) {
            return trust;
        }
        let trust = crate::code::status_trust(Path::new(path));
        self.0.push((device, trust));
        trust
    }
}

impl FileStatus {
    /// The status of the regular file at `path`; `None` for anything else
    /// (never read a device or a pipe: it may not end).
    fn of(path: &str, trust: &mut TrustByDevice) -> Option<FileStatus> {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        Some(FileStatus {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
            trust: trust.of(meta.dev(), path),
        })
    }

    /// As a manifest lists it (one word, no spaces), if it may stand for
    /// the file's contents (see the module doc); `None` if the file must
    /// be hashed at every lookup.
    fn listed(&self) -> Option<String> {
        let FileStatus {
            device,
            inode,
            size,
            modified: (ms, mn),
            changed: (cs, cn),
            trust,
        } = *self;
        // A whole-second status-change time is listed only if that second
        // ended before this boot began: a file written into a disk image
        // by its builder. Any later change is stamped with a time of this
        // boot, even after the clock is stepped back (by less than the
        // time since boot). Whether it is old enough is `changed_before`'s
        // question, asked before listing. overlayfs shows an image's times
        // for a file not copied up, so it lists none. (The modification
        // time is only compared: dpkg and tar set it from the archive.)
        let whole_seconds = cn == 0;
        let listable = match trust {
            StatusTrust::None => false,
            StatusTrust::Fine => !whole_seconds || ended_before_boot(cs),
            StatusTrust::FineExceptWholeSeconds => !whole_seconds,
        };
        if !listable {
            return None;
        }
        let boot = boot_id()?;
        Some(format!(
            "{boot}:{device}:{inode}:{size}:{ms}.{mn}:{cs}.{cn}"
        ))
    }

    /// Whether its status last changed before `time`. A status-change
    /// time in whole seconds may be a filesystem's whole-second stamp of
    /// any time within that second (only the kernel sets this time, so it
    /// shows the filesystem's granularity): it counts as the second's end.
    fn changed_before(&self, time: SystemTime) -> bool {
        let (seconds, nanos) = self.changed;
        let stamp = UNIX_EPOCH + Duration::new(seconds.max(0) as u64, nanos.max(0) as u32);
        let latest = if nanos == 0 {
            stamp + Duration::from_secs(1)
        } else {
            stamp
        };
        latest < time
    }
}

/// Whether the whole second starting at `seconds` (since the epoch)
/// ended before this boot began; false if the boot time is unknown.
fn ended_before_boot(seconds: i64) -> bool {
    static BOOTED_AT: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
    let booted_at = BOOTED_AT.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    });
    // `btime` is whole seconds, rounded either way: a second of margin.
    booted_at.is_some_and(|booted| seconds.saturating_add(2) <= booted)
}

/// This boot's identity (the kernel's random boot id), read once; `None`
/// if the kernel does not tell it.
fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id: String = text.chars().filter(char::is_ascii_hexdigit).collect();
        (!id.is_empty()).then_some(id)
    })
    .as_deref()
}

/// `clang` itself if it names a path, else the first match on `PATH`.
fn resolve_on_path(clang: &Path) -> Option<PathBuf> {
    if clang.components().count() > 1 {
        return clang.is_file().then(|| clang.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(clang))
        .find(|candidate| candidate.is_file())
}

/// Whether `bytes` name a macro whose value changes between runs.
fn names_volatile_macro(bytes: &[u8]) -> bool {
    VOLATILE_MACROS
        .iter()
        .any(|m| bytes.windows(m.len()).any(|w| w == *m))
}

/// The manifest and bitcode of a payload: manifest lines, an empty line,
/// then the bitcode. `None` for anything else.
fn parse_payload(payload: &[u8]) -> Option<(&str, &[u8])> {
    let end = payload.windows(2).position(|w| w == b"\n\n")?;
    let manifest = std::str::from_utf8(&payload[..end]).ok()?;
    (!manifest.is_empty()).then(|| (manifest, &payload[end + 2..]))
}

/// The prerequisites of a Make-style dependency file as clang writes it:
/// `target: dep dep \` continued on following lines, with a space in a
/// path written `\ `, `#` as `\#` and `$` as `$$`.
fn dependencies(depfile: &str) -> Vec<String> {
    let joined = depfile.replace("\\\r\n", " ").replace("\\\n", " ");
    // The target ends at the first `: ` (a Windows drive's `C:\` has no
    // space after its colon).
    let Some(at) = joined.find(": ") else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = joined[at + 2..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(' ') | Some('#')) => {
                current.push(chars.next().expect("peeked"));
            }
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                current.push('$');
            }
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    paths.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        paths.push(current);
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `path`'s modification time (which sets its status-change
    /// time to now).
    fn set_modified(path: &Path, modified: SystemTime) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(modified).unwrap();
    }

    #[test]
    fn files_whose_status_is_unchanged_are_not_read_again() {
        let dir = std::env::temp_dir().join(format!("tierjit-fe-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.h"), dir.join("b.h"));
        std::fs::write(&a, "#define A 1\n").unwrap();
        std::fs::write(&b, "#define B 2\n").unwrap();
        let cache = Cache::new(dir.join("cache"), 1024);
        let frontend = FrontendCache::new(&cache);
        // Any file identifies "clang" here; nothing runs it.
        let mut entry = frontend
            .entry(Path::new("/bin/sh"), &[], b"int main(void);")
            .unwrap();
        // Files changed this close to clang's start are not listed.
        std::thread::sleep(FILE_CLOCK_MARGIN * 2);
        assert!(frontend.prepare(&mut entry));
        let depfile = format!("-: {} {}\n", a.display(), b.display());
        std::fs::write(&entry.depfile, depfile).unwrap();
        frontend.store(&entry, b"BC");
        let read = |entry: &Entry| frontend.checked_lookup(entry);
        // Where the temporary directory's filesystem cannot be trusted
        // (see the module doc), every file is read at every lookup.
        if crate::code::status_trust(&dir) == StatusTrust::None {
            assert_eq!(read(&entry).unwrap(), (b"BC".to_vec(), 2), "both hashed");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        assert_eq!(
            read(&entry).unwrap(),
            (b"BC".to_vec(), 0),
            "both trusted by status"
        );

        // The same bytes written again, the modification time put back:
        // the status-change time moved, so a.h is read, and matches.
        let modified = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::write(&a, "#define A 1\n").unwrap();
        set_modified(&a, modified);
        assert_eq!(read(&entry).unwrap().1, 1, "a.h is read");
        // Listed again with its new status once that is older than the
        // file clock's margin; then trusted again.
        std::thread::sleep(FILE_CLOCK_MARGIN * 2);
        assert_eq!(read(&entry).unwrap().1, 1, "a.h is read, and listed again");
        assert_eq!(read(&entry).unwrap().1, 0, "a.h is trusted again");

        // Other bytes of the same size, the modification time put back: a
        // miss, never the old bitcode.
        let modified = std::fs::metadata(&b).unwrap().modified().unwrap();
        std::fs::write(&b, "#define B 3\n").unwrap();
        set_modified(&b, modified);
        match read(&entry) {
            Err(Miss::Stale(why)) => assert!(why.contains("b.h changed"), "{why}"),
            other => panic!("{other:?}"),
        }

        // A file on a filesystem whose times are not trusted (procfs here)
        // is listed as `-`, read at every lookup, and the entry is not
        // stored again for it.
        let untrusted = "/proc/version";
        let digest = hex(&Sha256::digest(std::fs::read(untrusted).unwrap()));
        let payload = format!("{digest} - {untrusted}\n\nBC");
        assert!(cache.put(Kind::Frontend, &entry.key, payload.as_bytes()));
        let stored = dir.join("cache/c").join(&entry.key);
        let inode = || std::fs::metadata(&stored).unwrap().ino();
        // (A store renames a new file over the entry: another inode, while
        // the old one still exists.)
        let before = inode();
        assert_eq!(read(&entry).unwrap().1, 1);
        assert_eq!(inode(), before, "not stored again");
        assert_eq!(read(&entry).unwrap().1, 1, "read again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_fine_grained_local_statuses_are_listed() {
        let status = FileStatus {
            device: 1,
            inode: 2,
            size: 3,
            modified: (4, 5),
            changed: (6, 7),
            trust: StatusTrust::Fine,
        };
        let listed = status.listed().expect("a boot id on Linux");
        assert!(
            listed.ends_with(":1:2:3:4.5:6.7") && !listed.contains(' '),
            "{listed}"
        );
        let remote = FileStatus {
            trust: StatusTrust::None,
            ..status
        };
        let whole_seconds = FileStatus {
            changed: (6, 0),
            ..status
        };
        // dpkg and tar set whole-second modification times: the
        // status-change time still has the kernel's nanoseconds.
        let packaged = FileStatus {
            modified: (4, 0),
            ..status
        };
        assert_eq!(remote.listed(), None);
        // Written long before this boot (an image's file): listed.
        assert!(whole_seconds.listed().is_some_and(|l| l.ends_with(":6.0")));
        // Whole seconds of this boot (a filesystem without finer times,
        // whose clock may step back): hashed at every lookup.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let this_boot = FileStatus {
            changed: (now.as_secs() as i64, 0),
            ..status
        };
        assert_eq!(this_boot.listed(), None);
        // overlayfs may show a lower image's whole seconds: never listed.
        let overlay = FileStatus {
            trust: StatusTrust::FineExceptWholeSeconds,
            ..whole_seconds
        };
        assert_eq!(overlay.listed(), None);
        assert!(FileStatus {
            trust: StatusTrust::FineExceptWholeSeconds,
            ..status
        }
        .listed()
        .is_some());
        assert!(packaged.listed().is_some_and(|l| l.ends_with(":4.0:6.7")));
    }

    #[test]
    fn a_whole_second_status_change_counts_as_the_end_of_its_second() {
        let at = |seconds: u64, millis: u64| {
            UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis)
        };
        let status = |changed| FileStatus {
            device: 1,
            inode: 2,
            size: 3,
            modified: (4, 0),
            changed,
            trust: StatusTrust::Fine,
        };
        // Stamped 6 by a whole-second filesystem: the change may have
        // come at 6.999, so another change at 6.5 could leave it as it is.
        let whole = status((6, 0));
        assert!(!whole.changed_before(at(6, 500)));
        assert!(!whole.changed_before(at(7, 0)));
        assert!(whole.changed_before(at(7, 1)));
        let fine = status((6, 7));
        assert!(fine.changed_before(at(6, 1)));
        assert!(!fine.changed_before(at(6, 0)));
    }

    #[test]
    fn a_payload_needs_its_manifest() {
        let payload = b"ab /x.h\n\nBC\xc0\xde\n\nbody";
        assert_eq!(
            parse_payload(payload),
            Some(("ab /x.h", &b"BC\xc0\xde\n\nbody"[..]))
        );
        assert_eq!(parse_payload(b"\n\nBC"), None, "empty manifest");
        assert_eq!(parse_payload(b"ab /x.h\nBC"), None);
    }

    #[test]
    fn dependency_files_are_read_as_clang_writes_them() {
        let depfile = "-: /tmp/my\\ job.c /usr/include/stdio.h \\\n  /opt/a\\#b.h /opt/c$$d.h\n";
        assert_eq!(
            dependencies(depfile),
            [
                "/tmp/my job.c",
                "/usr/include/stdio.h",
                "/opt/a#b.h",
                "/opt/c$d.h"
            ]
        );
        assert!(dependencies("no colon here").is_empty());
    }
}
