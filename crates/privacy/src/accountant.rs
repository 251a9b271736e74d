//! The RDP accountant. Mechanisms add Rényi-DP curves over a fixed grid of orders;
//! [`Accountant::epsilon`] converts the composed curve to (ε, δ)-DP.

/// Why a query to the accountant was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccountantError {
    /// A parameter is out of range.
    #[error("{0}")]
    Invalid(&'static str),
}

/// The orders of the RDP curve: Google's dp_accounting defaults (1.1 to 10.9 by 0.1, 11 to 63,
/// 128, 256, 512).
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + x as f64 / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0]);
    orders
}

/// ε at a δ, and the order that gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpsilonBound {
    /// ε.
    pub epsilon: f64,
    /// The Rényi order that minimized it.
    pub order: f64,
}

/// A composed RDP curve plus pure-ε spending.
#[derive(Debug, Clone, PartialEq)]
pub struct Accountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
    pure_epsilon: f64,
}

impl Default for Accountant {
    fn default() -> Self {
        let orders = default_orders();
        Self {
            rdp: vec![0.0; orders.len()],
            orders,
            pure_epsilon: 0.0,
        }
    }
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

fn ln_binomial(n: u64, k: u64) -> f64 {
    // Sum of logs: exact enough for the orders used (n <= 512).
    (0..k)
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum()
}

/// RDP of one Poisson-subsampled Gaussian step at an integer order α ≥ 2 (Mironov, Talwar and
/// Zhang 2019, Sec. 3.3): log Σₖ C(α,k) (1−q)^(α−k) q^k exp((k²−k)/(2σ²)) / (α−1).
fn subsampled_gaussian_rdp(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_sum = f64::NEG_INFINITY;
    for k in 0..=alpha {
        let term = ln_binomial(alpha, k)
            + (alpha - k) as f64 * (-q).ln_1p()
            + if k == 0 { 0.0 } else { k as f64 * q.ln() }
            + (k * k - k) as f64 / (2.0 * sigma * sigma);
        log_sum = log_add(log_sum, term);
    }
    log_sum / (alpha as f64 - 1.0)
}

impl Accountant {
    /// An empty accountant over the default orders.
    pub fn new() -> Self {
        Self::default()
    }

    /// Composes `count` runs of the Gaussian mechanism with noise multiplier `sigma` (noise
    /// standard deviation over L2 sensitivity): RDP α/(2σ²) each.
    pub fn gaussian(&mut self, sigma: f64, count: u64) -> Result<&mut Self, AccountantError> {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(AccountantError::Invalid("sigma must be a positive number"));
        }
        for (r, a) in self.rdp.iter_mut().zip(&self.orders) {
            *r += count as f64 * a / (2.0 * sigma * sigma);
        }
        Ok(self)
    }

    /// Composes a mechanism that is ρ-zCDP (Bun and Steinke 2016): RDP α·ρ at every order. A
    /// Gaussian with L2 sensitivity Δ and noise σ (continuous or discrete, Canonne, Kamath and
    /// Steinke 2020) is Δ²/(2σ²)-zCDP.
    pub fn zcdp(&mut self, rho: f64) -> Result<&mut Self, AccountantError> {
        if !(rho.is_finite() && rho >= 0.0) {
            return Err(AccountantError::Invalid(
                "rho must be a non-negative number",
            ));
        }
        for (r, a) in self.rdp.iter_mut().zip(&self.orders) {
            *r += a * rho;
        }
        Ok(self)
    }

    /// Composes `steps` Poisson-subsampled Gaussian steps with sampling rate `q`. Evaluated at
    /// integer orders only; other orders are left unbounded for this curve.
    pub fn subsampled_gaussian(
        &mut self,
        q: f64,
        sigma: f64,
        steps: u64,
    ) -> Result<&mut Self, AccountantError> {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(AccountantError::Invalid("sigma must be a positive number"));
        }
        if !(q > 0.0 && q <= 1.0) {
            return Err(AccountantError::Invalid(
                "the sampling rate must be in (0, 1]",
            ));
        }
        if q == 1.0 {
            return self.gaussian(sigma, steps);
        }
        for (r, &a) in self.rdp.iter_mut().zip(&self.orders) {
            *r += if a.fract() == 0.0 && a >= 2.0 {
                steps as f64 * subsampled_gaussian_rdp(q, sigma, a as u64)
            } else {
                f64::INFINITY
            };
        }
        Ok(self)
    }

    /// Composes `count` runs of the Laplace mechanism with `scale` b and L1 `sensitivity`:
    /// pure ε = sensitivity / b each, added up.
    pub fn laplace(
        &mut self,
        scale: f64,
        sensitivity: f64,
        count: u64,
    ) -> Result<&mut Self, AccountantError> {
        if !(scale.is_finite() && scale > 0.0 && sensitivity.is_finite() && sensitivity > 0.0) {
            return Err(AccountantError::Invalid(
                "scale and sensitivity must be positive numbers",
            ));
        }
        self.pure_epsilon += count as f64 * sensitivity / scale;
        Ok(self)
    }

    /// The smallest ε at which everything composed so far is (ε, δ)-DP: the pure-ε spend plus
    /// the best conversion of the RDP curve, ε = r + log1p(−1/α) − log(δ·α)/(α−1).
    pub fn epsilon(&self, delta: f64) -> Result<EpsilonBound, AccountantError> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(AccountantError::Invalid("delta must be in (0, 1)"));
        }
        if self.rdp.iter().all(|&r| r == 0.0) {
            return Ok(EpsilonBound {
                epsilon: self.pure_epsilon,
                order: f64::INFINITY,
            });
        }
        let mut best = EpsilonBound {
            epsilon: f64::INFINITY,
            order: f64::NAN,
        };
        for (&r, &a) in self.rdp.iter().zip(&self.orders) {
            let eps = r + (-1.0 / a).ln_1p() - (delta.ln() + a.ln()) / (a - 1.0);
            if eps < best.epsilon {
                best = EpsilonBound {
                    epsilon: eps.max(0.0),
                    order: a,
                };
            }
        }
        best.epsilon += self.pure_epsilon;
        Ok(best)
    }
}

