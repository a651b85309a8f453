//! Fused ops on the CPU: thin adapters from graph values to `gidd_kernels`.

use super::elem::Arg;
use crate::host::Data;
use crate::op::AttnSpec;
use gidd_kernels::{attention as attn, gidd_loss, norm, rope, softmax};

fn f32_out(d: &mut Data) -> &mut Vec<f32> {
    match d {
        Data::F32(v) => v,
        _ => unreachable!("infer makes fused outputs f32"),
    }
}

pub fn softmax_fwd(log: bool, x: Arg, shape: &[usize], out: &mut Data) {
    let n = *shape.last().unwrap_or(&1);
    let total: usize = shape.iter().product();
    let rows = total.checked_div(n).unwrap_or(0);
    let xs = x.slice::<f32>(total);
    let o = &mut f32_out(out)[..total];
    if log {
        softmax::log_softmax_fwd(rows, n, &xs, o);
    } else {
        softmax::softmax_fwd(rows, n, &xs, o);
    }
}

pub fn softmax_bwd(y: Arg, dy: Arg, shape: &[usize], out: &mut Data) {
    let n = *shape.last().unwrap_or(&1);
    let total: usize = shape.iter().product();
    let rows = total.checked_div(n).unwrap_or(0);
    softmax::softmax_bwd(
        rows,
        n,
        &y.slice::<f32>(total),
        &dy.slice::<f32>(total),
        &mut f32_out(out)[..total],
    );
}

pub fn rms_norm_fwd(eps: f32, x: Arg, w: Arg, shape: &[usize], outs: &mut [Data]) {
    let n = *shape.last().unwrap_or(&1);
    let total: usize = shape.iter().product();
    let rows = total / n.max(1);
    let (y, rstd) = outs.split_at_mut(1);
    norm::rms_norm_fwd(
        rows,
        n,
        eps,
        &x.slice::<f32>(total),
        &w.slice::<f32>(n),
        &mut f32_out(&mut y[0])[..total],
        &mut f32_out(&mut rstd[0])[..rows],
    );
}

pub fn rms_norm_bwd(x: Arg, w: Arg, rstd: Arg, dy: Arg, shape: &[usize], outs: &mut [Data]) {
    let n = *shape.last().unwrap_or(&1);
    let total: usize = shape.iter().product();
    let rows = total / n.max(1);
    let (dx, dw) = outs.split_at_mut(1);
    norm::rms_norm_bwd(
        rows,
        n,
        &x.slice::<f32>(total),
        &w.slice::<f32>(n),
        &rstd.slice::<f32>(rows),
        &dy.slice::<f32>(total),
        &mut f32_out(&mut dx[0])[..total],
        &mut f32_out(&mut dw[0])[..n],
    );
}

pub fn rope_apply(backward: bool, x: Arg, cos: Arg, sin: Arg, shape: &[usize], out: &mut Data) {
    let (rows, heads, d) = (shape[0], shape[1], shape[2]);
    let total = rows * heads * d;
    let (c, s) = (
        cos.slice::<f32>(rows * d / 2),
        sin.slice::<f32>(rows * d / 2),
    );
    let o = &mut f32_out(out)[..total];
    if backward {
        rope::rope_bwd(rows, heads, d, &x.slice::<f32>(total), &c, &s, o);
    } else {
        rope::rope_fwd(rows, heads, d, &x.slice::<f32>(total), &c, &s, o);
    }
}

fn attn_shape(q: &[usize], k: &[usize]) -> attn::AttnShape {
    attn::AttnShape {
        batch: q[0],
        heads: q[1],
        lq: q[2],
        lk: k[2],
        head_dim: q[3],
    }
}

fn params(spec: &AttnSpec) -> attn::AttnParams {
    attn::AttnParams {
        scale: spec.scale,
        softcap: spec.softcap,
    }
}

pub fn attention_fwd(spec: &AttnSpec, ins: &[Arg], qs: &[usize], ks: &[usize], outs: &mut [Data]) {
    let sh = attn_shape(qs, ks);
    let (nq, nk) = (qs.iter().product::<usize>(), ks.iter().product::<usize>());
    let nm = sh.batch * sh.lq * sh.lk;
    let (o, lse) = outs.split_at_mut(1);
    attn::attention_fwd(
        &sh,
        &params(spec),
        &ins[0].slice::<f32>(nq),
        &ins[1].slice::<f32>(nk),
        &ins[2].slice::<f32>(nk),
        Some(&ins[3].slice::<u8>(nm)),
        &mut f32_out(&mut o[0])[..nq],
        &mut f32_out(&mut lse[0])[..sh.batch * sh.heads * sh.lq],
    );
}

