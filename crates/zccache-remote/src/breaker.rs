//! The circuit breaker: after [`FAILURES`] failures in a row the remote is skipped for a
//! while ([`OPEN_FOR`] unless configured), then one call probes it; a success closes the breaker, a failure opens it
//! again. A dead remote then costs a build a few timeouts, not one per compile.

use std::time::{Duration, Instant};

pub const FAILURES: u32 = 3;
pub const OPEN_FOR: Duration = Duration::from_secs(30);

/// What [`Breaker::allow`] says about a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Allowed {
    Yes,
    No,
    /// Not this call, but probe the remote now: its answer closes or reopens the breaker.
    ProbeFirst,
}

#[derive(Debug)]
pub struct Breaker {
    open_for: Duration,
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    /// Why it last failed, for `status`.
    pub last_error: Option<String>,
}

impl Breaker {
    /// A closed breaker that, once open, stays so for `open_for`.
    pub fn new(open_for: Duration) -> Breaker {
        Breaker {
            open_for,
            failures: 0,
            open_until: None,
            probing: false,
            last_error: None,
        }
    }

    /// Whether a call may go out now. While open, none does; once the time is up, the first
    /// caller is told to start a probe (off any compile's path) and calls stay skipped until
    /// it answers.
    pub fn allow(&mut self, now: Instant) -> Allowed {
        match self.open_until {
            None => Allowed::Yes,
            Some(until) if now >= until && !self.probing => {
                self.probing = true;
                Allowed::ProbeFirst
            }
            Some(_) => Allowed::No,
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
            self.open_until = Some(now + self.open_for);
            self.probing = false;
        }
    }

    /// Opens at once, whatever the count: the remote cannot be reached at all (refused,
    /// unresolvable) or did not answer in time; waiting for two more such calls would cost
    /// the build two more deadlines.
    pub fn trip(&mut self, now: Instant, why: String) {
        self.failures = FAILURES;
        self.last_error = Some(why);
        self.open_until = Some(now + self.open_for);
        self.probing = false;
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
        let mut b = Breaker::new(OPEN_FOR);
        for _ in 0..FAILURES {
            assert_eq!(b.allow(t0), Allowed::Yes);
            b.failure(t0, "refused".into());
        }
        assert!(b.is_open());
        assert_eq!(b.allow(t0), Allowed::No);
        assert_eq!(b.allow(t0 + OPEN_FOR / 2), Allowed::No);
        let later = t0 + OPEN_FOR;
        assert_eq!(b.allow(later), Allowed::ProbeFirst, "one probe");
        assert_eq!(b.allow(later), Allowed::No, "only one, calls still skipped");
        b.failure(later, "still down".into());
        assert_eq!(b.allow(later + Duration::from_secs(1)), Allowed::No);
        let much_later = later + OPEN_FOR * 2;
        assert_eq!(b.allow(much_later), Allowed::ProbeFirst);
        b.success();
        assert!(!b.is_open());
        assert_eq!(b.allow(much_later), Allowed::Yes);
        assert_eq!(b.allow(much_later), Allowed::Yes);
    }
}
