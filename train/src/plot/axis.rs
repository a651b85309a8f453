//! Axes: the data-to-axis transform (identity or log10), the axis range with a margin,
//! and the tick positions and labels. Ticks are chosen here, not by plotters, so that a
//! log axis is labelled at decades (1e3, 1e4, ...) rather than at arbitrary powers.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use std::ops::Range;

/// How an axis maps data values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scale {
    #[default]
    Linear,
    /// log10; values <= 0 cannot be shown and are skipped like NaN.
    Log,
}

/// At most this many ticks are labelled on one axis.
const MAX_TICKS: usize = 12;

impl Scale {
    /// The axis coordinate of a data value, or None when it cannot be drawn.
    pub(super) fn to_axis(self, v: f64) -> Option<f64> {
        let t = match self {
            Scale::Linear => v,
            Scale::Log if v > 0.0 => v.log10(),
            Scale::Log => return None,
        };
        t.is_finite().then_some(t)
    }
}

/// One axis: its range in axis coordinates (log10 of the data on a log axis) and ticks.
#[derive(Clone, Debug)]
pub(super) struct Axis {
    pub scale: Scale,
    pub lo: f64,
    pub hi: f64,
    /// Labelled ticks (axis coordinates).
    pub major: Vec<f64>,
    /// Unlabelled grid lines, e.g. 2..9 x 10^k on a log axis (axis coordinates).
    pub minor: Vec<f64>,
    /// Spacing of the labelled ticks in data units on a linear axis; sets the decimals.
    step: f64,
}

impl Axis {
    /// The axis over axis coordinates `ts` (already finite), widened by `margin` of the
    /// data's span at each end. No data gives 0..1 (linear) or 1..10 (log); a single
    /// value gives that value +- 1 (one decade on a log axis).
    pub fn new(scale: Scale, ts: impl Iterator<Item = f64>, margin: f64) -> Axis {
        let (lo, hi) = ts.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), t| {
            (a.min(t), b.max(t))
        });
        let (lo, hi) = if lo > hi {
            (0.0, 1.0)
        } else if lo == hi {
            (lo - 1.0, hi + 1.0)
        } else {
            // Half-spans keep the arithmetic finite for data near +-f64::MAX.
            let m = margin * (hi / 2.0 - lo / 2.0);
            (lo - 2.0 * m, hi + 2.0 * m)
        };
        // Only far outside f64's normal range (data at +-1e308): keep the range finite.
        let (lo, hi) = (lo.max(-f64::MAX), hi.min(f64::MAX));
        let (lo, hi) = if lo < hi { (lo, hi) } else { (0.0, 1.0) };
        let (major, minor, step) = match scale {
            Scale::Linear => {
                let (major, step) = linear_ticks(lo, hi);
                (major, Vec::new(), step)
            }
            Scale::Log => {
                let (major, minor) = log_ticks(lo, hi);
                (major, minor, 0.0)
            }
        };
        Axis {
            scale,
            lo,
            hi,
            major,
            minor,
            step,
        }
    }

    /// The label of the tick at axis coordinate `t`.
    pub fn label(&self, t: f64) -> String {
        match self.scale {
            Scale::Linear => fmt_linear(t, self.step, self.lo.abs().max(self.hi.abs())),
            Scale::Log => fmt_sig(10f64.powf(t)),
        }
    }
}

