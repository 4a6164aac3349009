//! Time as the cores see it: a value passed in, never read from a clock.

use std::{ops::Add, time::Duration};

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch. The tokio driver derives it from a
/// monotonic clock anchored once at start-up; the simulator from its virtual
/// clock. Gossip text needs Unix time, so the cores get Unix time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_micros(us: u64) -> Timestamp {
        Timestamp(us)
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// Unix seconds with a fractional part, as gossip text carries it.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_micros().min(u64::MAX as u128) as u64),
        )
    }
}
