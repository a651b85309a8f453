use super::*;
use rand::{Rng, SeedableRng};

fn rng(salt: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(std::process::id() as u64 ^ salt)
}

/// Uniforms on the 2^-53 grid survive the two-word packing bit for bit.
#[test]
fn packed_uniforms_round_trip() {
    let mut r = rng(1);
    let top = 1.0 - f64::EPSILON / 2.0;
    let mut us = vec![0.0, top, 0.5, f64::EPSILON / 2.0];
    us.extend((0..10_000).map(|_| (r.random::<u64>() >> 11) as f64 / (1u64 << 53) as f64));
    for u in us {
        let [hi, lo] = pack_uniform(u);
        assert!(hi >= 0 && lo >= 0, "u {u}: words {hi} {lo}");
        assert_eq!(unpack_uniform(hi, lo).to_bits(), u.to_bits(), "u {u}");
    }
}

fn posterior(r: &mut impl Rng, mask_id: usize, v: usize) -> Posterior {
    let lt: f64 = r.random_range(-4.0..4.0);
    let ls = lt + r.random_range(0.05..3.0);
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let masked = r.random_bool(0.5);
    let pi = |l: f64| {
        let a = if masked { 0.0 } else { sig(l) as f32 };
        [a / (v as f32 - 1.0), 1.0 - a]
    };
    Posterior {
        a_t: sig(lt),
        a_s: sig(ls),
        pi_t: pi(lt),
        pi_s: pi(ls),
        mask_id,
    }
}

/// The rows layout of [`step`]: each output row is [`step_row`] of its input row, the
/// banned id is never drawn, and scores come back bit for bit.
#[test]
fn step_is_step_row_per_row() {
    let mut r = rng(2);
    for case in 0..40 {
        let v = [5, 7, 33, 129, 1001][case % 5];
        let n = 1 + r.random_range(0..9);
        let mask_id = r.random_range(0..v);
        let logits: Vec<f32> = (0..n * v)
            .map(|_| match r.random_range(0..10) {
                0 => f32::NEG_INFINITY,
                1 => 2.0, // ties
                _ => r.random_range(-6.0..6.0),
            })
            .collect();
        let s = Step {
            mask_id,
            temperature: [0.0, 0.5, 1.0, 1.7][case % 4],
            top_k: [None, Some(1), Some(3), Some(v)][(case / 4) % 4],
            top_p: [None, Some(0.0), Some(0.3), Some(0.999), Some(1.0)][case % 5],
            mode: if case % 2 == 0 {
                Mode::Adaptive
            } else {
                Mode::Ancestral(posterior(&mut r, mask_id, v))
            },
        };
        let mut rows = vec![];
        let mut want = vec![];
        for i in 0..n {
            let z = r.random_range(0..v);
            let ban = if r.random_bool(0.5) {
                -1
            } else {
                r.random_range(0..v) as i32
            };
            let [hi, lo] = pack_uniform((r.random::<u64>() >> 11) as f64 / (1u64 << 53) as f64);
            rows.extend([z as i32, ban, hi, lo]);
            let u = unpack_uniform(hi, lo);
            let b = usize::try_from(ban).ok();
            want.push(step_row(&s, &logits[i * v..(i + 1) * v], z, b, u));
        }
        let mut out = vec![0; n * 3];
        step(&s, v, &logits, &rows, &mut out);
        for i in 0..n {
            let o = &out[i * 3..i * 3 + 3];
            assert_eq!(o[0] as usize, want[i].0, "case {case} row {i}");
            assert_eq!(
                score_of(o).to_bits(),
                want[i].1.to_bits(),
                "case {case} row {i}"
            );
            let (z, ban) = (rows[i * 4] as usize, rows[i * 4 + 1]);
            // (the ancestral posterior puts pi's mass on every id, banned or not)
            let _ = z;
            if s.mode == Mode::Adaptive && logits[i * v..(i + 1) * v].iter().any(|x| x.is_finite())
            {
                assert_ne!(o[0], ban, "case {case} row {i}: the banned id was drawn");
            }
        }
    }
}

/// Temperature 0 and a tiny top-p pick the first of tied maxima (top-k 1 keeps them all);
/// -inf logits and the mask are never drawn.
#[test]
fn edge_values() {
    let s = |t: f64, k: Option<usize>, p: Option<f64>| Step {
        mask_id: 0,
        temperature: t,
        top_k: k,
        top_p: p,
        mode: Mode::Adaptive,
    };
    let row = [9.0, 1.0, 3.0, f32::NEG_INFINITY, 3.0, 2.0];
    for u in [0.0, 0.3, 0.999_999] {
        assert_eq!(step_row(&s(0.0, None, None), &row, 1, None, u).0, 2);
        assert!([2, 4].contains(&step_row(&s(1.0, Some(1), None), &row, 1, None, u).0));
        assert_eq!(step_row(&s(1.0, None, Some(1e-9)), &row, 1, None, u).0, 2);
        // banning the maximum moves the argmax to its tie partner
        assert_eq!(step_row(&s(0.0, None, None), &row, 1, Some(2), u).0, 4);
        let t = step_row(&s(2.0, None, None), &row, 1, None, u).0;
        assert!(t != 0 && t != 3, "u {u}: drew {t}");
    }
    // top-k 1 and 2 over tied maxima keep both and nothing else
    let mut seen = [0; 6];
    for i in 0..1000 {
        let k = Some(1 + i % 2);
        seen[step_row(&s(1.0, k, None), &row, 1, None, i as f64 / 1000.0).0] += 1;
    }
    assert!(
        seen[2] > 400 && seen[4] > 400 && seen[2] + seen[4] == 1000,
        "{seen:?}"
    );
    // score: max x_hat - x_hat[z] is 0 at an argmax and the max itself at the mask
    let (_, sc) = step_row(&s(1.0, None, None), &[0.0, 1.0, 1.0], 1, None, 0.5);
    assert_eq!(sc, 0.0);
    let (_, sc) = step_row(&s(1.0, None, None), &[0.0, 1.0, 1.0], 0, None, 0.5);
    assert_eq!(sc, 0.5);
}
