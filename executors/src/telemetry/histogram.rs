//! Log-bucket histograms of durations, recorded without locks.
//!
//! A value `v` (nanoseconds) falls into one of [`BUCKETS`] buckets: the values
//! 0 to 3 get a bucket each, and every power-of-two range `[2^p, 2^(p+1))`
//! above is cut into four equal sub-buckets. So a bucket is at most a quarter
//! of its lower bound wide, and a percentile read from the buckets is within
//! about 12% of the true value, over the whole range of `u64` nanoseconds,
//! with 252 counters (2 KiB) per histogram.
//!
//! Recording is three relaxed read-modify-writes (the bucket, the sum, the
//! maximum) and a relaxed `fetch_min`; nothing ever blocks. Readers take a
//! [`HistogramSnapshot`]: the counters are read one by one, so a snapshot taken
//! while values are recorded may see some of them and not others, but never a
//! torn value.

use std::fmt;
use std::time::Duration;

use crate::sync::unmodelled::atomic::{AtomicU64, Ordering::Relaxed};

/// Number of buckets of a [`Histogram`].
pub const BUCKETS: usize = 252;

/// Sub-buckets per power of two, as a shift: `1 << SUB_BITS` of them.
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let power = 63 - value.leading_zeros();
    let sub = (value >> (power - SUB_BITS)) & (SUB - 1);
    (SUB * u64::from(power + 1 - SUB_BITS) + sub) as usize
}

/// The half-open range `[lower, upper)` of bucket `index`; the last bucket's
/// upper bound saturates at `u64::MAX`.
fn bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, index + 1);
    }
    let power = index / SUB + u64::from(SUB_BITS) - 1;
    let sub = index % SUB;
    let width = 1u64 << (power - u64::from(SUB_BITS));
    let lower = (SUB + sub) << (power - u64::from(SUB_BITS));
    (lower, lower.saturating_add(width))
}

