//! The clock files are stamped with, and the file systems whose stamps are coarser than it.
//!
//! Linux stamps a write with the coarse realtime clock (`CLOCK_REALTIME_COARSE`, one tick of
//! 1–10 ms; since 6.13 some file systems use a finer reading, never an older one). So a write
//! made after the coarse clock read T carries a stamp ≥ T: comparing a file's stamps with a
//! reading taken when a compile starts tells exactly whether the file may have been written
//! since, except for stamps in that very tick. A fine clock (`CLOCK_REALTIME`) read at the same
//! instant is ahead of the coarse one by up to a tick and would call most earlier writes later.
//!
//! File systems that keep whole or even seconds (FAT, exFAT's mtime, most network mounts,
//! ext2/3 with small inodes) round a stamp down by up to two seconds; their stamps are compared
//! with that much slack ([`COARSE_STAMP`]). Network file systems stamp with the server's clock:
//! like make, zccache assumes the clocks agree to within that slack.

use dashmap::DashMap;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

/// How far a coarse file system's stamp may lie before the write that made it.
pub const COARSE_STAMP: Duration = Duration::from_secs(2);

/// A reading of the clock the kernel stamps files with, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileClock(i128);

impl FileClock {
    /// Reads the file clock (on Linux the coarse realtime clock: a few nanoseconds, no
    /// system call).
    pub fn now() -> FileClock {
        FileClock(zccache_platform::clock::file_clock_now_ns())
    }

    /// The reading in nanoseconds since the epoch.
    pub fn nanos(self) -> i128 {
        self.0
    }

    /// The clock's tick, as the kernel reports it.
    pub fn tick() -> Duration {
        zccache_platform::clock::file_clock_tick()
    }

    /// Waits until the clock has moved past `stamp_ns`, so that a file stamped `stamp_ns` and
    /// compared with a later reading counts as written before it. Returns at once for a stamp
    /// already in the past; for a stamp in the current tick, waits out that tick. Gives up
    /// after `limit` (a stamp in the future: a clock set back, another machine's clock) and
    /// returns `false`.
    pub fn wait_past(stamp_ns: i128, limit: Duration) -> bool {
        let give_up = std::time::Instant::now() + limit;
        loop {
            let now = FileClock::now().0;
            if now > stamp_ns {
                return true;
            }
            let left = give_up.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            // The next tick starts at most one tick from now; sleep to just past it.
            let until_next = Duration::from_nanos((stamp_ns - now).clamp(0, 1_000_000_000) as u64)
                .max(Duration::from_micros(200));
            std::thread::sleep(until_next.min(FileClock::tick()).min(left));
        }
    }
}

/// Device → whether its file system keeps coarse stamps, learnt from the first file seen on it.
static DEVICES: LazyLock<DashMap<u64, bool, rustc_hash::FxBuildHasher>> =
    LazyLock::new(DashMap::default);

/// Whether files on `dev` have coarse stamps; `None` while no file on it has been seen.
pub(crate) fn device_is_coarse(dev: u64) -> Option<bool> {
    DEVICES.get(&dev).map(|known| *known)
}

/// Looks up the file-system type of `path`'s device, once per device: whether its stamps are
/// coarse.
pub(crate) fn learn_device(dev: u64, path: &Path) -> bool {
    // Unknown: be careful.
    let coarse = zccache_platform::stamp::has_coarse_stamps(path).unwrap_or(true);
    if coarse {
        tracing::info!(
            "{}: file system with coarse or remote time stamps; inputs written within {} s of a compile are not stored",
            path.display(),
            COARSE_STAMP.as_secs()
        );
    }
    DEVICES.insert(dev, coarse);
    coarse
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Finds the kernel's stamping rule on the machine the tests run on: a write made after a
    /// reading of the file clock never carries an older stamp, while a fine reading of the same
    /// instant would be ahead of most stamps.
    #[test]
    fn a_write_after_a_reading_is_never_stamped_before_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let mut file = std::fs::File::create(&path).unwrap();
        for round in 0..2000 {
            let before = FileClock::now();
            file.write_all(b"x").unwrap();
            let sig = crate::StatSig::of(&path).unwrap();
            assert!(
                sig.mtime_ns >= before.nanos() && sig.touched_since(before),
                "round {round}: stamp {} before the reading {}",
                sig.mtime_ns,
                before.nanos()
            );
        }
    }

    #[test]
    fn waiting_past_a_stamp_of_the_current_tick_ends_and_a_future_one_is_given_up() {
        let now = FileClock::now().nanos();
        assert!(FileClock::wait_past(now, Duration::from_secs(5)));
        assert!(FileClock::now().nanos() > now);
        // Not a timing assertion on speed: a future stamp is given up on.
        assert!(!FileClock::wait_past(
            now + 3_600_000_000_000,
            Duration::from_millis(20)
        ));
    }

    #[test]
    fn a_local_temp_dir_is_not_coarse_and_is_learnt_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, "x").unwrap();
        let sig = crate::StatSig::of(&path).unwrap();
        assert_eq!(
            device_is_coarse(sig.dev),
            zccache_platform::stamp::has_coarse_stamps(&path)
        );
    }

    #[test]
    fn whole_second_stamps_count_as_coarse() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, "x").unwrap();
        let mut sig = crate::StatSig::of(&path).unwrap();
        let start = FileClock::now();
        // A fine file system: a stamp one second before the reading is older.
        sig.coarse = false;
        sig.mtime_ns = start.nanos() - 1_000_000_000;
        sig.ctime_ns = sig.mtime_ns;
        assert!(!sig.touched_since(start));
        // A two-second file system may have rounded a later write down that far.
        sig.coarse = true;
        assert!(sig.touched_since(start));
        sig.mtime_ns = start.nanos() - 3_000_000_000;
        sig.ctime_ns = sig.mtime_ns;
        assert!(!sig.touched_since(start));
    }
}