/// The axis as a plotters coordinate: linear in axis coordinates, with our ticks as the
/// bold (labelled) key points and the minor ticks as the light ones.
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, t: &f64, (a, b): (i32, i32)) -> i32 {
        // Half-values keep the arithmetic finite for ranges near +-f64::MAX; points lie
        // inside the range, and the clamp only guards the pixel arithmetic.
        let f = (t / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0);
        let f = if f.is_nan() { 0.5 } else { f.clamp(-1.0, 2.0) };
        a + ((b - a) as f64 * f).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// Ticks at multiples of a 1, 2, 2.5 or 5 x 10^k step: the smallest step giving at most
/// seven ticks in `lo..=hi` (so three to seven of them).
fn linear_ticks(lo: f64, hi: f64) -> (Vec<f64>, f64) {
    let raw = (hi / 7.0 - lo / 7.0).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let (a, b) = ((lo / step).ceil(), (hi / step).floor());
    if !(step.is_finite() && step > 0.0 && a <= b && b - a <= MAX_TICKS as f64) {
        return (vec![lo, hi], hi / 2.0 - lo / 2.0);
    }
    let ticks = (0..=(b - a) as usize)
        .map(|i| (a + i as f64) * step)
        .collect();
    (ticks, step)
}

/// Log ticks (axis coordinates = log10). Over two or more decades: the decades (every
/// k-th on wide axes), with m x 10^k (m = 2..9) as minor lines. Otherwise 1, 2 and 5
/// x 10^k if that gives three ticks, else linear ticks of the data values.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (d0, d1) = (lo.floor(), hi.ceil());
    if (d1 - d0).is_nan() || d1 - d0 > 400.0 {
        return (vec![lo, hi], Vec::new());
    }
    let decades: Vec<f64> = (0..=(d1 - d0) as usize).map(|i| d0 + i as f64).collect();
    let inside = |t: &f64| (lo..=hi).contains(t);
    let at = |ms: &[f64]| -> Vec<f64> {
        decades
            .iter()
            .flat_map(|d| ms.iter().map(move |m| d + m.log10()))
            .filter(inside)
            .collect()
    };
    let unlabelled = |all: Vec<f64>, major: &[f64]| -> Vec<f64> {
        all.into_iter()
            .filter(|t| !major.iter().any(|m| (m - t).abs() < 1e-9))
            .collect()
    };
    let mut major: Vec<f64> = decades.iter().copied().filter(inside).collect();
    if major.len() > MAX_TICKS {
        // Every k-th decade, and no minor lines (they would crowd the axis).
        let k = major.len().div_ceil(MAX_TICKS) as i64;
        major.retain(|d| (*d as i64).rem_euclid(k) == 0);
        return (major, Vec::new());
    }
    let minors = at(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if major.len() >= 2 {
        let minor = unlabelled(minors, &major);
        return (major, minor);
    }
    let major = at(&[1.0, 2.0, 5.0]);
    if major.len() >= 3 {
        let minor = unlabelled(minors, &major);
        return (major, minor);
    }
    let (lin, _) = linear_ticks(10f64.powf(lo), 10f64.powf(hi));
    let major = lin
        .into_iter()
        .filter_map(|v| Scale::Log.to_axis(v))
        .collect();
    (major, Vec::new())
}

/// A linear tick label: as many decimals as the step needs, or a mantissa and exponent
/// when the axis reaches 1e6 or stays below 1e-3.
fn fmt_linear(v: f64, step: f64, max_abs: f64) -> String {
    if v == 0.0 || step.is_nan() || step <= 0.0 {
        return fmt_sig(v);
    }
    let step_exp = step.log10().floor();
    // 2.5 x 10^k needs one more digit than 1, 2 or 5 x 10^k.
    let extra = if (step / 10f64.powf(step_exp) - 2.5).abs() < 1e-9 {
        1.0
    } else {
        0.0
    };
    let max_exp = max_abs.log10().floor();
    if !(-3.0..6.0).contains(&max_exp) {
        let digits = (max_exp - step_exp + extra).clamp(0.0, 6.0) as usize;
        return trim_exp(&format!("{v:.digits$e}"));
    }
    let decimals = (extra - step_exp).clamp(0.0, 12.0) as usize;
    format!("{v:.decimals$}")
}

/// `v` to three significant digits, as a plain number between 1e-3 and 1e5 and as
/// mantissa-exponent (`2.5e6`) outside.
pub(super) fn fmt_sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let e = v.abs().log10().floor();
    if !(-3.0..5.0).contains(&e) {
        return trim_exp(&format!("{v:.2e}"));
    }
    let decimals = (2.0 - e).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `2.50e6` -> `2.5e6`, `1.00e-5` -> `1e-5`.
fn trim_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{fmt_linear, fmt_sig, Axis, Scale};

    #[test]
    fn linear_ticks_are_round_and_inside() {
        let a = Axis::new(Scale::Linear, [0.3, 9.7].into_iter(), 0.0);
        assert_eq!(a.major, [2.0, 4.0, 6.0, 8.0]);
        let labels: Vec<String> = a.major.iter().map(|t| a.label(*t)).collect();
        assert_eq!(labels, ["2", "4", "6", "8"]);
        let steps = Axis::new(Scale::Linear, [-8.0, 408.0].into_iter(), 0.0);
        assert_eq!(steps.major, [0.0, 100.0, 200.0, 300.0, 400.0]);
        let b = Axis::new(Scale::Linear, [1.9, 2.15].into_iter(), 0.0);
        assert_eq!(b.label(b.major[0]), "1.90");
        assert_eq!(b.label(b.major[1]), "1.95");
        assert!(b.major.iter().all(|t| (1.9..=2.15).contains(t)));
    }

    #[test]
    fn log_ticks_are_decades_with_minor_lines() {
        let a = Axis::new(Scale::Log, [1e2f64, 1e6].iter().map(|v| v.log10()), 0.0);
        let labels: Vec<String> = a.major.iter().map(|t| a.label(*t)).collect();
        assert_eq!(labels, ["100", "1000", "10000", "1e5", "1e6"]);
        assert_eq!(a.minor.len(), 4 * 8);
        // Less than a decade: 2 and 5 x 10^k (and the decade) label the axis.
        let b = Axis::new(Scale::Log, [1.5f64, 30.0].iter().map(|v| v.log10()), 0.0);
        let labels: Vec<String> = b.major.iter().map(|t| b.label(*t)).collect();
        assert_eq!(labels, ["2", "5", "10", "20"]);
        // Within a factor of two or so: linear ticks of the values.
        let c = Axis::new(Scale::Log, [2.2f64, 3.3].iter().map(|v| v.log10()), 0.0);
        let labels: Vec<String> = c.major.iter().map(|t| c.label(*t)).collect();
        assert_eq!(labels, ["2.2", "2.4", "2.6", "2.8", "3", "3.2"]);
        // Many decades: every k-th, at most MAX_TICKS.
        let d = Axis::new(Scale::Log, [-100.0, 100.0].into_iter(), 0.0);
        assert!(
            (2..=super::MAX_TICKS).contains(&d.major.len()),
            "{:?}",
            d.major
        );
    }

    #[test]
    fn labels() {
        assert_eq!(fmt_sig(2.5e6), "2.5e6");
        assert_eq!(fmt_sig(1e-5), "1e-5");
        assert_eq!(fmt_sig(0.0123), "0.0123");
        assert_eq!(fmt_sig(12345.0), "12345");
        assert_eq!(fmt_linear(2e7, 1e7, 4e7), "2e7");
        assert_eq!(fmt_linear(0.25, 0.25, 1.0), "0.25");
    }

    #[test]
    fn degenerate_ranges_stay_finite() {
        for ts in [vec![], vec![3.0], vec![-f64::MAX, f64::MAX], vec![f64::MAX]] {
            for s in [Scale::Linear, Scale::Log] {
                let a = Axis::new(s, ts.iter().copied(), 0.04);
                assert!(
                    a.lo.is_finite() && a.hi.is_finite() && a.lo < a.hi,
                    "{ts:?}"
                );
                assert!(
                    a.major.len() <= 2 * super::MAX_TICKS,
                    "{ts:?} {:?}",
                    a.major
                );
                assert!(a.major.iter().all(|t| t.is_finite()));
            }
        }
    }
}
