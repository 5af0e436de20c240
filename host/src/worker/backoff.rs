//! Retry delays: exponential, capped, with jitter so that events that failed
//! together do not retry together.

use rand::Rng;

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
    fn jitter_spreads_delays() {
        let mut rng = rand::rng();
        let mut seen: Vec<u64> = (0..50).map(|_| delay_ms(3, 1000, 60_000, &mut rng)).collect();
        seen.dedup();
        assert!(seen.len() > 10, "50 delays should not collapse to a few values");
    }
}
