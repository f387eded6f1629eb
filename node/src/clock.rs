//! The node's clock: wall-clock milliseconds plus a configured offset.
//!
//! The offset exists for tests and drills (clock-skew runs, expiry at a chosen instant); it is 0
//! in normal operation. proto never reads a clock: the node passes this time in.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, shifted by `offset_ms`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    /// Added to the system time (may be negative).
    pub offset_ms: i64,
}

impl Clock {
    /// Now, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (sys + self.offset_ms).max(0) as u64
    }
}
