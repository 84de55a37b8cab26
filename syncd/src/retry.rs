//! When to retry: capped exponential backoff with full jitter. What to retry is `Error::is_retryable`.
//! [`retry_until_shutdown`] and [`retry_through_shutdown`] are the one retry loop of the daemon.

use crate::config::RetryConfig;
use crate::error::Error;
use crate::shutdown::Shutdown;
use rand::RngExt;
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

/// How a retried operation waits out its delays.
enum Waiting<'a> {
    /// Every delay passes in full: the operation must finish (a batch that was read is committed).
    ThroughShutdown,
    /// Shutdown during a delay ends the retries.
    UntilShutdown(&'a mut Shutdown),
}

/// Runs `operation` on `state` until it succeeds or fails with an error that is not retryable. Before
/// each retry, `before_retry` gets the state, the error and the attempt number (to reset a connection,
/// count and log), then the next backoff delay passes. `Ok(None)` when shutdown came during a delay.
pub async fn retry_until_shutdown<State, Value>(
    retry: &RetryConfig,
    shutdown: &mut Shutdown,
    state: &mut State,
    operation: impl AsyncFnMut(&mut State) -> Result<Value, Error>,
    before_retry: impl FnMut(&mut State, &Error, u32),
) -> Result<Option<Value>, Error> {
    retry_operation(retry, Waiting::UntilShutdown(shutdown), state, operation, before_retry).await
}

/// [`retry_until_shutdown`] for an operation that must finish: shutdown does not cut its delays short.
pub async fn retry_through_shutdown<State, Value>(
    retry: &RetryConfig,
    state: &mut State,
    operation: impl AsyncFnMut(&mut State) -> Result<Value, Error>,
    before_retry: impl FnMut(&mut State, &Error, u32),
) -> Result<Value, Error> {
    retry_operation(retry, Waiting::ThroughShutdown, state, operation, before_retry)
        .await?
        .ok_or(Error::Internal("a retry that ignores shutdown stopped at shutdown"))
}

async fn retry_operation<State, Value>(
    retry: &RetryConfig,
    mut waiting: Waiting<'_>,
    state: &mut State,
    mut operation: impl AsyncFnMut(&mut State) -> Result<Value, Error>,
    mut before_retry: impl FnMut(&mut State, &Error, u32),
) -> Result<Option<Value>, Error> {
    let mut backoff = Backoff::new(retry.clone());
    loop {
        match operation(state).await {
            Ok(value) => return Ok(Some(value)),
            Err(error) if error.is_retryable() => {
                before_retry(state, &error, backoff.attempts());
                match &mut waiting {
                    Waiting::ThroughShutdown => tokio::time::sleep(backoff.next_delay()).await,
                    Waiting::UntilShutdown(shutdown) => {
                        if !backoff.wait(shutdown).await {
                            return Ok(None);
                        }
                    }
                }
            }
            Err(error) => return Err(error),
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

    fn refused_connection() -> Error {
        Error::Redis(redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused")))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_with_the_attempt_number_until_success() {
        let retry = RetryConfig { initial: Duration::from_millis(10), max: Duration::from_millis(20) };
        let mut failures_left = 2;
        let mut attempts_seen = Vec::new();
        let value = retry_through_shutdown(
            &retry,
            &mut failures_left,
            async |failures_left: &mut u32| match *failures_left {
                0 => Ok("done"),
                _ => {
                    *failures_left -= 1;
                    Err(refused_connection())
                }
            },
            |_, error, attempt| {
                assert!(error.is_retryable());
                attempts_seen.push(attempt);
            },
        )
        .await
        .unwrap();
        assert_eq!((value, attempts_seen), ("done", vec![0, 1]));
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_that_is_not_retryable_ends_the_retries_at_once() {
        let retry = RetryConfig { initial: Duration::from_millis(10), max: Duration::from_millis(20) };
        let (_trigger, mut shutdown) = Shutdown::new();
        let mut calls = 0;
        let outcome: Result<Option<()>, Error> = retry_until_shutdown(
            &retry,
            &mut shutdown,
            &mut calls,
            async |calls: &mut u32| {
                *calls += 1;
                Err(Error::Config("bad".to_owned()))
            },
            |_, _, _| panic!("no retry expected"),
        )
        .await;
        assert!(matches!(outcome, Err(Error::Config(_))));
        assert_eq!(calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_delay_ends_the_retries() {
        let retry = RetryConfig { initial: Duration::from_secs(60), max: Duration::from_secs(60) };
        let (trigger, mut shutdown) = Shutdown::new();
        trigger.request();
        let outcome: Result<Option<()>, Error> = retry_until_shutdown(
            &retry,
            &mut shutdown,
            &mut (),
            async |_: &mut ()| Err(refused_connection()),
            |_, _, _| {},
        )
        .await;
        assert!(matches!(outcome, Ok(None)));
    }
}
