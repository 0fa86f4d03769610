//! Median, p95 and ratios of measured runs.

use serde::Serialize;

/// Runs of one measurement, in milliseconds, with their median and p95.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub p95: f64,
    pub runs: Vec<f64>,
}

impl Summary {
    /// Median (mean of the middle two for an even count) and p95 by nearest
    /// rank, which with fewer than 20 runs is the slowest run.
    pub fn of(runs: Vec<f64>) -> Summary {
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let n = sorted.len();
        if n == 0 {
            return Summary {
                median: 0.0,
                p95: 0.0,
                runs,
            };
        }
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Summary {
            median,
            p95: sorted[rank - 1],
            runs,
        }
    }
}

/// `baseline / strata`, or `None` when strata's figure is not positive (a
/// ratio against nothing would be made up).
pub fn ratio(baseline: f64, strata: f64) -> Option<f64> {
    (strata > 0.0 && baseline.is_finite() && strata.is_finite()).then(|| baseline / strata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        assert_eq!(Summary::of(vec![3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Summary::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }

    #[test]
    fn p95_is_nearest_rank() {
        let s = Summary::of(vec![5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s.p95, 5.0);
        let many: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(Summary::of(many).p95, 95.0);
    }

    #[test]
    fn runs_keep_their_order() {
        assert_eq!(Summary::of(vec![2.0, 1.0]).runs, vec![2.0, 1.0]);
    }

    #[test]
    fn ratios_need_a_positive_denominator() {
        assert_eq!(ratio(10.0, 2.0), Some(5.0));
        assert_eq!(ratio(10.0, 0.0), None);
    }
}