pub fn attention_bwd(spec: &AttnSpec, ins: &[Arg], qs: &[usize], ks: &[usize], outs: &mut [Data]) {
    let sh = attn_shape(qs, ks);
    let (nq, nk) = (qs.iter().product::<usize>(), ks.iter().product::<usize>());
    let nm = sh.batch * sh.lq * sh.lk;
    let (dq, rest) = outs.split_at_mut(1);
    let (dk, dv) = rest.split_at_mut(1);
    attn::attention_bwd(
        &sh,
        &params(spec),
        &ins[0].slice::<f32>(nq),
        &ins[1].slice::<f32>(nk),
        &ins[2].slice::<f32>(nk),
        Some(&ins[3].slice::<u8>(nm)),
        &ins[4].slice::<f32>(nq),
        &ins[5].slice::<f32>(sh.batch * sh.heads * sh.lq),
        &ins[6].slice::<f32>(nq),
        &mut f32_out(&mut dq[0])[..nq],
        &mut f32_out(&mut dk[0])[..nk],
        &mut f32_out(&mut dv[0])[..nk],
    );
}

fn marginal(spec: &crate::op::MarginalSpec, v: usize) -> gidd_loss::Marginal {
    gidd_loss::Marginal {
        vocab: v,
        mask_id: spec.mask_id as usize,
        min_log_snr: spec.min_log_snr,
        max_log_snr: spec.max_log_snr,
        scale: spec.scale,
        shift: spec.shift,
    }
}

fn ids(a: &Arg, n: usize) -> Vec<i64> {
    match a {
        Arg::Data(d) => (0..n).map(|i| d.get_f64(i) as i64).collect(),
        Arg::Splat(x, _) => vec![*x as i64; n],
    }
}

pub fn diffusion_kl(
    spec: &crate::op::MarginalSpec,
    ins: &[Arg],
    shape: &[usize],
    outs: &mut [Data],
) {
    let v = *shape.last().unwrap_or(&1);
    let rows: usize = shape[..shape.len() - 1].iter().product();
    let (kl, rest) = outs.split_at_mut(1);
    let (lpz, lqz) = rest.split_at_mut(1);
    gidd_loss::forward(
        &marginal(spec, v),
        &ins[0].slice::<f32>(rows * v),
        &ids(&ins[1], rows),
        &ids(&ins[2], rows),
        &ins[3].slice::<f32>(rows),
        &mut f32_out(&mut kl[0])[..rows],
        &mut f32_out(&mut lpz[0])[..rows],
        &mut f32_out(&mut lqz[0])[..rows],
    );
}

pub fn diffusion_kl_bwd(
    spec: &crate::op::MarginalSpec,
    ins: &[Arg],
    shape: &[usize],
    out: &mut Data,
) {
    let v = *shape.last().unwrap_or(&1);
    let rows: usize = shape[..shape.len() - 1].iter().product();
    gidd_loss::backward(
        &marginal(spec, v),
        &ins[0].slice::<f32>(rows * v),
        &ids(&ins[1], rows),
        &ids(&ins[2], rows),
        &ins[3].slice::<f32>(rows),
        &ins[4].slice::<f32>(rows),
        &ins[5].slice::<f32>(rows),
        &mut f32_out(out)[..rows * v],
    );
}

/// The fused sampling step (`gidd_kernels::sample::step`); refuses ids outside the vocabulary.
pub fn sample_step(
    spec: &crate::op::SampleSpec,
    ins: &[Arg],
    shape: &[usize],
    out: &mut Data,
) -> crate::error::Result<()> {
    let (r, v) = (shape[0], shape[1]);
    let rows = ins[1].slice::<i32>(r * 4);
    if let Some(z) = rows
        .chunks(4)
        .map(|c| c[0])
        .find(|&z| z < 0 || z as usize >= v)
    {
        return Err(crate::error::Error::Msg(format!(
            "sample_step: current token {z} is outside the vocabulary of {v}"
        )));
    }
    let Data::I32(o) = out else {
        unreachable!("infer makes sample_step's output i32")
    };
    gidd_kernels::sample::step(spec, v, &ins[0].slice::<f32>(r * v), &rows, &mut o[..r * 3]);
    Ok(())
}
