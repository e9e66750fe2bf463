//! The statistics of an account-randomized experiment: Welch's t-test, the delta method for a relative lift and
//! for a ratio metric, a chi-square sample-ratio-mismatch test, and the sample size for a minimum detectable
//! effect.
//!
//! Hand-written, not a crate: what is needed is three special functions (log-gamma, the regularized incomplete
//! beta and gamma functions) and a few formulas; `statrs` would bring `nalgebra` and minutes of build on two cores
//! for them. The special functions follow the standard numerical recipes (Lanczos; continued fractions by the
//! modified Lentz method; the gamma series) and are checked against SciPy's values
//! (`tests/fixtures/stats/`), as are the tests built on them.

/// z for a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;
/// z for 80% power.
pub const Z_80: f64 = 0.841_621_233_572_914_3;

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error below 1e-15 over the range used here).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=1000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b).
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// The regularized upper incomplete gamma function Q(s, x).
pub fn gamma_q(s: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_front = -x + s * x.ln() - ln_gamma(s);
    if x < s + 1.0 {
        // Series for P, then Q = 1 − P.
        let mut sum = 1.0 / s;
        let mut term = sum;
        let mut ap = s;
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        1.0 - sum * ln_front.exp()
    } else {
        // Continued fraction for Q (modified Lentz).
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - s;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - s);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-16 {
                break;
            }
        }
        ln_front.exp() * h
    }
}

/// Two-sided p-value of Student's t with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return if t.is_nan() { f64::NAN } else { 0.0 };
    }
    beta_inc(df / 2.0, 0.5, df / (df + t * t))
}

/// Upper tail of the chi-square distribution with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

/// Count, mean and sample variance (n − 1) of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    pub var: f64,
}

impl Moments {
    pub fn of(xs: &[f64]) -> Moments {
        let n = xs.len() as f64;
        if xs.is_empty() {
            return Moments::default();
        }
        let mean = xs.iter().sum::<f64>() / n;
        let var = if xs.len() > 1 {
            xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Moments { n, mean, var }
    }
}

/// Welch's unequal-variances t-test of treatment against control: (t, degrees of freedom, two-sided p).
/// `None` when it is undefined (an arm with fewer than two units, or no variance in either).
pub fn welch(control: Moments, treatment: Moments) -> Option<(f64, f64, f64)> {
    if control.n < 2.0 || treatment.n < 2.0 {
        return None;
    }
    let (vc, vt) = (control.var / control.n, treatment.var / treatment.n);
    let se2 = vc + vt;
    if se2 <= 0.0 {
        return None;
    }
    let t = (treatment.mean - control.mean) / se2.sqrt();
    let df = se2 * se2 / (vc * vc / (control.n - 1.0) + vt * vt / (treatment.n - 1.0));
    Some((t, df, t_two_sided_p(t, df)))
}

/// The relative lift treatment / control − 1 and its 95% interval by the delta method (the means treated as
/// independent, their variances those of the means). `None` when the control mean is zero.
pub fn relative_lift(control: Moments, treatment: Moments) -> Option<(f64, f64, f64)> {
    if control.mean <= 0.0 || control.n < 1.0 || treatment.n < 1.0 {
        return None;
    }
    let (mc, mt) = (control.mean, treatment.mean);
    let lift = mt / mc - 1.0;
    let var = treatment.var / treatment.n / (mc * mc)
        + mt * mt * control.var / control.n / (mc * mc * mc * mc);
    let half = Z_95 * var.sqrt();
    Some((lift, lift - half, lift + half))
}

/// A ratio metric over units (conversions per exposure, each unit an account): the ratio of sums and the variance
/// of that ratio by the delta method over units — never treating the visits as independent.
pub fn ratio(numerators: &[f64], denominators: &[f64]) -> Option<(f64, f64)> {
    let n = numerators.len();
    if n < 2 || n != denominators.len() {
        return None;
    }
    let y = Moments::of(numerators);
    let x = Moments::of(denominators);
    if x.mean <= 0.0 {
        return None;
    }
    let cov = numerators
        .iter()
        .zip(denominators)
        .map(|(a, b)| (a - y.mean) * (b - x.mean))
        .sum::<f64>()
        / (n as f64 - 1.0);
    let r = y.mean / x.mean;
    let var = (y.var - 2.0 * r * cov + r * r * x.var) / (n as f64 * x.mean * x.mean);
    Some((r, var.max(0.0)))
}

/// Sample-ratio mismatch: the chi-square goodness-of-fit p-value of the observed unit counts per arm against the
/// expected shares.
pub fn srm_p(observed: &[f64], expected_share: &[f64]) -> f64 {
    let total: f64 = observed.iter().sum();
    if total <= 0.0 || observed.len() != expected_share.len() || observed.len() < 2 {
        return 1.0;
    }
    let x2: f64 = observed
        .iter()
        .zip(expected_share)
        .map(|(o, s)| {
            let e = total * s;
            if e > 0.0 {
                (o - e) * (o - e) / e
            } else {
                0.0
            }
        })
        .sum();
    chi2_sf(x2, (observed.len() - 1) as f64)
}

/// Units per arm needed to detect a relative lift of `mde` on a conversion rate `p` (two-sided α = 0.05, 80%
/// power, equal arms; with a `control` share ≠ 0.5 the control arm needs `n × 0.5 / control`, and so on).
pub fn units_needed(p: f64, mde: f64) -> Option<u64> {
    if !(p > 0.0 && p < 1.0) || mde <= 0.0 {
        return None;
    }
    let p2 = (p * (1.0 + mde)).min(1.0 - 1e-9);
    let delta = p2 - p;
    let var = p * (1.0 - p) + p2 * (1.0 - p2);
    let n = (Z_95 + Z_80).powi(2) * var / (delta * delta);
    Some(n.ceil() as u64)
}
