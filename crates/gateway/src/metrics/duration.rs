//! [`DurationHistogram`]: a Prometheus histogram of durations whose observation
//! takes no lock, for the request path.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the duration buckets, nanoseconds: from half a millisecond (a handshake on
/// the loopback, a cached answer) to half a minute (past the default request timeout).
const BOUNDS_NANOS: [u64; 15] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// A histogram of durations whose observation is two atomic adds: no lock (prometheus-client's
/// `Histogram` takes a mutex per observation), no allocation. Clones share the counts.
///
/// A scrape reads the buckets one by one, so it may see an observation in a bucket and not
/// yet in the sum; the count is the sum of the buckets, so the two always agree.
#[derive(Debug, Clone, Default)]
pub struct DurationHistogram(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: [AtomicU64; BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// Counts one duration.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|bound| *bound < nanos);
        self.0.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let bounds = BOUNDS_NANOS.iter().map(|nanos| *nanos as f64 / 1e9).chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> =
            bounds.zip(&self.0.counts).map(|(le, c)| (le, c.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket_and_the_count_is_the_buckets_sum() {
        let histogram = DurationHistogram::default();
        histogram.observe(Duration::from_micros(200));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_millis(70));
        histogram.observe(Duration::from_secs(3600));
        let counts: Vec<u64> = histogram.0.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts[0], 1, "200 µs is under the first bound");
        assert_eq!(counts[1], 1, "1 ms is at a bound: le includes it");
        assert_eq!(counts[7], 1, "70 ms is in the 100 ms bucket");
        assert_eq!(counts[BOUNDS_NANOS.len()], 1, "an hour is above every bound");
        assert_eq!(histogram.count(), 4);
    }
}
