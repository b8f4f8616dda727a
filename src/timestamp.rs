//! Packet time. The detection core never reads a clock: every timeout and
//! every window is measured in the timestamps of the packets themselves.

use std::fmt;

/// A packet timestamp: nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From whole seconds and nanoseconds.
    pub fn from_parts(secs: u64, nanos: u32) -> Timestamp {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(u64::from(nanos)),
        )
    }

    /// From whole seconds.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs * 1_000_000_000)
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2024-05-01T12:00:00.000000001Z`.
    pub fn to_rfc3339(self) -> String {
        self.rfc3339().as_str().to_string()
    }

    /// The same text, formatted without allocating (the JSON writers put
    /// two in every flow record).
    pub fn rfc3339(self) -> Rfc3339 {
        let secs = self.0 / 1_000_000_000;
        let nanos = (self.0 % 1_000_000_000) as u32;
        // The calendar from the `time` crate; digits by hand (its general
        // formatter cost more than the rest of a flow record).
        let date = time::OffsetDateTime::from_unix_timestamp(secs as i64)
            .map(|t| t.date())
            .unwrap_or(time::Date::MIN);
        let of_day = secs % 86_400;
        let mut text = *b"0000-00-00T00:00:00.000000000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                text[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, date.year().clamp(0, 9999) as u32);
        put(5, 2, u32::from(u8::from(date.month())));
        put(8, 2, u32::from(date.day()));
        put(11, 2, (of_day / 3600) as u32);
        put(14, 2, (of_day / 60 % 60) as u32);
        put(17, 2, (of_day % 60) as u32);
        put(20, 9, nanos);
        Rfc3339(text)
    }
}

/// A timestamp as RFC 3339 text in UTC with nanoseconds (fixed width).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339([u8; 30]);

impl Rfc3339 {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc3339().as_str())
    }
}

/// A span of packet time in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    /// Whole seconds.
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(secs * 1_000_000_000)
    }

    /// Whole milliseconds.
    pub const fn from_millis(millis: u64) -> Duration {
        Duration(millis * 1_000_000)
    }

    /// Seconds as a float, for rates.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000000000Z");
        let t = Timestamp::from_parts(1_700_000_000, 123_456_789);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123456789Z");
    }

    #[test]
    fn formats_as_the_time_crate_does_across_the_calendar() {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        );
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut cases = vec![
            0,
            951_782_400_000_000_000,   // 2000-02-29
            1_704_067_199_999_999_999, // 2023-12-31T23:59:59.999999999
            u64::MAX,
        ];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(x);
        }
        for ns in cases {
            let want = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                .unwrap()
                .format(&format)
                .unwrap();
            assert_eq!(Timestamp(ns).to_rfc3339(), want, "{ns}");
        }
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_secs(10);
        assert_eq!(t.plus(Duration::from_secs(5)), Timestamp::from_secs(15));
        assert_eq!(Timestamp::from_secs(3).since(t), Duration(0));
        assert_eq!(Timestamp(u64::MAX).plus(Duration(1)), Timestamp(u64::MAX));
    }
}
