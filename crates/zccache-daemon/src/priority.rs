//! The CPU priority of the tools the daemon runs (`ZCCACHE_COMPILE_PRIORITY`): a build that
//! saturates the machine should leave the desktop, the editor and the daemon's own hits
//! responsive.
//!
//! `auto` (the default) keeps compilers at the daemon's priority while the CPUs are less than
//! 95 % busy and runs them at `low` from there; `low` is nice +10 from the daemon's, `idle`
//! nice 19, `high` nice -5 where permitted, `normal` the daemon's own. The call's environment
//! decides, else the daemon's. Only misses spawn anything, so none of this is on the hit path.
//!
//! A child inherits the nice value of the thread that creates it. A tool that must run at
//! another priority is therefore started by a spawner thread that runs at that priority
//! ([`spawn`]): the tool has it from its first instruction, so the processes it starts at once
//! (gcc's cc1, rustc's linker) have it too, and std still starts it with `posix_spawn`. The
//! alternatives are worse: a `pre_exec` hook that renices the child would force std to `fork`
//! the whole daemon, and renicing the child after `spawn` returns leaves a window in which the
//! child has already started processes at the old priority. The calling thread cannot renice
//! itself for the spawn either, as an unprivileged thread can never lower its nice value back.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The variable that chooses the priority.
pub(crate) const PRIORITY_ENV: &str = "ZCCACHE_COMPILE_PRIORITY";

/// At or above this share of busy CPU time, `auto` means `low`.
const SATURATED: f64 = 0.95;

/// `/proc/stat` is read at most this often; between reads the last verdict stands.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// The nice value `idle` sets, and the lowest priority there is.
const NICE_IDLE: i32 = 19;

/// What `low` adds to the daemon's nice value.
const NICE_LOW_STEP: i32 = 10;

/// The nice value `high` asks for.
const NICE_HIGH: i32 = -5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// The daemon's own priority, which children inherit.
    Normal,
    Low,
    Idle,
    High,
}

/// What `ZCCACHE_COMPILE_PRIORITY` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    /// `Normal` below [`SATURATED`] CPU use, `Low` at or above it.
    Auto,
    Fixed(Priority),
}

impl Setting {
    /// The setting a value names; `None` for a value that names none (which means `low`).
    fn parse(value: &str) -> Option<Setting> {
        Some(match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Setting::Auto,
            "normal" => Setting::Fixed(Priority::Normal),
            "low" => Setting::Fixed(Priority::Low),
            "idle" => Setting::Fixed(Priority::Idle),
            "high" => Setting::Fixed(Priority::High),
            _ => return None,
        })
    }
}

/// The setting for a call whose environment holds `requested` (else the daemon's environment
/// decides). A value that names no setting is logged once per value and means `low`: a build
/// that tried to ask for something is likelier to want less CPU than more.
pub(crate) fn setting(requested: Option<&OsStr>) -> Setting {
    let daemons;
    let value = match requested {
        Some(value) => value,
        None => {
            daemons = std::env::var_os(PRIORITY_ENV);
            match &daemons {
                Some(value) => value,
                None => return Setting::Auto,
            }
        }
    };
    if let Some(setting) = value.to_str().and_then(Setting::parse) {
        return setting;
    }
    static WARNED: Mutex<Vec<OsString>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.iter().any(|w| w == value) && warned.len() < 16 {
        warned.push(value.to_owned());
        tracing::warn!(
            "{PRIORITY_ENV}={:?} is not auto, low, normal, idle or high; compilers run at low",
            value.to_string_lossy()
        );
    }
    Setting::Fixed(Priority::Low)
}

/// [`spawn`] at the setting of a call whose environment is `env` (the last value wins, as in
/// a process environment).
pub(crate) fn spawn_for(command: Command, env: &[(OsString, OsString)]) -> io::Result<Child> {
    let requested = env.iter().rev().find(|(k, _)| k == PRIORITY_ENV);
    spawn(command, setting(requested.map(|(_, v)| v.as_os_str())))
}

/// The nice value a child should get for `priority` when the daemon runs at `daemon_nice`;
/// `None` to leave it the spawning thread's.
fn target_nice(priority: Priority, daemon_nice: i32) -> Option<i32> {
    match priority {
        Priority::Normal => None,
        Priority::Low => Some((daemon_nice + NICE_LOW_STEP).min(NICE_IDLE)),
        Priority::Idle => Some(NICE_IDLE),
        Priority::High => Some(NICE_HIGH),
    }
}

