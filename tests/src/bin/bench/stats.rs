//! Summaries of measured samples, with nearest-rank percentiles.

/// The count, mean and nearest-rank p50, p99 and max of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` (any order); `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let max = *sorted.last()?;
        Some(Summary {
            n: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50: percentile(&sorted, 50),
            p99: percentile(&sorted, 99),
            max,
        })
    }
}

/// The nearest-rank `p`th percentile (`p` in 1..=100) of `sorted`, which is ascending and not
/// empty: the smallest sample that at least `p`% of the samples are less than or equal to, i.e.
/// the sample of 1-based rank `ceil(p * n / 100)`.
///
/// It is always one of the samples (no interpolation). With 200 samples p50 is the 100th and p99
/// the 198th; with fewer than 100 samples p99 is the maximum.
pub fn percentile(sorted: &[f64], p: usize) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    assert!((1..=100).contains(&p), "percentile {p} outside 1..=100");
    let rank = (p * sorted.len()).div_ceil(100);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ascending(n: usize) -> Vec<f64> {
        (1..=n).map(|i| i as f64).collect()
    }

    #[test]
    fn nearest_rank() {
        let hundred = ascending(100);
        assert_eq!(percentile(&hundred, 50), 50.0);
        assert_eq!(percentile(&hundred, 99), 99.0);
        assert_eq!(percentile(&hundred, 100), 100.0);
        let two_hundred = ascending(200);
        assert_eq!(percentile(&two_hundred, 50), 100.0);
        assert_eq!(percentile(&two_hundred, 99), 198.0);
        let few = ascending(5);
        assert_eq!(percentile(&few, 50), 3.0);
        assert_eq!(percentile(&few, 99), 5.0);
        assert_eq!(percentile(&[7.0], 1), 7.0);
    }

    #[test]
    fn summary_sorts_its_input() {
        let summary = Summary::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(summary.n, 4);
        assert_eq!(summary.p50, 2.0);
        assert_eq!(summary.p99, 10.0);
        assert_eq!(summary.max, 10.0);
        assert_eq!(summary.mean, 4.0);
        assert_eq!(Summary::of(&[]), None);
    }
}
