//! When to retry: capped exponential backoff with full jitter. What to retry is `Error::is_retryable`.

use crate::config::RetryConfig;
use crate::shutdown::Shutdown;
use rand::Rng;
use std::time::Duration;

/// The delays of one run of retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: RetryConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: RetryConfig) -> Backoff {
        Backoff { config, attempt: 0 }
    }

    /// The ceiling of the next delay: `initial * 2^attempt`, capped at `max`.
    pub fn next_ceiling(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(30));
        self.attempt = self.attempt.saturating_add(1);
        self.config.initial.saturating_mul(factor).min(self.config.max)
    }

    /// A random delay up to the next ceiling ("full jitter"), so restarted peers do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next_ceiling();
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    /// Starts again from the first delay, after the operation has been healthy for a while.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Waits the next delay; returns false if shutdown was requested meanwhile.
    pub async fn wait(&mut self, shutdown: &mut Shutdown) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.requested() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let mut backoff =
            Backoff::new(RetryConfig { initial: Duration::from_millis(50), max: Duration::from_millis(300) });
        let ceilings: Vec<u128> = (0..6).map(|_| backoff.next_ceiling().as_millis()).collect();
        assert_eq!(ceilings, [50, 100, 200, 300, 300, 300]);
        assert_eq!(backoff.attempts(), 6);
    }

    #[test]
    fn a_reset_starts_from_the_first_delay_again() {
        let mut backoff =
            Backoff::new(RetryConfig { initial: Duration::from_millis(50), max: Duration::from_millis(300) });
        for _ in 0..5 {
            backoff.next_ceiling();
        }
        backoff.reset();
        assert_eq!(backoff.next_ceiling(), Duration::from_millis(50));
    }

    #[test]
    fn delays_stay_between_half_and_the_ceiling() {
        let mut backoff =
            Backoff::new(RetryConfig { initial: Duration::from_millis(100), max: Duration::from_secs(1) });
        for expected_ceiling in [100u64, 200, 400, 800, 1000, 1000] {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!((expected_ceiling / 2..=expected_ceiling).contains(&delay), "{delay} vs {expected_ceiling}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_stops_at_shutdown() {
        let (trigger, mut shutdown) = Shutdown::new();
        let mut backoff = Backoff::new(RetryConfig { initial: Duration::from_secs(60), max: Duration::from_secs(60) });
        trigger.request();
        assert!(!backoff.wait(&mut shutdown).await);
    }
}
