//! Little's-law sizing of the blocking pool.
//!
//! The pool's *target* size is the number of threads that would be busy on average
//! if jobs keep arriving as they have recently: by Little's Law, the mean number
//! of jobs in service is `L = λ · S`, with `λ` the arrival rate and `S` the mean
//! service time (how long a job runs once a thread has taken it).
//!
//! - `λ` is an exponentially weighted moving average of the arrival rate with
//!   time constant [`RATE_WINDOW`]: every arrival adds one to a weight that decays
//!   as `e^(-Δt / RATE_WINDOW)`, and `λ = weight / RATE_WINDOW`. At a steady rate
//!   the weight settles at `λ · RATE_WINDOW`; when arrivals stop the estimate
//!   decays on its own, so an idle pool's target falls back to `min_workers`.
//! - `S` is an exponentially weighted moving average of job run times, each new
//!   sample weighted [`SERVICE_WEIGHT`].
//! - The target is `L` rounded to the nearest whole thread and clamped to
//!   `[min_workers, max_workers]`.
//!
//! The pool grows on demand (a job waits and no thread is idle), not towards the
//! target; the target decides which idle threads stay: at the end of its
//! keep-alive, an idle thread retires only while the pool is larger than
//! `max(min_workers, target)` ([`should_retire`]).

use std::time::{Duration, Instant};

/// Time constant of the arrival-rate average: arrivals older than a few windows
/// no longer count.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Weight of the newest run time in the service-time average.
pub(crate) const SERVICE_WEIGHT: f64 = 0.1;

/// The arrival-rate and service-time averages behind the pool's target size.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadEstimator {
    /// Decayed number of arrivals, as of `last_arrival`.
    weight: f64,
    /// When `weight` was last brought up to date; `None` before the first job.
    last_arrival: Option<Instant>,
    /// Mean run time in seconds; meaningful once `samples > 0`.
    service_secs: f64,
    /// Number of run times recorded (saturating), to seed the average.
    samples: u64,
}

impl LoadEstimator {
    /// Records one job arriving at `now`.
    pub(crate) fn record_arrival(&mut self, now: Instant) {
        self.weight = self.decayed_weight(now) + 1.0;
        // A caller may have read the clock just before another thread recorded a
        // later arrival: never move the reference point backwards.
        self.last_arrival = Some(match self.last_arrival {
            Some(last) if last > now => last,
            _ => now,
        });
    }

