//! Timestamps as milliseconds since the Unix epoch, parsed from and printed as RFC 3339.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    }
    /// Parses an RFC 3339 timestamp such as `2026-11-29T10:00:00Z`.
    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(raw, &Rfc3339).ok()?;
        Some(Self((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }
    /// RFC 3339 form, in UTC with millisecond precision.
    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }
    /// This time plus a number of days (saturating).
    pub fn plus_days(self, days: u32) -> Self {
        Self(self.0.saturating_add(days as i64 * DAY_MS))
    }
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3339() {
        let t = Timestamp::parse_rfc3339("2026-11-29T10:00:00.250Z").unwrap();
        assert_eq!(t.0, 1_795_946_400_250);
        assert_eq!(t.to_rfc3339(), "2026-11-29T10:00:00.25Z");
        assert_eq!(t.plus_days(1).0 - t.0, DAY_MS);
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }
}
