//! Where the engine reads the time. Every rule that depends on the time (consent expiry,
//! retention, deadlines, budget periods, timestamps in audit entries and documents) asks the
//! engine's [`Clock`], so a test advances a [`ShiftedClock`] instead of sleeping, and a run
//! can never flake because the machine was slow.

use std::sync::atomic::{AtomicI64, Ordering};

use candor_domain::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The time now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock shifted by an offset that only grows: time flows as usual, and a test
/// jumps it forward with [`ShiftedClock::advance`] instead of sleeping.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_ms: AtomicI64,
}

impl ShiftedClock {
    /// A clock that shows the system time until advanced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `millis` milliseconds (negative values are ignored: time
    /// does not run backwards).
    pub fn advance(&self, millis: i64) {
        self.offset_ms.fetch_add(millis.max(0), Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        Timestamp(Timestamp::now().0 + self.offset_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_jumps_forward_only() {
        let clock = ShiftedClock::new();
        let before = clock.now();
        clock.advance(86_400_000);
        let after = clock.now();
        assert!(after.0 - before.0 >= 86_400_000);
        clock.advance(-86_400_000);
        assert!(clock.now() >= after);
    }
}
