//! The persistent cache: what one run learned, kept for the next.
//!
//! One directory (`cache.dir`, by default `$TIERJIT_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/tierjit` or `~/.cache/tierjit`) holds a subdirectory per kind of entry, each entry
//! one file named by its key (a SHA-256 of everything that decides its
//! contents, chosen by the kind's owner; see `ir::frontend_cache`).
//!
//! Never wrong, never stuck:
//! - Every entry carries its length and checksum (`entry`). A damaged,
//!   truncated or foreign file is a miss: it is removed with a one-line
//!   warning, and the run stores a good one in its place.
//! - Entries are written to a temporary name and renamed into place, so a
//!   concurrent run sees the whole old entry, the whole new one, or none.
//!   Runs sharing a directory may store the same key at once; the last
//!   rename wins, and either entry is a valid one for the key.
//! - A directory that cannot be written (read-only, full, not ours) turns
//!   storing off for the run with one warning; reading goes on, and the
//!   job runs as it would without a cache.
//! - `cache.max_mb` bounds the directory: after a run's entries grew it
//!   (and at least hourly otherwise), the least recently used go until it
//!   is back under 90% of the bound. A hit
//!   touches its entry's modification time, which is what "used" means
//!   here (atime is unreliable under `noatime`/`relatime`).
//!
//! Each run appends its hits and misses per kind to `usage.log`, one
//! line per kind in one `write` on an `O_APPEND` file (whole lines even
//! when runs end together), for `tierjit cache` to sum.

pub mod entry;
pub mod key;
mod usage;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

pub use entry::Damage;
pub use usage::{summary, Summary};

/// How often a run that did not grow the directory still looks at its
/// bound, for growth no run looked at: a run killed before its end, an
/// entry a compiler thread stored after it, a fleet's sync, a lowered
/// `cache.max_mb`.
const EVICTION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The file (in the cache's root) whose modification time is the last look
/// at the bound.
const EVICTION_MARK: &str = "evicted";

/// Overrides the cache directory (empty: no cache), under `cache.dir`.
pub const CACHE_DIR_ENV: &str = "TIERJIT_CACHE_DIR";

/// What an entry holds; each kind has its own subdirectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Bitcode clang made for a `.c` job (`ir::frontend_cache`).
    Frontend,
    /// A job's module prepared for tiering (`ir::prepared_cache`).
    Prepared,
    /// An optimized object: a function's version, a loop's OSR
    /// continuation, or both (`tiering::object_cache`).
    Object,
    /// A job's profile, merged over its runs (`profile::store`).
    Profile,
    /// A module's baseline object (`baseline::cached`).
    Baseline,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Frontend,
        Kind::Prepared,
        Kind::Baseline,
        Kind::Object,
        Kind::Profile,
    ];

    /// The subdirectory, also the kind's name in entry headers and the
    /// usage log.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Frontend => "c",
            Kind::Prepared => "m",
            Kind::Object => "o",
            Kind::Profile => "p",
            Kind::Baseline => "b",
        }
    }

    /// For people: `--events`, `--stats` and `tierjit cache`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Frontend => "front end",
            Kind::Prepared => "prepared module",
            Kind::Object => "optimized",
            Kind::Profile => "profile",
            Kind::Baseline => "baseline",
        }
    }

    fn from_dir(dir: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.dir() == dir)
    }
}

/// Why a lookup found nothing usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    /// No entry under the key.
    Absent,
    /// An entry was there but could not be used (and was removed).
    Damaged(Damage),
    /// The entry could not be read (permissions, I/O error).
    Unreadable(String),
    /// The kind's owner refused the entry (a header changed, say).
    Stale(String),
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Absent => f.write_str("no entry"),
            Miss::Damaged(d) => write!(f, "damaged entry ({d}), removed"),
            Miss::Unreadable(e) => write!(f, "entry unreadable: {e}"),
            Miss::Stale(why) => f.write_str(why),
        }
    }
}

/// One run's view of the cache directory.
pub struct Cache {
    root: PathBuf,
    max_bytes: u64,
    /// Set when a store failed for a reason that will not go away in this
    /// run (read-only, full, permission); warned about once.
    storing_off: AtomicBool,
    /// Bytes this run's stores added to the directory (beyond the entries
    /// they replaced), to decide whether to look at the bound.
    grown_bytes: AtomicU64,
    /// Hits and misses per kind, this run.
    counts: Mutex<BTreeMap<Kind, (u64, u64)>>,
    /// Set by the first `finish`.
    finished: AtomicBool,
}