/// A histogram of durations with logarithmic buckets; see the module docs.
///
/// Any thread may record into it concurrently.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vedart_executors::telemetry::Histogram;
///
/// let histogram = Histogram::new();
/// for micros in 1..=100 {
///     histogram.record(Duration::from_micros(micros));
/// }
/// let snapshot = histogram.snapshot();
/// assert_eq!(snapshot.count(), 100);
/// let p50 = snapshot.p50().as_secs_f64() * 1e6;
/// assert!((44.0..=56.0).contains(&p50), "{p50}");
/// assert!(snapshot.p99() <= snapshot.max());
/// ```
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    /// Sum of every recorded value, in nanoseconds (wraps after 584 years).
    sum: AtomicU64,
    /// Smallest recorded value, `u64::MAX` while empty.
    min: AtomicU64,
    /// Largest recorded value.
    max: AtomicU64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    /// Records one duration (saturating at `u64::MAX` nanoseconds).
    #[inline]
    pub fn record(&self, value: Duration) {
        self.record_nanos(u64::try_from(value.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record_nanos(&self, nanos: u64) {
        self.buckets[index(nanos)].fetch_add(1, Relaxed);
        self.sum.fetch_add(nanos, Relaxed);
        self.min.fetch_min(nanos, Relaxed);
        self.max.fetch_max(nanos, Relaxed);
    }

    /// Records one value in nanoseconds, for a histogram only one thread ever
    /// records into: plain loads and stores instead of read-modify-writes
    /// (readers still see whole values; with two writers, counts could be
    /// lost).
    #[inline]
    pub(crate) fn record_nanos_single_writer(&self, nanos: u64) {
        let bucket = &self.buckets[index(nanos)];
        bucket.store(bucket.load(Relaxed) + 1, Relaxed);
        self.sum
            .store(self.sum.load(Relaxed).wrapping_add(nanos), Relaxed);
        if nanos < self.min.load(Relaxed) {
            self.min.store(nanos, Relaxed);
        }
        if nanos > self.max.load(Relaxed) {
            self.max.store(nanos, Relaxed);
        }
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&self, other: &HistogramSnapshot) {
        for (bucket, &count) in self.buckets.iter().zip(other.buckets.iter()) {
            if count > 0 {
                bucket.fetch_add(count, Relaxed);
            }
        }
        self.sum.fetch_add(other.sum, Relaxed);
        if other.count > 0 {
            self.min.fetch_min(other.min, Relaxed);
            self.max.fetch_max(other.max, Relaxed);
        }
    }

    /// The values recorded so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Box<[u64]> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count = buckets.iter().sum();
        HistogramSnapshot {
            count,
            sum: self.sum.load(Relaxed),
            min: if count == 0 {
                0
            } else {
                self.min.load(Relaxed)
            },
            max: self.max.load(Relaxed),
            buckets,
        }
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// The contents of a [`Histogram`] at one moment: count, sum, extremes,
/// percentiles and buckets.
///
/// Percentiles are estimated from the buckets (within about 12%, see the
/// module docs) and clamped to the recorded minimum and maximum; an empty
/// histogram reports zero for all of them.
#[derive(Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
    buckets: Box<[u64]>,
}

impl HistogramSnapshot {
    /// A snapshot with no values.
    pub fn empty() -> HistogramSnapshot {
        HistogramSnapshot {
            count: 0,
            sum: 0,
            min: 0,
            max: 0,
            buckets: vec![0; BUCKETS].into_boxed_slice(),
        }
    }

    /// A snapshot with `count` values in the bucket of `value`, for each
    /// `(value, count)` of `buckets`, and the given sum and extremes: the
    /// snapshot whose [`buckets`](Self::buckets) are `(lower, _, count)` is
    /// `from_buckets` of the `(lower, count)` pairs. So percentiles of buckets
    /// exported elsewhere (to Python, or subtracted to cover an interval) are
    /// computed here, like every other percentile.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use vedart_executors::telemetry::{Histogram, HistogramSnapshot};
    ///
    /// let histogram = Histogram::new();
    /// for micros in 1..=100 {
    ///     histogram.record(Duration::from_micros(micros));
    /// }
    /// let original = histogram.snapshot();
    /// let rebuilt = HistogramSnapshot::from_buckets(
    ///     original.buckets().map(|(lower, _, count)| (lower, count)),
    ///     original.sum(),
    ///     original.min(),
    ///     original.max(),
    /// );
    /// assert_eq!(rebuilt, original);
    /// ```
    pub fn from_buckets(
        buckets: impl IntoIterator<Item = (Duration, u64)>,
        sum: Duration,
        min: Duration,
        max: Duration,
    ) -> HistogramSnapshot {
        let nanos = |value: Duration| u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let mut snapshot = HistogramSnapshot::empty();
        for (value, count) in buckets {
            let bucket = &mut snapshot.buckets[index(nanos(value))];
            *bucket = bucket.saturating_add(count);
            snapshot.count = snapshot.count.saturating_add(count);
        }
        if snapshot.count > 0 {
            snapshot.sum = nanos(sum);
            snapshot.min = nanos(min);
            snapshot.max = nanos(max);
        }
        snapshot
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the recorded values.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum)
    }

    /// Mean of the recorded values (zero when empty).
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.sum / self.count)
    }

    /// Smallest recorded value (zero when empty).
    pub fn min(&self) -> Duration {
        Duration::from_nanos(self.min)
    }

    /// Largest recorded value (zero when empty).
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// The value below which a fraction `quantile` (0.0 to 1.0, clamped) of
    /// the recorded values lie, estimated as the middle of the bucket that
    /// holds it. Zero when empty.
    pub fn percentile(&self, quantile: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let quantile = if quantile.is_nan() {
            0.0
        } else {
            quantile.clamp(0.0, 1.0)
        };
        // The rank (1-based) of the value asked for.
        let rank = ((quantile * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (lower, upper) = bounds(index);
                let middle = lower + (upper - lower) / 2;
                return Duration::from_nanos(middle.clamp(self.min, self.max));
            }
        }
        Duration::from_nanos(self.max)
    }

    /// The median.
    pub fn p50(&self) -> Duration {
        self.percentile(0.50)
    }

    /// The 95th percentile.
    pub fn p95(&self) -> Duration {
        self.percentile(0.95)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        self.percentile(0.99)
    }

    /// The non-empty buckets in increasing order, as `(lower, upper, count)`:
    /// `count` values lay in `[lower, upper)`. For a Prometheus histogram, the
    /// `le` boundaries are the `upper` values and the counts are cumulated.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, Duration, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(index, &count)| {
                let (lower, upper) = bounds(index);
                (
                    Duration::from_nanos(lower),
                    Duration::from_nanos(upper),
                    count,
                )
            })
    }

    /// Adds `other`'s values to this snapshot.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if other.count == 0 {
            return;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

