//! Retry delays: a route's schedule (by default, for plugins that call
//! out, one that outlasts the senders' own retries), or exponential and
//! capped; with jitter so that events that failed together do not retry
//! together; and a plugin's retry-after hint, within the route's bound.

use anyhow::{Result, bail};
use rand::Rng;

use crate::config::WorkerSettings;

/// The waits before the 2nd, 3rd, … attempt on a route whose plugin calls
/// out (an `http` or `blob` grant) and that sets no `retry_schedule`:
/// Svix's schedule, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (eight
/// attempts over about 27 hours), longer than FAL's and most senders' own
/// retries, so an outage of a few hours ends without dead letters.
pub const CALLING_OUT_SCHEDULE_MS: [u64; 7] = [
    5_000,
    5 * 60_000,
    30 * 60_000,
    2 * 3_600_000,
    5 * 3_600_000,
    10 * 3_600_000,
    10 * 3_600_000,
];

/// The longest retry-after hint honoured unless the route says otherwise.
pub const DEFAULT_RETRY_AFTER_MAX_MS: u64 = 6 * 3_600_000;

/// How a route's failed events are retried, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryRule {
    /// The route's `max_attempts`, when it sets one.
    pub max_attempts: Option<u32>,
    /// The route's `retry_schedule`: the waits before the 2nd, 3rd, …
    /// attempt; empty asks for exponential backoff; none: the default.
    pub schedule: Option<Vec<u64>>,
    /// The longest retry-after hint honoured.
    pub retry_after_max_ms: u64,
}

impl RetryRule {
    /// The rule a route's settings give (durations such as `"5s"`, `"30m"`).
    pub fn of(
        max_attempts: Option<u32>,
        schedule: Option<&[String]>,
        retry_after_max: Option<&str>,
    ) -> Result<Self> {
        let schedule = schedule
            .map(|waits| {
                waits
                    .iter()
                    .map(|w| parse_duration_ms(w))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        if max_attempts == Some(0) {
            bail!("max_attempts must be at least 1");
        }
        Ok(Self {
            max_attempts,
            schedule,
            retry_after_max_ms: retry_after_max
                .map(parse_duration_ms)
                .transpose()?
                .unwrap_or(DEFAULT_RETRY_AFTER_MAX_MS),
        })
    }

    /// The policy for one event, on a plugin that calls out or not.
    pub fn policy<'a>(&'a self, calls_out: bool, worker: &WorkerSettings) -> Retry<'a> {
        let schedule: Option<&[u64]> = match &self.schedule {
            Some(waits) if waits.is_empty() => None,
            Some(waits) => Some(waits),
            None if calls_out => Some(&CALLING_OUT_SCHEDULE_MS),
            None => None,
        };
        let max_attempts = self.max_attempts.unwrap_or(match schedule {
            Some(waits) => waits.len() as u32 + 1,
            None => worker.max_attempts,
        });
        Retry {
            schedule,
            max_attempts,
            base_ms: worker.backoff_base_ms,
            max_ms: worker.backoff_max_ms,
            retry_after_max_ms: self.retry_after_max_ms,
        }
    }
}

/// How one event is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry<'a> {
    schedule: Option<&'a [u64]>,
    /// Attempts before it is dead.
    pub max_attempts: u32,
    base_ms: u64,
    max_ms: u64,
    retry_after_max_ms: u64,
}

impl Retry<'_> {
    /// The wait after failed attempt `attempt` (≥ 1): the plugin's hint
    /// (capped at the route's bound), else the schedule's entry (the last
    /// one repeats) with up to a tenth more as jitter, else exponential.
    pub fn delay_ms(&self, attempt: u32, hint_ms: Option<u64>, rng: &mut impl Rng) -> u64 {
        if let Some(hint) = hint_ms {
            return hint.min(self.retry_after_max_ms);
        }
        match self.schedule {
            Some(waits) => {
                let wait = waits[(attempt.max(1) as usize - 1).min(waits.len() - 1)];
                wait + rng.random_range(0..=wait / 10)
            }
            None => delay_ms(attempt, self.base_ms, self.max_ms, rng),
        }
    }
}