/// The largest ρ whose zCDP guarantee converts to at most `epsilon` at `delta` through
/// [`Accountant::epsilon`] (bisection; the result never exceeds the bound).
pub fn rho_for_epsilon(epsilon: f64, delta: f64) -> Result<f64, AccountantError> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(AccountantError::Invalid(
            "epsilon must be a positive number",
        ));
    }
    let eps = |rho: f64| -> Result<f64, AccountantError> {
        Ok(Accountant::new().zcdp(rho)?.epsilon(delta)?.epsilon)
    };
    eps(0.0)?; // validates delta
    let (mut lo, mut hi) = (0.0f64, epsilon);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if eps(mid)? <= epsilon {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// A budget-planner query: one mechanism, composed.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The Gaussian mechanism, optionally Poisson-subsampled.
    Gaussian {
        /// Noise multiplier.
        sigma: f64,
        /// Compositions (steps).
        compositions: u64,
        /// Sampling rate, if subsampled.
        sampling_rate: Option<f64>,
    },
    /// The Laplace mechanism.
    Laplace {
        /// Scale b.
        scale: f64,
        /// L1 sensitivity.
        sensitivity: f64,
        /// Compositions.
        compositions: u64,
    },
}

/// A budget-planner question as asked, by `candor privacy epsilon` and by
/// `GET /v1/analytics/plan`: the mechanism's name and whichever parameters were given. The one
/// parser of mechanisms; [`PlanRequest::plan`] turns it into a [`Plan`] or says what is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlanRequest<'a> {
    /// `gaussian` or `laplace`.
    pub mechanism: &'a str,
    /// Gaussian noise multiplier.
    pub sigma: Option<f64>,
    /// Laplace scale.
    pub scale: Option<f64>,
    /// Laplace L1 sensitivity (default 1).
    pub sensitivity: Option<f64>,
    /// Compositions (default 1).
    pub compositions: Option<u64>,
    /// Poisson sampling rate (Gaussian only).
    pub sampling_rate: Option<f64>,
}

impl PlanRequest<'_> {
    /// The plan this request names.
    pub fn plan(&self) -> Result<Plan, AccountantError> {
        let compositions = self.compositions.unwrap_or(1);
        match self.mechanism {
            "gaussian" => Ok(Plan::Gaussian {
                sigma: self.sigma.ok_or(AccountantError::Invalid(
                    "sigma is required for the gaussian mechanism",
                ))?,
                compositions,
                sampling_rate: self.sampling_rate,
            }),
            "laplace" => {
                if self.sampling_rate.is_some() {
                    return Err(AccountantError::Invalid(
                        "sampling_rate applies to the gaussian mechanism only",
                    ));
                }
                Ok(Plan::Laplace {
                    scale: self.scale.ok_or(AccountantError::Invalid(
                        "scale is required for the laplace mechanism",
                    ))?,
                    sensitivity: self.sensitivity.unwrap_or(1.0),
                    compositions,
                })
            }
            _ => Err(AccountantError::Invalid(
                "the mechanism must be gaussian or laplace",
            )),
        }
    }
}

