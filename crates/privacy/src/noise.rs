//! Exact discrete noise from a vetted implementation: OpenDP's samplers after Canonne,
//! Kamath and Steinke (2020), which never touch floating-point `ln`/`exp` (Mironov 2012).
//! Scales are converted to exact rationals; draws are integers.

use dashu::rational::RBig;

use crate::AccountantError;

fn exact(scale: f64) -> Result<RBig, AccountantError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(AccountantError::Invalid(
            "the noise scale must be a positive number",
        ));
    }
    RBig::try_from(scale)
        .map_err(|_| AccountantError::Invalid("the noise scale is not representable"))
}

fn to_i64(draw: dashu::integer::IBig) -> Result<i64, AccountantError> {
    i64::try_from(draw)
        .map_err(|_| AccountantError::Invalid("the noise draw does not fit in 64 bits"))
}

/// One draw of discrete Laplace noise with scale `scale`: P(x) ∝ exp(−|x|/scale).
pub fn discrete_laplace(scale: f64) -> Result<i64, AccountantError> {
    let draw = opendp::traits::samplers::sample_discrete_laplace(exact(scale)?)
        .map_err(|_| AccountantError::Invalid("the sampler failed"))?;
    to_i64(draw)
}

/// One draw of discrete Gaussian noise with scale σ: P(x) ∝ exp(−x²/(2σ²)).
pub fn discrete_gaussian(sigma: f64) -> Result<i64, AccountantError> {
    let draw = opendp::traits::samplers::sample_discrete_gaussian(exact(sigma)?)
        .map_err(|_| AccountantError::Invalid("the sampler failed"))?;
    to_i64(draw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(draws: &[i64]) -> (f64, f64) {
        let n = draws.len() as f64;
        let mean = draws.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = draws
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var)
    }

    #[test]
    fn draws_have_the_right_spread() {
        let n = 20_000;
        let laplace: Vec<i64> = (0..n).map(|_| discrete_laplace(2.0).unwrap()).collect();
        let (mean, var) = moments(&laplace);
        // Variance of the discrete Laplace with scale t: 2e^(-1/t) / (1 - e^(-1/t))^2.
        let p = (-0.5f64).exp();
        let expected = 2.0 * p / (1.0 - p).powi(2);
        assert!(mean.abs() < 0.15, "mean {mean}");
        assert!(
            (var - expected).abs() < 0.1 * expected,
            "variance {var} vs {expected}"
        );
        let gaussian: Vec<i64> = (0..n).map(|_| discrete_gaussian(3.0).unwrap()).collect();
        let (mean, var) = moments(&gaussian);
        assert!(mean.abs() < 0.15, "mean {mean}");
        assert!((var - 9.0).abs() < 0.9, "variance {var}");
        assert!(discrete_laplace(0.0).is_err());
        assert!(discrete_gaussian(f64::NAN).is_err());
    }
}