impl Cache {
    /// The cache at `root`, bounded to `max_mb` megabytes. Nothing is
    /// created until an entry is stored.
    pub fn new(root: PathBuf, max_mb: u64) -> Cache {
        Cache {
            root,
            max_bytes: max_mb.saturating_mul(1 << 20),
            storing_off: AtomicBool::new(false),
            grown_bytes: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            finished: AtomicBool::new(false),
        }
    }

    /// The cache the config asks for, or `None` when it is off
    /// (`cache.enabled = false`, `TIERJIT_CACHE_DIR=` empty, or no
    /// directory can be named).
    pub fn from_config(config: &crate::config::Cache) -> Option<Cache> {
        if !config.enabled {
            return None;
        }
        Some(Cache::new(location(&config.dir)?, config.max_mb))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: Kind, key: &str) -> PathBuf {
        self.root.join(kind.dir()).join(key)
    }

    /// A path in `kind`'s directory for a file of this run's own (clang's
    /// dependency file, say), after making the directory; `None` if it
    /// cannot be made.
    pub fn scratch(&self, kind: Kind, name: &str) -> Option<PathBuf> {
        if self.storing_off.load(Ordering::Relaxed) {
            return None;
        }
        let dir = self.root.join(kind.dir());
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.store_failed(&e);
            return None;
        }
        Some(dir.join(format!("{name}.{}.tmp", unique_suffix())))
    }

    /// After a failed write: a reason that will not go away in this run
    /// turns storing off, with one warning.
    fn store_failed(&self, e: &std::io::Error) {
        if lasting(e) && !self.storing_off.swap(true, Ordering::Relaxed) {
            say!(
                "tierjit: warning: cannot write the cache at {} ({e}); nothing is stored in it in this run",
                self.root.display()
            );
        }
    }

    /// The payload stored under `key`. A damaged entry is removed, with a
    /// warning; a hit marks the entry used. Hits and misses are counted
    /// by `count`, which the kind's owner calls once it has judged the
    /// payload.
    pub fn get(&self, kind: Kind, key: &str) -> Result<Vec<u8>, Miss> {
        let path = self.path(kind, key);
        let file = match read_regular_file(&path, MAX_ENTRY_BYTES) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
            Err(e) => return Err(Miss::Unreadable(e.to_string())),
        };
        match entry::decode(kind.dir(), key, &file) {
            Ok(payload) => {
                touch(&path);
                Ok(payload.to_vec())
            }
            Err(damage) => {
                say!(
                    "tierjit: warning: cache entry {} is damaged ({damage}); ignored, it will be stored again",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                Err(Miss::Damaged(damage))
            }
        }
    }

    /// Whether an entry is stored under `key`: a look at the directory,
    /// without reading or checking the entry (`get` does that).
    pub fn contains(&self, kind: Kind, key: &str) -> bool {
        self.path(kind, key).is_file()
    }

    /// Removes an entry that read back whole but could not be used (an
    /// object that did not load here), so that it is built again.
    pub fn remove(&self, kind: Kind, key: &str) {
        let _ = std::fs::remove_file(self.path(kind, key));
    }

    /// Counts a hit or a miss of `kind` for `tierjit cache`'s hit rates.
    pub fn count(&self, kind: Kind, hit: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = counts.entry(kind).or_default();
        if hit {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// This run's hits and misses per kind.
    pub fn counts(&self) -> Vec<(Kind, u64, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(&k, &(h, m))| (k, h, m)).collect()
    }

    /// Stores `payload` under `key`, atomically. Best effort: false if it
    /// was not stored (and, for a lasting reason, storing is off for the
    /// rest of the run, with one warning).
    pub fn put(&self, kind: Kind, key: &str, payload: &[u8]) -> bool {
        if self.storing_off.load(Ordering::Relaxed) {
            return false;
        }
        let dir = self.root.join(kind.dir());
        let file = entry::encode(kind.dir(), key, payload);
        let temporary = dir.join(format!("{key}.{}.tmp", unique_suffix()));
        let destination = dir.join(key);
        // What the entry replaces, if anything: only growth can take the
        // directory past its bound.
        let replaced = std::fs::symlink_metadata(&destination).map_or(0, |m| m.len());
        // The job may have lowered RLIMIT_FSIZE: past it the write fails
        // (EFBIG, which turns storing off) instead of killing the job.
        let written = crate::code::without_file_size_signal(|| {
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::File::create(&temporary))
                .and_then(|mut f| f.write_all(&file))
                .and_then(|()| std::fs::rename(&temporary, &destination))
        });
        match written {
            Ok(()) => {
                // Relaxed: a running total, read at the end of the run (a
                // store a compiler thread makes after that is left to the
                // hourly look, see `EVICTION_CHECK_INTERVAL`).
                self.grown_bytes.fetch_add(
                    (file.len() as u64).saturating_sub(replaced),
                    Ordering::Relaxed,
                );
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                self.store_failed(&e);
                false
            }
        }
    }

    /// At the end of a run (or when dropped, whichever is first): the
    /// usage line, and eviction if this run's entries grew the directory
    /// or the last look is an `EVICTION_CHECK_INTERVAL` old (the scan
    /// stats every entry: 10 ms at the end of every run in a directory of
    /// 1,900 entries, when it ran after any store). Best effort, silent.
    pub fn finish(&self) {
        // Relaxed: only which caller goes first matters.
        if self.finished.swap(true, Ordering::Relaxed) || self.storing_off.load(Ordering::Relaxed) {
            return;
        }
        usage::append(&self.root, &self.counts());
        if self.grown_bytes.load(Ordering::Relaxed) > 0 || self.eviction_due() {
            self.evict(self.max_bytes);
            self.mark_eviction_look();
        }
    }

    /// Stamps the mark with now. Without blocking and never through a
    /// link, and only a regular file: a FIFO put in its place must not
    /// hold up the end of the run, nor a symbolic link truncate or create
    /// a file elsewhere (in a directory other users may write).
    fn mark_eviction_look(&self) {
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(mark) = std::fs::File::options()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(self.root.join(EVICTION_MARK))
        else {
            return;
        };
        if mark.metadata().is_ok_and(|m| m.is_file()) {
            let _ = mark.set_modified(SystemTime::now());
        }
    }

    /// Whether the bound was last looked at an `EVICTION_CHECK_INTERVAL`
    /// ago or more (or never, or by a clock now behind).
    fn eviction_due(&self) -> bool {
        std::fs::metadata(self.root.join(EVICTION_MARK))
            .and_then(|m| m.modified())
            .map_or(true, |looked| {
                SystemTime::now()
                    .duration_since(looked)
                    .map_or(true, |age| age >= EVICTION_CHECK_INTERVAL)
            })
    }

    /// Removes least recently used entries until the entries take at most
    /// 90% of `bound` bytes (if they took more than `bound`). Returns the
    /// entries removed.
    pub fn evict(&self, bound: u64) -> usize {
        self.remove_abandoned_writes();
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        if total <= bound {
            return 0;
        }
        let target = bound / 10 * 9;
        entries.sort_by_key(|e| e.used);
        let mut removed = 0;
        for e in entries {
            if total <= target {
                break;
            }
            if std::fs::remove_file(&e.path).is_ok() {
                total = total.saturating_sub(e.bytes);
                removed += 1;
            }
        }
        removed
    }

    /// Removes temporary files over an hour old: a run that ended (its
    /// process exits without waiting for compiler threads) while writing
    /// an entry leaves one behind.
    fn remove_abandoned_writes(&self) {
        let Some(hour_ago) = SystemTime::now().checked_sub(std::time::Duration::from_secs(3600))
        else {
            return;
        };
        for kind in Kind::ALL {
            let Ok(dir) = std::fs::read_dir(self.root.join(kind.dir())) else {
                continue;
            };
            for file in dir.flatten() {
                let path = file.path();
                // By name first: a stat of every entry would double the scan.
                if !is_cache_file(&file.file_name().to_string_lossy())
                    || !path.extension().is_some_and(|e| e == "tmp")
                {
                    continue;
                }
                let old = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < hour_ago);
                if old {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    /// Every entry, with its size and last use. Files a run is still
    /// writing (`.tmp`) are not entries.
    pub fn entries(&self) -> Vec<EntryFile> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let Ok(dir) = std::fs::read_dir(self.root.join(kind.dir())) else {
                continue;
            };
            for file in dir.flatten() {
                let path = file.path();
                let name = file.file_name();
                let name = name.to_string_lossy();
                if !is_cache_file(&name) || name.ends_with(".tmp") {
                    continue;
                }
                let Ok(meta) = file.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                out.push(EntryFile {
                    kind,
                    bytes: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    path,
                });
            }
        }
        out
    }

    /// Removes every entry, the usage log and leftover temporary files;
    /// returns the entries removed. Other files in the directory are left
    /// alone: `cache.dir` may have been pointed at a directory that holds
    /// something else too.
    pub fn clear(&self) -> std::io::Result<usize> {
        let mut removed = 0;
        for kind in Kind::ALL {
            let dir = self.root.join(kind.dir());
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let name = name.to_string_lossy();
                if !is_cache_file(&name) || file.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                match std::fs::remove_file(file.path()) {
                    Ok(()) => removed += usize::from(!name.ends_with(".tmp")),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            // Only if nothing else is in it.
            let _ = std::fs::remove_dir(&dir);
        }
        match std::fs::remove_file(usage::path(&self.root)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        removed += crate::libraries::fortran_cache::clear(&self.root)?;
        Ok(removed)
    }
}

impl Drop for Cache {
    /// An engine's module ends here; `tierjit run` leaves with `_exit` and
    /// calls `finish` itself.
    fn drop(&mut self) {
        self.finish();
    }
}

/// What `tierjit cache` prints: the directory, entries and bytes per
/// kind, and hit rates over the runs the usage log remembers.
pub fn describe(cache: &Cache) -> String {
    let entries = cache.entries();
    let usage = summary(cache.root());
    let mut out = format!(
        "cache: {} (limit {} MB)\n",
        cache.root().display(),
        cache.max_bytes >> 20
    );
    let size = |bytes: u64| match bytes {
        b if b < 1 << 20 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
    };
    for kind in Kind::ALL {
        let (count, bytes) = entries
            .iter()
            .filter(|e| e.kind == kind)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.bytes));
        let (hits, misses) = usage.per_kind.get(&kind).copied().unwrap_or_default();
        let lookups = u128::from(hits) + u128::from(misses);
        let rate = match (u128::from(hits) * 100).checked_div(lookups) {
            Some(rate) => format!("{rate}% hit"),
            None => "no lookups recorded".into(),
        };
        out += &format!(
            "  {:<15} {count:>6} entries {:>10}   {hits} hits, {misses} misses ({rate})\n",
            kind.label(),
            size(bytes)
        );
    }
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    out += &format!(
        "  {:<15} {:>6} entries {:>10}\n",
        "total",
        entries.len(),
        size(total)
    );
    let (runtimes, runtime_bytes) = crate::libraries::fortran_cache::cached_size(cache.root());
    if runtimes > 0 {
        out += &format!(
            "  {:<15} {runtimes:>6} built   {:>10}   (flang's runtime as a shared object; not in the limit)\n",
            "fortran runtime",
            size(runtime_bytes)
        );
    }
    out
}