/// `"250ms"`, `"5s"`, `"30m"`, `"2h"` or `"1d"` in milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{text:?} is not a duration: write a number and ms, s, m, h or d (\"30s\", \"2h\")"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration: it needs a number before the unit"))?;
    Ok(number.saturating_mul(scale))
}

/// Delay before attempt `attempt + 1`, after `attempt` (≥ 1) failures:
/// `base · 2^(attempt-1)`, capped at `max`, then "equal jitter": half fixed,
/// half random, so the delay lies in `[d/2, d]`.
pub fn delay_ms(attempt: u32, base_ms: u64, max_ms: u64, rng: &mut impl Rng) -> u64 {
    let exp = attempt.saturating_sub(1).min(32);
    let full = base_ms.saturating_mul(1u64 << exp).min(max_ms);
    let half = full / 2;
    half + rng.random_range(0..=full - half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_caps() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let d1 = delay_ms(1, 1000, 60_000, &mut rng);
            assert!((500..=1000).contains(&d1), "{d1}");
            let d4 = delay_ms(4, 1000, 60_000, &mut rng);
            assert!((4000..=8000).contains(&d4), "{d4}");
            let d40 = delay_ms(40, 1000, 60_000, &mut rng);
            assert!((30_000..=60_000).contains(&d40), "{d40}");
        }
    }

    #[test]
    fn durations_parse_and_nonsense_is_refused() {
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert_eq!(parse_duration_ms("5s").unwrap(), 5_000);
        assert_eq!(parse_duration_ms("30m").unwrap(), 1_800_000);
        assert_eq!(parse_duration_ms(" 2h ").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("1d").unwrap(), 86_400_000);
        for bad in ["", "5", "s", "5 s", "-5s", "5w", "1.5h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plugins_that_call_out_get_the_long_schedule_by_default() {
        let worker = WorkerSettings::default();
        let rule = RetryRule::of(None, None, None).unwrap();
        let mut rng = rand::rng();
        let long = rule.policy(true, &worker);
        assert_eq!(long.max_attempts, 8);
        let waits: Vec<u64> = (1..=8).map(|a| long.delay_ms(a, None, &mut rng)).collect();
        for (wait, planned) in waits
            .iter()
            .zip(CALLING_OUT_SCHEDULE_MS.iter().chain([&36_000_000]))
        {
            assert!((*planned..=planned + planned / 10).contains(wait), "{waits:?}");
        }
        let total: u64 = CALLING_OUT_SCHEDULE_MS.iter().sum();
        assert!(total > 24 * 3_600_000, "outlasts a day of the sender's retries");
        let short = rule.policy(false, &worker);
        assert_eq!(short.max_attempts, worker.max_attempts);
        assert!((1_000..=2_000).contains(&short.delay_ms(1, None, &mut rng)));
    }

    #[test]
    fn a_route_schedule_and_hints_within_bounds() {
        let worker = WorkerSettings::default();
        let schedule = ["1s".to_string(), "1m".to_string()];
        let rule = RetryRule::of(None, Some(&schedule), Some("10m")).unwrap();
        let retry = rule.policy(false, &worker);
        assert_eq!(retry.max_attempts, 3, "two waits: three attempts");
        let mut rng = rand::rng();
        assert!((1_000..=1_100).contains(&retry.delay_ms(1, None, &mut rng)));
        assert!((60_000..=66_000).contains(&retry.delay_ms(5, None, &mut rng)));
        assert_eq!(retry.delay_ms(1, Some(30_000), &mut rng), 30_000);
        assert_eq!(retry.delay_ms(1, Some(3_600_000), &mut rng), 600_000, "capped");
        let rule = RetryRule::of(Some(4), Some(&[]), None).unwrap();
        let exponential = rule.policy(true, &worker);
        assert_eq!(exponential.max_attempts, 4);
        assert!((1_000..=2_000).contains(&exponential.delay_ms(1, None, &mut rng)));
        assert!(RetryRule::of(None, Some(&["soon".to_string()]), None).is_err());
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut rng = rand::rng();
        let mut seen: Vec<u64> = (0..50).map(|_| delay_ms(3, 1000, 60_000, &mut rng)).collect();
        seen.dedup();
        assert!(seen.len() > 10, "50 delays should not collapse to a few values");
    }
}
