//! The paper's size and compute accounting (SCALING.md section 1), as pure functions.
//!
//! These are the reference's numbers, not our transformer's exact counts: N excludes the
//! embedding and the LM head, counts the MLP biases but not the attention biases, and does
//! not depend on the head count. `GiddConfig::num_params` and `flops_per_token` count our
//! model exactly; a sweep reports the paper's N and M so its fits compare with the paper.

/// Non-embedding parameters: per layer attention LN d, QKV 3d², out-proj d², QK-norm 2d,
/// MLP LN d and a 4×-wide MLP with biases 2·(4d² + 4d + d); plus the final LN d.
pub fn n_params(layers: usize, hidden: usize) -> f64 {
    let (l, d) = (layers as f64, hidden as f64);
    l * (12.0 * d * d + 14.0 * d) + d
}

/// Method 1 ("DeepSeek") FLOPs per token: 6N plus attention's 12·L·d·T.
pub fn flops_per_token(layers: usize, hidden: usize, seq: usize) -> f64 {
    6.0 * n_params(layers, hidden) + 12.0 * (layers * hidden) as f64 * seq as f64
}

/// Method 1 as the notebooks' planning cells wrote it: 72·L·d² + 12·L·d·T. It differs from
/// [`flops_per_token`] by 84·L·d + 6·d (under 0.1%); it is the form whose digits the printed
/// M of the 3B and 10B runs are.
pub fn flops_per_token_planning(layers: usize, hidden: usize, seq: usize) -> f64 {
    let (l, d, t) = (layers as f64, hidden as f64, seq as f64);
    72.0 * l * d * d + 12.0 * l * d * t
}

/// Method 2 ("Chinchilla") FLOPs per token: 6N.
pub fn flops_per_token_6n(layers: usize, hidden: usize) -> f64 {
    6.0 * n_params(layers, hidden)
}

/// Training compute C = M·D.
pub fn compute(flops_per_token: f64, tokens: f64) -> f64 {
    flops_per_token * tokens
}

/// The paper's sweep ladder (layers, hidden).
pub const LADDER: [(usize, usize); 5] = [(8, 512), (10, 640), (12, 768), (16, 1024), (20, 1536)];

/// Head count of the ladder: head_dim 64 up to d = 1024, head_dim 128 above.
pub fn heads_for(hidden: usize) -> usize {
    if hidden <= 1024 {
        (hidden / 64).max(1)
    } else {
        (hidden / 128).max(1)
    }
}

/// Constants of the scaled-up runs' sizing recipe: B_tok = coef·D^exp.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SizingRule {
    pub coef: f64,
    pub exp: f64,
    /// B (sequences) is rounded to a multiple of this (the micro-batch).
    pub batch_multiple: usize,
    /// S is rounded up to a multiple of this.
    pub step_multiple: usize,
}

impl SizingRule {
    /// The 3B runs' rule: micro-batch 512, steps in multiples of 500 (the 10B run used
    /// 1024 and 1000).
    pub const PAPER_3B: SizingRule = SizingRule {
        coef: 3.614098626e-3,
        exp: 0.8179,
        batch_multiple: 512,
        step_multiple: 500,
    };
}

/// (batch in sequences, steps) for a compute budget C with M FLOPs per token and rows of
/// T tokens: D = C/M, B = B_tok/T rounded to the nearest multiple (at least one multiple),
/// S = D/(B·T) rounded up.
pub fn size_run(budget: f64, flops_per_token: f64, seq: usize, rule: SizingRule) -> (usize, usize) {
    let tokens = budget / flops_per_token;
    let b_tok = rule.coef * tokens.powf(rule.exp);
    let m = rule.batch_multiple.max(1) as f64;
    let batch = (((b_tok / seq as f64) / m).round().max(1.0) * m) as usize;
    let k = rule.step_multiple.max(1) as f64;
    let steps = ((tokens / (batch * seq) as f64 / k).ceil() * k) as usize;
    (batch, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x` equals the printed `want` to its last digit: |x − want| ≤ half a unit of it.
    fn printed(x: f64, want: f64, unit: f64) {
        assert!(
            (x - want).abs() <= 0.5 * unit,
            "{x} vs printed {want} (unit {unit})"
        );
    }

    #[test]
    fn ladder_n_matches_the_paper() {
        let want = [25.22e6, 49.24e6, 85.06e6, 201.56e6, 566.66e6];
        for (&(l, d), &w) in LADDER.iter().zip(&want) {
            printed(n_params(l, d), w, 0.01e6);
        }
        assert_eq!(LADDER.map(|(_, d)| heads_for(d)), [8, 10, 12, 16, 12]);
    }

    /// The 3B/10B runs' N and M at T = 2048. The printed M (1.359e10, 1.434e10, 5.583e10)
    /// are the planning form 72·L·d² + 12·L·d·T to every digit; 6N + 12·L·d·T gives
    /// 1.359e10, 1.435e10, 5.584e10 (its extra 84·L·d + 6·d moves the last digit of two).
    #[test]
    fn scaled_up_runs_match_the_paper() {
        for &(l, d, h, n, m) in &[
            (18, 3072, 24, 2.039e9, 1.359e10),
            (19, 3072, 24, 2.152e9, 1.434e10),
            (34, 4608, 36, 8.666e9, 5.583e10),
        ] {
            assert_eq!(heads_for(d), h);
            printed(n_params(l, d), n, 0.001e9);
            printed(flops_per_token_planning(l, d, 2048), m, 0.001e10);
            let m1 = flops_per_token(l, d, 2048);
            assert!((m1 - m).abs() <= 1.5e7, "{m1} vs {m}");
            assert!((m1 / m - 1.0).abs() < 1e-3);
            assert_eq!(flops_per_token_6n(l, d), 6.0 * n_params(l, d));
        }
    }

    /// The sizing recipe gives the scaled-up runs' B and S (SCALING.md section 1).
    #[test]
    fn sizing_recipe_reproduces_the_runs() {
        let r3 = SizingRule::PAPER_3B;
        assert_eq!(size_run(1e21, 1.359e10, 2048, r3), (1536, 23_500));
        assert_eq!(size_run(1e21, 1.434e10, 2048, r3), (1536, 22_500));
        let r10 = SizingRule {
            batch_multiple: 1024,
            step_multiple: 1000,
            ..r3
        };
        assert_eq!(size_run(1e22, 5.583e10, 2048, r10), (3072, 29_000));
        assert_eq!(compute(2.0, 3.0), 6.0);
    }
}
