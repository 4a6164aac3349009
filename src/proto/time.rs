//! Time as the cores see it: a value passed in, never read from a clock.

use std::{
    ops::Add,
    time::{Duration, Instant},
};

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

/// At most one log line per source and per kind of refusal this often.
pub const LIMIT_LOG_EVERY: Duration = Duration::from_secs(1);

/// A point in time that [`RefusalLog`] can measure from: the driver's
/// [`Instant`], or a core's [`Timestamp`].
pub trait Moment: Copy + Add<Duration, Output = Self> {
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    fn since(self, earlier: Self) -> Duration;
}

impl Moment for Instant {
    fn since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl Moment for Timestamp {
    fn since(self, earlier: Timestamp) -> Duration {
        self.saturating_since(earlier)
    }
}

/// Counts refusals, and says when to log them: the first at once, then at
/// most once per [`LIMIT_LOG_EVERY`] with how many there were, so that a
/// flood makes a few log lines, not one per frame or connection.
#[derive(Debug)]
pub struct RefusalLog<T = Instant> {
    since_logged: u64,
    last_logged: Option<T>,
}

impl<T> Default for RefusalLog<T> {
    fn default() -> Self {
        RefusalLog {
            since_logged: 0,
            last_logged: None,
        }
    }
}

impl<T: Moment> RefusalLog<T> {
    /// Counts one refusal; returns the count to log, when a line is due.
    pub fn note(&mut self, now: T) -> Option<u64> {
        self.since_logged += 1;
        let due = self
            .last_logged
            .is_none_or(|at| now.since(at) >= LIMIT_LOG_EVERY);
        if !due {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.since_logged))
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst`. The
/// driver's per-connection limits count in [`Instant`]s, the peer core's
/// gossip admission in [`Timestamp`]s.
#[derive(Debug, Clone)]
pub struct TokenBucket<T = Instant> {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: T,
}

impl<T: Moment> TokenBucket<T> {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: T) -> TokenBucket<T> {
        TokenBucket::with_tokens(rate, burst, burst, now)
    }

    /// A bucket holding `tokens` (at most `burst`) at `now`.
    pub fn with_tokens(rate: f64, burst: f64, tokens: f64, now: T) -> TokenBucket<T> {
        TokenBucket {
            rate,
            burst,
            tokens: tokens.min(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: T) {
        let elapsed = now.since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        // Never backwards: a late `now` refills nothing and loses nothing.
        if elapsed > 0.0 {
            self.last = now;
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: T) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a token is there, taking none.
    pub fn has_token(&mut self, now: T) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// When the next token will be there.
    pub fn next_token_at(&mut self, now: T) -> T {
        self.refill(now);
        let missing = (1.0 - self.tokens).max(0.0);
        now + Duration::from_secs_f64(missing / self.rate)
    }

    /// When the bucket will be full again, taking nothing meanwhile.
    pub fn full_at(&self) -> T {
        let missing = (self.burst - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.rate)
    }
}