impl Plan {
    /// ε at `delta` for this plan.
    pub fn epsilon(&self, delta: f64) -> Result<EpsilonBound, AccountantError> {
        let mut a = Accountant::new();
        match *self {
            Plan::Gaussian {
                sigma,
                compositions,
                sampling_rate: None,
            } => a.gaussian(sigma, compositions)?,
            Plan::Gaussian {
                sigma,
                compositions,
                sampling_rate: Some(q),
            } => a.subsampled_gaussian(q, sigma, compositions)?,
            Plan::Laplace {
                scale,
                sensitivity,
                compositions,
            } => a.laplace(scale, sensitivity, compositions)?,
        };
        a.epsilon(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_requests_parse_in_one_place() {
        let gaussian = PlanRequest {
            mechanism: "gaussian",
            sigma: Some(2.0),
            ..Default::default()
        };
        assert_eq!(
            gaussian.plan().unwrap(),
            Plan::Gaussian {
                sigma: 2.0,
                compositions: 1,
                sampling_rate: None
            }
        );
        let laplace = PlanRequest {
            mechanism: "laplace",
            scale: Some(1.5),
            compositions: Some(3),
            ..Default::default()
        };
        assert_eq!(
            laplace.plan().unwrap(),
            Plan::Laplace {
                scale: 1.5,
                sensitivity: 1.0,
                compositions: 3
            }
        );
        for bad in [
            PlanRequest {
                mechanism: "gaussian",
                ..Default::default()
            },
            PlanRequest {
                mechanism: "laplace",
                ..Default::default()
            },
            PlanRequest {
                mechanism: "laplace",
                scale: Some(1.0),
                sampling_rate: Some(0.1),
                ..Default::default()
            },
            PlanRequest {
                mechanism: "magic",
                sigma: Some(1.0),
                ..Default::default()
            },
        ] {
            assert!(bad.plan().is_err(), "{bad:?}");
        }
    }

    fn within(value: f64, published: f64, exact_floor: Option<f64>) {
        let ok = (value - published).abs() <= 0.01 * published
            || (value < published && exact_floor.is_none_or(|f| value > f));
        assert!(ok, "{value} vs published {published}");
    }

    /// Values from Google's dp_accounting RDP accountant (add/remove-one, default orders).
    #[test]
    fn matches_published_values() {
        let eps = |a: &mut Accountant| a.epsilon(1e-5).unwrap().epsilon;
        let once = eps(Accountant::new().gaussian(1.0, 1).unwrap());
        within(once, 4.7285, Some(4.3772));
        assert!(
            once > 4.3772,
            "never below the exact analytic Gaussian value"
        );
        within(
            eps(Accountant::new().gaussian(2.0, 10).unwrap()),
            8.0794,
            None,
        );
        within(
            eps(Accountant::new().gaussian(4.0, 1000).unwrap()),
            67.4240,
            None,
        );
        within(
            eps(Accountant::new()
                .subsampled_gaussian(0.01, 1.0, 1000)
                .unwrap()),
            2.1014,
            None,
        );
    }

    #[test]
    fn zcdp_round_trip() {
        // Gaussian σ = 1 is ½-zCDP: the same curve as gaussian(1.0, 1).
        let a = Accountant::new().zcdp(0.5).unwrap().epsilon(1e-5).unwrap();
        let b = Accountant::new()
            .gaussian(1.0, 1)
            .unwrap()
            .epsilon(1e-5)
            .unwrap();
        assert!((a.epsilon - b.epsilon).abs() < 1e-12);
        for eps in [0.5, 1.0, 8.0] {
            let rho = rho_for_epsilon(eps, 1e-5).unwrap();
            let back = Accountant::new()
                .zcdp(rho)
                .unwrap()
                .epsilon(1e-5)
                .unwrap()
                .epsilon;
            assert!(back <= eps && back > eps * 0.999, "{eps}: {back}");
            // Never looser than the textbook ρ + 2√(ρ ln(1/δ)).
            assert!(rho + 2.0 * (rho * 1e5f64.ln()).sqrt() >= eps * 0.999);
        }
        assert!(rho_for_epsilon(0.0, 1e-5).is_err());
        assert!(rho_for_epsilon(1.0, 1.0).is_err());
    }

    #[test]
    fn composition_and_laplace() {
        let mut a = Accountant::new();
        a.laplace(2.0, 1.0, 3).unwrap();
        assert_eq!(a.epsilon(1e-5).unwrap().epsilon, 1.5);
        a.gaussian(1.0, 1).unwrap();
        let both = a.epsilon(1e-5).unwrap().epsilon;
        assert!((both - 1.5 - 4.7285).abs() < 0.001, "{both}");
        // More steps never cost less; a smaller sampling rate never costs more.
        let e = |q: f64, t: u64| {
            Accountant::new()
                .subsampled_gaussian(q, 1.0, t)
                .unwrap()
                .epsilon(1e-5)
                .unwrap()
                .epsilon
        };
        assert!(e(0.01, 2000) > e(0.01, 1000));
        assert!(e(0.005, 1000) < e(0.01, 1000));
        // q = 1 is the plain Gaussian.
        assert_eq!(
            e(1.0, 1),
            Accountant::new()
                .gaussian(1.0, 1)
                .unwrap()
                .epsilon(1e-5)
                .unwrap()
                .epsilon
        );
        assert!(Accountant::new().gaussian(0.0, 1).is_err());
        assert!(Accountant::new().subsampled_gaussian(1.5, 1.0, 1).is_err());
        assert!(Accountant::new().epsilon(0.0).is_err());
    }
}