/// Starts `command` at the priority `setting` gives (see the module's comment). A priority that
/// cannot be had (raising it needs privileges) is logged once and the tool runs at normal
/// priority: a compile never fails for its priority.
pub(crate) fn spawn(mut command: Command, setting: Setting) -> io::Result<Child> {
    let priority = match setting {
        Setting::Fixed(priority) => priority,
        Setting::Auto if CPU.saturated() => Priority::Low,
        Setting::Auto => Priority::Normal,
    };
    let Some(nice) = target_nice(priority, daemon_nice()) else {
        return command.spawn();
    };
    if nice_of(0) == Some(nice) {
        return command.spawn();
    }
    match spawner(nice) {
        Some(jobs) => {
            let (reply, child) = mpsc::sync_channel(1);
            match jobs.send((command, reply)) {
                Ok(()) => child
                    .recv()
                    .unwrap_or_else(|_| Err(io::Error::other("the spawner thread is gone"))),
                // Cannot happen while the spawner lives; run it here rather than not at all.
                Err(mpsc::SendError((mut command, _))) => command.spawn(),
            }
        }
        None => command.spawn(),
    }
}

/// A command to start, and where the started child (or the error) goes.
type Job = (Command, mpsc::SyncSender<io::Result<Child>>);

/// The queue of the thread that starts tools at nice value `nice`, started on first use;
/// `None` if this daemon may not run at that value (logged once).
fn spawner(nice: i32) -> Option<mpsc::Sender<Job>> {
    static SPAWNERS: LazyLock<Mutex<HashMap<i32, Option<mpsc::Sender<Job>>>>> =
        LazyLock::new(Default::default);
    let mut spawners = SPAWNERS.lock().unwrap_or_else(|e| e.into_inner());
    spawners
        .entry(nice)
        .or_insert_with(|| match start_spawner(nice) {
            Ok(jobs) => Some(jobs),
            Err(e) => {
                tracing::warn!(
                    "cannot run compilers at nice {nice} ({e}); they run at normal priority"
                );
                None
            }
        })
        .clone()
}

/// Starts a thread that sets its own nice value to `nice`, then starts every command it is
/// sent, so that each child inherits that value.
fn start_spawner(nice: i32) -> io::Result<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let (started, outcome) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("zccache-spawn-nice{nice}"))
        .spawn(move || {
            let set = zccache_platform::process::set_thread_nice(nice);
            let ok = set.is_ok();
            let _ = started.send(set);
            if !ok {
                return;
            }
            for (mut command, reply) in queue {
                let _ = reply.send(command.spawn());
            }
        })?;
    outcome
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the spawner thread died")))?;
    Ok(jobs)
}

/// The daemon's nice value: its main thread's (what `renice` sets), else 0.
fn daemon_nice() -> i32 {
    nice_of(std::process::id()).unwrap_or(0)
}

/// The nice value of thread `tid` (0: the calling thread).
fn nice_of(tid: u32) -> Option<i32> {
    zccache_platform::process::thread_nice(tid)
}

/// The machine's CPU use, from `/proc/stat`.
static CPU: CpuLoad = CpuLoad {
    last: Mutex::new(None),
    saturated: AtomicBool::new(false),
};

/// CPU use measured as the busy share of CPU time between two reads of `/proc/stat`, at most
/// [`SAMPLE_INTERVAL`] apart in a busy build (after a quiet spell the first read averages over
/// the spell, and the next one, a quarter second later, over the build). The first read of all
/// has nothing to compare with and counts as not saturated.
struct CpuLoad {
    /// The last read and when it was taken.
    last: Mutex<Option<(Instant, CpuTimes)>>,
    /// The verdict of the last two reads.
    saturated: AtomicBool,
}

impl CpuLoad {
    /// Whether the CPUs are at least [`SATURATED`] busy, reading `/proc/stat` when the last
    /// read is older than [`SAMPLE_INTERVAL`].
    fn saturated(&self) -> bool {
        // Another miss is reading it: its verdict is as fresh as ours would be.
        let Ok(mut last) = self.last.try_lock() else {
            return self.saturated.load(Ordering::Relaxed);
        };
        let now = Instant::now();
        if last.is_some_and(|(at, _)| now.duration_since(at) < SAMPLE_INTERVAL) {
            return self.saturated.load(Ordering::Relaxed);
        }
        let Some(times) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| CpuTimes::parse(&text))
        else {
            return false;
        };
        if let Some(busy) = last.and_then(|(_, before)| busy_share(before, times)) {
            self.saturated.store(busy >= SATURATED, Ordering::Relaxed);
        }
        *last = Some((now, times));
        self.saturated.load(Ordering::Relaxed)
    }
}

/// Cumulative CPU time of all CPUs, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    /// From the `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal
    /// (guest time is already counted in user). Idle and iowait are not busy.
    fn parse(text: &str) -> Option<CpuTimes> {
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if fields.len() < 4 {
            return None;
        }
        let total: u64 = fields.iter().sum();
        let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
        Some(CpuTimes {
            busy: total - idle,
            total,
        })
    }
}