impl Default for HistogramSnapshot {
    fn default() -> HistogramSnapshot {
        HistogramSnapshot::empty()
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count)
            .field("mean", &self.mean())
            .field("p50", &self.p50())
            .field("p95", &self.p95())
            .field("p99", &self.p99())
            .field("max", &self.max())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        let mut expected_lower = 0;
        for bucket in 0..BUCKETS {
            let (lower, upper) = bounds(bucket);
            assert_eq!(lower, expected_lower, "bucket {bucket}");
            assert!(upper > lower);
            assert_eq!(index(lower), bucket);
            assert_eq!(index(upper - 1), bucket);
            // A quarter of the lower bound at most (exact buckets below 4).
            assert!(upper - lower <= (lower / 4).max(1), "bucket {bucket}");
            expected_lower = upper;
        }
        assert_eq!(expected_lower, u64::MAX);
    }

    #[test]
    fn pinned_indices() {
        assert_eq!(index(0), 0);
        assert_eq!(index(3), 3);
        assert_eq!(index(4), 4);
        assert_eq!(index(7), 7);
        assert_eq!(index(8), 8);
        assert_eq!(index(10), 9);
        assert_eq!(index(1000), 35);
        assert_eq!(bounds(35), (896, 1024));
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let histogram = Histogram::new();
        for nanos in 1..=10_000u64 {
            histogram.record_nanos(nanos);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 10_000);
        assert_eq!(snapshot.min(), Duration::from_nanos(1));
        assert_eq!(snapshot.max(), Duration::from_nanos(10_000));
        for (quantile, exact) in [(0.5, 5_000.0), (0.95, 9_500.0), (0.99, 9_900.0)] {
            let estimate = snapshot.percentile(quantile).as_nanos() as f64;
            assert!(
                (estimate - exact).abs() / exact < 0.13,
                "q{quantile}: {estimate} vs {exact}"
            );
        }
        assert_eq!(snapshot.mean(), Duration::from_nanos(5_000));
    }

    #[test]
    fn rebuilt_from_its_buckets_a_snapshot_is_the_same() {
        let histogram = Histogram::new();
        for nanos in [0, 3, 4, 1_000, 1_001, 5_000_000, u64::MAX] {
            histogram.record_nanos(nanos);
        }
        let original = histogram.snapshot();
        let rebuilt = HistogramSnapshot::from_buckets(
            original.buckets().map(|(lower, _, count)| (lower, count)),
            original.sum(),
            original.min(),
            original.max(),
        );
        assert_eq!(rebuilt, original);
        assert_eq!(rebuilt.p99(), original.p99());
        let none =
            HistogramSnapshot::from_buckets([], Duration::ZERO, Duration::ZERO, Duration::MAX);
        assert_eq!(none, HistogramSnapshot::empty());
    }

    #[test]
    fn a_single_writer_records_the_same() {
        let (shared, owned) = (Histogram::new(), Histogram::new());
        for nanos in [5, 0, 1_000_000, 42, 42, 7] {
            shared.record_nanos(nanos);
            owned.record_nanos_single_writer(nanos);
        }
        assert_eq!(shared.snapshot(), owned.snapshot());
    }

    #[test]
    fn empty_and_merged() {
        let empty = Histogram::new().snapshot();
        assert_eq!(empty, HistogramSnapshot::empty());
        assert_eq!(empty.p99(), Duration::ZERO);
        assert_eq!(empty.buckets().count(), 0);
        let a = Histogram::new();
        a.record_nanos(100);
        let b = Histogram::new();
        b.record_nanos(5);
        b.merge(&a.snapshot());
        let mut merged = a.snapshot();
        merged.merge(&HistogramSnapshot::empty());
        merged.merge(&Histogram::new().snapshot());
        let mut other = HistogramSnapshot::empty();
        other.merge(&b.snapshot());
        assert_eq!(other.count(), 2);
        assert_eq!(other.min(), Duration::from_nanos(5));
        assert_eq!(other.max(), Duration::from_nanos(100));
        assert_eq!(other, b.snapshot());
        assert_eq!(merged, a.snapshot());
    }
}
