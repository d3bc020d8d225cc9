//! The clock the operating system stamps written files with.
//!
//! A file written after a reading of this clock carries a stamp at least as new, which is what
//! lets a stamp prove a file untouched since a compile began. Linux stamps with the coarse
//! realtime clock, which is read here directly. Elsewhere the stamping clock is not one std
//! can name: Windows stamps with the system time of the last timer tick, macOS with a reading
//! that may trail the precise realtime clock. There the reading is taken back by one tick
//! ([`file_clock_tick`]), so that it is never ahead of a stamp a later write could get; the
//! price is that files written within that tick before a compile count as maybe-changed.

use std::time::Duration;

/// The file clock now, in nanoseconds since the Unix epoch.
#[cfg(target_os = "linux")]
pub fn file_clock_now_ns() -> i128 {
    read(libc::CLOCK_REALTIME_COARSE)
}

/// The file clock now, in nanoseconds since the Unix epoch.
#[cfg(not(target_os = "linux"))]
pub fn file_clock_now_ns() -> i128 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_nanos() as i128 - file_clock_tick().as_nanos() as i128
}

/// One tick of the file clock: how long until its reading moves on.
#[cfg(target_os = "linux")]
pub fn file_clock_tick() -> Duration {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `res` is a valid timespec to write to.
    if unsafe { libc::clock_getres(libc::CLOCK_REALTIME_COARSE, &mut res) } != 0 {
        return Duration::from_millis(10);
    }
    Duration::new(res.tv_sec as u64, res.tv_nsec as u32)
}

/// One tick of the file clock: Windows' default timer interval (15.6 ms), rounded up; macOS
/// is given the same margin.
#[cfg(not(target_os = "linux"))]
pub fn file_clock_tick() -> Duration {
    Duration::from_millis(16)
}

#[cfg(target_os = "linux")]
fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}
