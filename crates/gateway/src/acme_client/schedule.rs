//! When to renew, as Caddy and certbot do it:
//! - the CA's renewal information (RFC 9773) when it offers it: a random time
//!   in its suggested window (a window already past, as for a revoked
//!   certificate, means now), looked at again after its Retry-After;
//! - otherwise when two thirds of the lifetime have passed, less a random
//!   part of a thirtieth of the lifetime, so many certificates issued together
//!   are not renewed together.
//!
//! After a failed order the next attempt waits [`backoff`]: 10 s doubling, at
//! most an hour and at most a tenth of the time the certificate has left.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::Account;
use rand::Rng;

use super::Stored;

/// Retry-After of renewal information is taken within these bounds.
const ARI_RECHECK_MIN: Duration = Duration::from_secs(5);
const ARI_RECHECK_MAX: Duration = Duration::from_secs(24 * 3600);

/// When a certificate is to be renewed, and when to ask the CA again.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    /// The time chosen to renew.
    pub at: SystemTime,
    /// Renewal information to be fetched again then (it may move `at`).
    pub recheck: Option<SystemTime>,
    /// Whence `at`: the CA's window, or two thirds of the lifetime.
    pub reason: &'static str,
    /// The CA's suggested window (Unix seconds), when it gave one.
    pub window: Option<(i64, i64)>,
}

impl Renewal {
    /// When to wake up: the renewal time, or the next look at renewal information.
    pub fn wake(&self) -> SystemTime {
        match self.recheck {
            Some(recheck) if recheck < self.at => recheck,
            _ => self.at,
        }
    }

    /// Whether it is time to renew.
    pub fn due(&self) -> bool {
        self.at <= SystemTime::now()
    }
}

/// When to renew `current`; `account` (when it could be reached) is asked for the CA's
/// renewal information.
pub async fn renewal(account: Option<&Account>, current: &Stored) -> Renewal {
    let lifetime = (current.not_after - current.not_before).max(1);
    if let (Some(account), Some(id)) = (account, current.certificate_id()) {
        match account.renewal_info(&id).await {
            Ok((info, retry_after)) => {
                let window = info.suggested_window;
                let start = window.start.unix_timestamp();
                let end = window.end.unix_timestamp().max(start);
                let at = if end > start { rand::rng().random_range(start..=end) } else { start };
                let recheck = SystemTime::now() + retry_after.clamp(ARI_RECHECK_MIN, ARI_RECHECK_MAX);
                return Renewal {
                    at: unix(at),
                    recheck: Some(recheck),
                    reason: "the CA's renewal information",
                    window: Some((start, end)),
                };
            }
            Err(instant_acme::Error::Unsupported(_)) => {}
            Err(e) => tracing::debug!(error = %e, "no renewal information; renewing at two thirds of the lifetime"),
        }
    }
    let jitter = rand::rng().random_range(0..=lifetime / 30);
    let at = current.not_before + lifetime * 2 / 3 - jitter;
    Renewal { at: unix(at), recheck: None, reason: "two thirds of its lifetime passed", window: None }
}

/// How long to wait after the `failures`-th failed order in a row (1 for the first),
/// with `current` still serving (or none yet).
pub fn backoff(failures: u32, current: Option<&Stored>) -> Duration {
    let doubled = Duration::from_secs(10).saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let mut wait = doubled.min(Duration::from_secs(3600));
    if let Some(current) = current {
        let left = current.not_after - now_unix();
        if left > 0 {
            wait = wait.min(Duration::from_secs((left / 10).max(10) as u64));
        } else {
            wait = wait.min(Duration::from_secs(60));
        }
    }
    wait
}

fn unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n, None).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]);
        assert_eq!(backoff(100, None).as_secs(), 3600);
    }
}