/// One entry file, as `Cache::entries` found it.
#[derive(Clone, Debug)]
pub struct EntryFile {
    pub kind: Kind,
    pub path: PathBuf,
    pub bytes: u64,
    pub used: SystemTime,
}

/// The cache directory: `dir` if set, else `$TIERJIT_CACHE_DIR` (empty:
/// no cache), else `$XDG_CACHE_HOME/tierjit`, else `~/.cache/tierjit`.
/// A relative path is made absolute here, once: the job may change the
/// working directory while runs store entries.
pub fn location(dir: &str) -> Option<PathBuf> {
    let chosen = if !dir.is_empty() {
        PathBuf::from(dir)
    } else {
        match std::env::var_os(CACHE_DIR_ENV) {
            Some(dir) if dir.is_empty() => return None,
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
                Some(xdg) => PathBuf::from(xdg).join("tierjit"),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/tierjit"),
            },
        }
    };
    Some(std::path::absolute(&chosen).unwrap_or(chosen))
}

/// Entries larger than this are not read (a file put there by mistake,
/// or a link to a device, must not fill memory): far above any object or
/// bitcode tierjit writes.
const MAX_ENTRY_BYTES: u64 = 512 << 20;

/// The contents of `path` if it is a regular file of at most `limit`
/// bytes. Opened without blocking and checked on the open file, so that a
/// FIFO or a device put in the cache can neither hang nor flood a run.
pub(crate) fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(std::io::Error::other(format!(
            "larger than {} MB",
            limit >> 20
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether `name` is one of the cache's own files: an entry (a key, 64
/// hexadecimal digits) or a temporary file a run writes before renaming
/// (`KEY.SUFFIX.tmp`). Eviction and `clear` touch nothing else, so a file
/// someone put in the directory stays.
fn is_cache_file(name: &str) -> bool {
    let key = name.split('.').next().unwrap_or("");
    let is_key = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
    is_key && (name.len() == 64 || name.ends_with(".tmp"))
}

/// Marks an entry used now. A cache on read-only storage (a fleet's
/// shared copy) cannot be marked, and need not be: it is not evicted by us.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Whether a failed store will fail again for the rest of the run: no
/// permission, a read-only or full file system, a quota, or a file where a
/// directory should be.
fn lasting(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
        || e.raw_os_error().is_some_and(|code| {
            [
                libc::EACCES,
                libc::EPERM,
                libc::EROFS,
                libc::ENOSPC,
                libc::EDQUOT,
                libc::ENOTDIR,
                libc::EFBIG,
            ]
            .contains(&code)
        })
}

/// A name part no other writer uses at the same time: this process, a
/// number random per process (processes on other hosts sharing the
/// directory may have the same id) and a per-process sequence number.
fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static RANDOM: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // std's hasher keys are random per process.
    let random = RANDOM.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    // Relaxed: the number only has to be unique, nothing is ordered by it.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{random:016x}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tierjit-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_entry_stored_is_found_and_a_damaged_one_is_removed() {
        let dir = scratch_dir("roundtrip");
        let cache = Cache::new(dir.clone(), 16);
        let k = "ab".repeat(32);
        assert_eq!(cache.get(Kind::Frontend, &k), Err(Miss::Absent));
        assert!(cache.put(Kind::Frontend, &k, b"bitcode"));
        assert_eq!(
            cache.get(Kind::Frontend, &k).as_deref(),
            Ok(&b"bitcode"[..])
        );
        // The same entry under another key's name is not that key's.
        let other = "cd".repeat(32);
        std::fs::copy(dir.join("c").join(&k), dir.join("c").join(&other)).unwrap();
        assert_eq!(
            cache.get(Kind::Frontend, &other),
            Err(Miss::Damaged(Damage::Foreign))
        );
        // Neither a FIFO nor a device is read (nor waited on).
        assert!(mkfifo(&dir.join("c").join("ef".repeat(32))));
        assert!(matches!(
            cache.get(Kind::Frontend, &"ef".repeat(32)),
            Err(Miss::Unreadable(_))
        ));
        let path = dir.join("c").join(&k);
        let mut file = std::fs::read(&path).unwrap();
        file.truncate(file.len() - 2);
        std::fs::write(&path, &file).unwrap();
        assert_eq!(
            cache.get(Kind::Frontend, &k),
            Err(Miss::Damaged(Damage::Truncated))
        );
        assert!(!path.exists(), "removed, to be stored again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn mkfifo(path: &Path) -> bool {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        made.is_ok_and(|s| s.success())
    }

    #[test]
    fn eviction_removes_the_least_recently_used_first() {
        let dir = scratch_dir("evict");
        let cache = Cache::new(dir.clone(), 16);
        let payload = vec![7u8; 1000];
        let key = |name: &str| format!("{name:0>64}");
        for name in ["01d", "3bd", "be3"] {
            assert!(cache.put(Kind::Frontend, &key(name), &payload));
        }
        // Not the cache's: never counted, evicted or cleared.
        std::fs::write(dir.join("c/notes.txt"), "mine").unwrap();
        let at = |secs| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        for (name, secs) in [("01d", 1_000), ("3bd", 2_000), ("be3", 3_000)] {
            let f = std::fs::File::options()
                .append(true)
                .open(dir.join("c").join(key(name)))
                .unwrap();
            f.set_modified(at(secs)).unwrap();
        }
        // A lookup makes "01d" (the oldest) the most recently used.
        assert!(cache.get(Kind::Frontend, &key("01d")).is_ok());
        let sizes: u64 = cache.entries().iter().map(|e| e.bytes).sum();
        assert_eq!(cache.evict(sizes), 0, "within the bound: nothing goes");
        assert_eq!(cache.evict(sizes - 1), 1);
        let left: Vec<_> = cache
            .entries()
            .iter()
            .map(|e| e.path.file_name().unwrap().to_owned())
            .collect();
        assert!(!left.contains(&key("3bd").into()), "{left:?}");
        assert_eq!(left.len(), 2);
        assert_eq!(cache.clear().unwrap(), 2);
        assert!(cache.entries().is_empty());
        assert!(
            dir.join("c/notes.txt").exists(),
            "not the cache's to remove"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_a_run_that_grew_the_directory_evicts_at_its_end() {
        let dir = scratch_dir("grown");
        let key = |name: &str| format!("{name:0>64}");
        let payload = vec![1u8; 400 << 10];
        // Three entries of 400 KB, stored under a bound they fit.
        let roomy = Cache::new(dir.clone(), 16);
        for name in ["a1", "a2", "a3"] {
            assert!(roomy.put(Kind::Object, &key(name), &payload));
        }
        roomy.finish();
        assert_eq!(roomy.entries().len(), 3);
        // Under a 1 MB bound they are over it; a run that only replaces
        // one (as a warm run rewrites a profile) leaves them, once the
        // bound was looked at within the hour.
        std::fs::write(dir.join(EVICTION_MARK), b"").unwrap();
        let replacing = Cache::new(dir.clone(), 1);
        assert!(replacing.put(Kind::Object, &key("a2"), &payload));
        replacing.finish();
        assert_eq!(replacing.entries().len(), 3, "a replacement does not scan");
        // A larger replacement grows it.
        let larger = Cache::new(dir.clone(), 1);
        assert!(larger.put(
            Kind::Object,
            &key("a2"),
            &[payload.as_slice(), &[2]].concat()
        ));
        larger.finish();
        assert_eq!(larger.entries().len(), 2, "grown by a byte: evicted");
        // So does a look an hour after the last, without any store.
        let another = Cache::new(dir.clone(), 16);
        assert!(another.put(Kind::Object, &key("a5"), &payload));
        another.finish();
        assert_eq!(another.entries().len(), 3);
        let mark = std::fs::File::options()
            .append(true)
            .open(dir.join(EVICTION_MARK))
            .unwrap();
        mark.set_modified(SystemTime::now() - EVICTION_CHECK_INTERVAL)
            .unwrap();
        let idle = Cache::new(dir.clone(), 1);
        idle.finish();
        assert_eq!(idle.entries().len(), 2, "the hourly look evicted");
        // One that adds an entry brings the directory under 90% of it.
        let growing = Cache::new(dir.clone(), 1);
        assert!(growing.put(Kind::Object, &key("a4"), &payload));
        growing.finish();
        let left: u64 = growing.entries().iter().map(|e| e.bytes).sum();
        assert!(left <= (1 << 20) / 10 * 9, "{left} bytes left");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_eviction_mark_is_never_waited_on_nor_written_through_a_link() {
        let dir = scratch_dir("mark");
        let key = |name: &str| format!("{name:0>64}");
        std::fs::create_dir_all(&dir).unwrap();
        // A FIFO: opening it for writing would wait for a reader forever.
        assert!(mkfifo(&dir.join(EVICTION_MARK)));
        let cache = Cache::new(dir.clone(), 16);
        assert!(cache.put(Kind::Object, &key("b1"), b"x"));
        cache.finish();
        // A link to someone's file: neither truncated nor touched.
        std::fs::remove_file(dir.join(EVICTION_MARK)).unwrap();
        let victim = dir.with_extension("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        std::fs::File::options()
            .append(true)
            .open(&victim)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(EVICTION_MARK)).unwrap();
        let cache = Cache::new(dir.clone(), 16);
        assert!(cache.put(Kind::Object, &key("b2"), b"y"));
        cache.finish();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::metadata(&victim).unwrap().modified().unwrap(), old);
        let _ = std::fs::remove_file(&victim);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cache_that_cannot_be_written_stops_storing_and_still_reads() {
        let dir = scratch_dir("readonly");
        // A file where the directory should be: every store fails with
        // NotADirectory, as a read-only mount's would with EROFS.
        std::fs::write(&dir, b"not a directory").unwrap();
        let cache = Cache::new(dir.join("inner"), 16);
        assert!(!cache.put(Kind::Frontend, "k", b"x"));
        assert!(cache.storing_off.load(Ordering::Relaxed));
        assert!(!cache.put(Kind::Frontend, "k", b"x"), "off for the run");
        assert!(
            matches!(cache.get(Kind::Frontend, "k"), Err(Miss::Unreadable(_))),
            "a lookup is a miss, not an error"
        );
        let _ = std::fs::remove_file(&dir);
    }
}