    /// Records one job that ran for `elapsed`.
    pub(crate) fn record_service(&mut self, elapsed: Duration) {
        let sample = elapsed.as_secs_f64();
        if self.samples == 0 {
            self.service_secs = sample;
        } else {
            self.service_secs += SERVICE_WEIGHT * (sample - self.service_secs);
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// The arrival rate in jobs per second, as seen at `now`.
    pub(crate) fn arrival_rate(&self, now: Instant) -> f64 {
        self.decayed_weight(now) / RATE_WINDOW.as_secs_f64()
    }

    /// The mean run time of a job (zero before the first job finished).
    pub(crate) fn mean_service_time(&self) -> Duration {
        Duration::try_from_secs_f64(self.service_secs).unwrap_or(Duration::ZERO)
    }

    /// Little's `L = λ · S`: the mean number of jobs in service.
    pub(crate) fn offered_load(&self, now: Instant) -> f64 {
        self.arrival_rate(now) * self.service_secs
    }

    /// The target pool size at `now`: `L` rounded, clamped to `[min, max]`.
    pub(crate) fn target(&self, now: Instant, min: usize, max: usize) -> usize {
        target_from_load(self.offered_load(now), min, max)
    }

    fn decayed_weight(&self, now: Instant) -> f64 {
        match self.last_arrival {
            None => 0.0,
            Some(last) => {
                let age = now.saturating_duration_since(last).as_secs_f64();
                self.weight * (-age / RATE_WINDOW.as_secs_f64()).exp()
            }
        }
    }
}

/// `load` rounded to the nearest whole thread, clamped to `[min, max]`.
pub(crate) fn target_from_load(load: f64, min: usize, max: usize) -> usize {
    // `as` saturates: NaN becomes 0 and huge loads become usize::MAX.
    let threads = load.round() as usize;
    threads.clamp(min, max.max(min))
}

/// Whether an idle thread whose keep-alive ran out should leave a pool of
/// `threads` threads: only while the pool is above both bounds that keep threads.
pub(crate) fn should_retire(threads: usize, min: usize, target: usize) -> bool {
    threads > min.max(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_estimator_targets_min() {
        let estimator = LoadEstimator::default();
        let now = Instant::now();
        assert_eq!(estimator.arrival_rate(now), 0.0);
        assert_eq!(estimator.mean_service_time(), Duration::ZERO);
        assert_eq!(estimator.target(now, 0, 8), 0);
        assert_eq!(estimator.target(now, 3, 8), 3);
    }

    #[test]
    fn steady_arrivals_converge_to_the_rate() {
        // 100 jobs/s for 10 s (ten time constants).
        let start = Instant::now();
        let mut estimator = LoadEstimator::default();
        for i in 0..1000u64 {
            estimator.record_arrival(start + Duration::from_millis(10 * i));
        }
        let now = start + Duration::from_millis(9990);
        let rate = estimator.arrival_rate(now);
        assert!((95.0..105.0).contains(&rate), "rate {rate}");
    }

    #[test]
    fn rate_decays_when_arrivals_stop() {
        let start = Instant::now();
        let mut estimator = LoadEstimator::default();
        for _ in 0..50 {
            estimator.record_arrival(start);
        }
        let at_once = estimator.arrival_rate(start);
        let later = estimator.arrival_rate(start + RATE_WINDOW * 3);
        assert!((at_once - 50.0).abs() < 1e-9, "rate {at_once}");
        assert!(later < at_once * 0.06, "rate {later} did not decay");
    }

    #[test]
    fn arrivals_out_of_order_do_not_rewind() {
        let start = Instant::now();
        let mut estimator = LoadEstimator::default();
        estimator.record_arrival(start + Duration::from_millis(5));
        estimator.record_arrival(start);
        assert_eq!(
            estimator.last_arrival,
            Some(start + Duration::from_millis(5))
        );
        assert!((estimator.arrival_rate(start + Duration::from_millis(5)) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn service_time_is_a_weighted_average() {
        let mut estimator = LoadEstimator::default();
        estimator.record_service(Duration::from_millis(100));
        assert_eq!(estimator.mean_service_time(), Duration::from_millis(100));
        estimator.record_service(Duration::from_millis(200));
        let mean = estimator.mean_service_time().as_secs_f64();
        assert!((mean - 0.110).abs() < 1e-9, "mean {mean}");
    }

    #[test]
    fn littles_law_target() {
        // 100 jobs/s, each 40 ms: 4 busy threads on average.
        let start = Instant::now();
        let mut estimator = LoadEstimator::default();
        for i in 0..1000u64 {
            estimator.record_arrival(start + Duration::from_millis(10 * i));
            estimator.record_service(Duration::from_millis(40));
        }
        let now = start + Duration::from_millis(9990);
        assert_eq!(estimator.target(now, 0, 64), 4);
        assert_eq!(estimator.target(now, 6, 64), 6, "clamped to min");
        assert_eq!(estimator.target(now, 0, 2), 2, "clamped to max");
    }

    #[test]
    fn target_rounds_and_clamps() {
        assert_eq!(target_from_load(0.49, 0, 8), 0);
        assert_eq!(target_from_load(0.5, 0, 8), 1);
        assert_eq!(target_from_load(2.4, 0, 8), 2);
        assert_eq!(target_from_load(1e30, 0, 8), 8);
        assert_eq!(target_from_load(f64::NAN, 1, 8), 1);
    }

    #[test]
    fn retire_only_above_min_and_target() {
        assert!(should_retire(3, 1, 2));
        assert!(!should_retire(2, 1, 2));
        assert!(!should_retire(2, 2, 0));
        assert!(should_retire(1, 0, 0));
        assert!(!should_retire(0, 0, 0));
    }
}
