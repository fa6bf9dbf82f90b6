//! Which filesystems keep a file's status trustworthy enough to stand for
//! its contents (see `ir::frontend_cache`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Local filesystems with nanosecond timestamps, whose status-change time
/// the kernel sets on every change of a file (`linux/magic.h`). Not in
/// it: network and FUSE filesystems (attributes cached for seconds, times
/// from another clock, or ctime reported as mtime), read-only images
/// (squashfs, erofs, iso9660: every time is the image's), FAT (2 s, no
/// status-change time) and anything unknown.
const FINE_GRAINED_LOCAL: [i64; 8] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0x794C_7630, // overlayfs
    0xF2F5_2010, // f2fs
    0x2FC1_2FC1, // zfs
    0xCA45_1A4E, // bcachefs
];

/// overlayfs shows a lower layer's times for a file not copied up: a
/// read-only image's (see `FINE_GRAINED_LOCAL`), often whole seconds.
const OVERLAYFS: i64 = 0x794C_7630;

/// How far the status of a file can stand for its contents (see
/// `ir::frontend_cache`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StatusTrust {
    /// Not at all: the file must be read.
    None,
    /// Its times are the kernel's, to the nanosecond, or in whole seconds
    /// only where the filesystem keeps no finer time.
    Fine,
    /// As `Fine`, but a whole-second time may be an image's, not the
    /// kernel's (overlayfs).
    FineExceptWholeSeconds,
}

/// How far the status of the file at `path` can be trusted, from its
/// filesystem; `None` if that cannot be told.
pub fn status_trust(path: &Path) -> StatusTrust {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return StatusTrust::None;
    };
    // SAFETY: `path` is NUL-terminated; `info` is written by the call only.
    let info = unsafe {
        let mut info: libc::statfs = std::mem::zeroed();
        (libc::statfs(path.as_ptr(), &mut info) == 0).then_some(info)
    };
    // `f_type`'s type differs between targets (i64 here, u32 on some).
    #[allow(clippy::unnecessary_cast)]
    match info.map(|info| info.f_type as i64) {
        Some(OVERLAYFS) => StatusTrust::FineExceptWholeSeconds,
        Some(kind) if FINE_GRAINED_LOCAL.contains(&kind) => StatusTrust::Fine,
        _ => StatusTrust::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_is_not_trusted_and_a_missing_path_is_not_either() {
        let trust = |path| status_trust(Path::new(path));
        assert_eq!(trust("/proc/self/status"), StatusTrust::None);
        assert_eq!(trust("/nonexistent/x"), StatusTrust::None);
    }
}
