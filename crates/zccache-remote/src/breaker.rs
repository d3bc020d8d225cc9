//! The circuit breaker: after [`FAILURES`] failures in a row the remote is skipped for
//! [`OPEN_FOR`], then one call probes it; a success closes the breaker, a failure opens it
//! again. A dead remote then costs a build a few timeouts, not one per compile.

use std::time::{Duration, Instant};

pub const FAILURES: u32 = 3;
pub const OPEN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    /// Why it last failed, for `status`.
    pub last_error: Option<String>,
}

impl Breaker {
    /// Whether a call may go out now. While open, none does; once the time is up, one probe.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now >= until && !self.probing => {
                self.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.probing = false;
        self.last_error = None;
    }

    pub fn failure(&mut self, now: Instant, why: String) {
        self.failures += 1;
        self.last_error = Some(why);
        if self.probing || self.failures >= FAILURES {
            self.open_until = Some(now + OPEN_FOR);
            self.probing = false;
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_and_probes_once_when_the_time_is_up() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..FAILURES {
            assert!(b.allow(t0));
            b.failure(t0, "refused".into());
        }
        assert!(b.is_open() && !b.allow(t0) && !b.allow(t0 + OPEN_FOR / 2));
        let later = t0 + OPEN_FOR;
        assert!(b.allow(later), "one probe");
        assert!(!b.allow(later), "only one");
        b.failure(later, "still down".into());
        assert!(!b.allow(later + Duration::from_secs(1)));
        let much_later = later + OPEN_FOR * 2;
        assert!(b.allow(much_later));
        b.success();
        assert!(!b.is_open() && b.allow(much_later) && b.allow(much_later));
    }
}