/// The busy share of CPU time between two reads; `None` when no time passed.
fn busy_share(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total.checked_sub(before.total)?;
    let busy = after.busy.checked_sub(before.busy)?;
    (total > 0).then(|| busy as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_values_mean_low() {
        for (value, expected) in [
            ("auto", Setting::Auto),
            ("", Setting::Auto),
            ("normal", Setting::Fixed(Priority::Normal)),
            ("low", Setting::Fixed(Priority::Low)),
            ("IDLE", Setting::Fixed(Priority::Idle)),
            ("high", Setting::Fixed(Priority::High)),
            ("fast", Setting::Fixed(Priority::Low)),
            ("10", Setting::Fixed(Priority::Low)),
        ] {
            assert_eq!(setting(Some(OsStr::new(value))), expected, "{value:?}");
        }
    }

    #[test]
    fn nice_values_per_priority() {
        assert_eq!(target_nice(Priority::Normal, 0), None);
        assert_eq!(target_nice(Priority::Low, 0), Some(10));
        assert_eq!(target_nice(Priority::Low, 5), Some(15));
        assert_eq!(target_nice(Priority::Low, 15), Some(19));
        assert_eq!(target_nice(Priority::Low, -20), Some(-10));
        assert_eq!(target_nice(Priority::Idle, 3), Some(19));
        assert_eq!(target_nice(Priority::High, 0), Some(-5));
    }

    /// `/proc/stat` with the given cumulative idle and busy ticks spread over its fields.
    fn stat(user: u64, system: u64, idle: u64, iowait: u64) -> String {
        format!(
            "cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\n\
             cpu0 1 2 3 4 5 6 7 8 9 10\nintr 12345\n"
        )
    }

    #[test]
    fn busy_share_from_proc_stat_deltas() {
        let check = |before: &str, after: &str, expected: Option<f64>, saturated: bool| {
            let (before, after) = (
                CpuTimes::parse(before).unwrap(),
                CpuTimes::parse(after).unwrap(),
            );
            let share = busy_share(before, after);
            assert_eq!(share, expected, "{before:?} -> {after:?}");
            assert_eq!(share.is_some_and(|s| s >= SATURATED), saturated);
        };
        // 100 ticks: 96 busy (94 user, 2 system), 4 idle: saturated.
        check(
            &stat(1000, 100, 5000, 50),
            &stat(1094, 102, 5004, 50),
            Some(0.96),
            true,
        );
        // Exactly 95 %: saturated.
        check(&stat(0, 0, 0, 0), &stat(90, 5, 5, 0), Some(0.95), true);
        // 94 %, with iowait counted as idle.
        check(&stat(0, 0, 0, 0), &stat(94, 0, 3, 3), Some(0.94), false);
        // A quiet machine.
        check(
            &stat(10, 10, 10, 0),
            &stat(20, 10, 200, 0),
            Some(0.05),
            false,
        );
        // No time passed, or counters went backwards: no verdict.
        check(&stat(5, 5, 5, 5), &stat(5, 5, 5, 5), None, false);
        check(&stat(9, 9, 9, 9), &stat(5, 5, 5, 5), None, false);
        assert_eq!(CpuTimes::parse("intr 1\n"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2\n"), None);
    }

    /// The priority each setting gives a child, as the child itself reads it from
    /// `/proc/self/stat` (field 19) right after it starts.
    #[cfg(target_os = "linux")]
    fn child_nice(setting: Setting) -> i32 {
        let mut command = Command::new("sh");
        command
            .args(["-c", "cat /proc/self/stat"])
            .stdout(std::process::Stdio::piped());
        let output = spawn(command, setting).unwrap().wait_with_output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let after_name = &text[text.rfind(')').unwrap() + 2..];
        // Fields from the third: state is field 3, nice field 19.
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")] // per-thread nice values, read from /proc
    #[test]
    fn children_start_at_the_priority_asked_for() {
        let own = nice_of(0).unwrap();
        let daemon = daemon_nice();
        assert_eq!(child_nice(Setting::Fixed(Priority::Normal)), own);
        assert_eq!(
            child_nice(Setting::Fixed(Priority::Low)),
            (daemon + 10).min(19)
        );
        assert_eq!(child_nice(Setting::Fixed(Priority::Idle)), 19);
        // Raising the priority needs privileges; without them the child runs as normal.
        let high = child_nice(Setting::Fixed(Priority::High));
        assert!(high == -5 || high == own, "high gave nice {high}");
        // Spawners are reused, and the caller's thread keeps its priority.
        assert_eq!(child_nice(Setting::Fixed(Priority::Idle)), 19);
        assert_eq!(nice_of(0), Some(own));
    }
}
