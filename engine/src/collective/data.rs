//! Typed buffer arithmetic the collectives share: concatenation, slicing and the
//! rank-order sum.

use super::{CollectiveError, Result};
use crate::host::Data;
use half::{bf16, f16};

/// Applies `$body` to the vector inside a `Data`, rebuilding the same variant.
macro_rules! map_data {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            Data::F32($v) => Data::F32($body),
            Data::F64($v) => Data::F64($body),
            Data::BF16($v) => Data::BF16($body),
            Data::F16($v) => Data::F16($body),
            Data::I32($v) => Data::I32($body),
            Data::U32($v) => Data::U32($body),
            Data::I64($v) => Data::I64($body),
            Data::Bool($v) => Data::Bool($body),
            // callers materialize mapped storage first
            Data::Mapped(m) => Data::Mapped(m.clone()),
        }
    };
}

/// Elements [start, start + len) of `d`.
pub fn slice(d: &Data, start: usize, len: usize) -> Data {
    let d = d.materialize();
    map_data!(&*d, v => v[start..start + len].to_vec())
}

/// `parts` end to end; all must share one dtype (checked by the caller).
pub fn concat(parts: &[&Data], op: &'static str) -> Result<Data> {
    let Some(first) = parts.first() else {
        return Err(CollectiveError::Invalid {
            op,
            msg: "no parts to concatenate".into(),
        });
    };
    let mut out = slice(first, 0, 0);
    for p in parts {
        match (&mut out, &*p.materialize()) {
            (Data::F32(o), Data::F32(v)) => o.extend_from_slice(v),
            (Data::F64(o), Data::F64(v)) => o.extend_from_slice(v),
            (Data::BF16(o), Data::BF16(v)) => o.extend_from_slice(v),
            (Data::F16(o), Data::F16(v)) => o.extend_from_slice(v),
            (Data::I32(o), Data::I32(v)) => o.extend_from_slice(v),
            (Data::U32(o), Data::U32(v)) => o.extend_from_slice(v),
            (Data::I64(o), Data::I64(v)) => o.extend_from_slice(v),
            (Data::Bool(o), Data::Bool(v)) => o.extend_from_slice(v),
            (o, v) => {
                return Err(CollectiveError::Mismatch {
                    op,
                    msg: format!("dtypes {:?} and {:?}", o.dtype(), v.dtype()),
                })
            }
        }
    }
    Ok(out)
}

/// The elementwise sum of `len` elements starting at `start` of every part, added in the
/// order of `parts` (rank order): part 0 + part 1 + ... . bf16 accumulates in f32 and is
/// rounded once; integers wrap.
pub fn sum_in_order(parts: &[&Data], start: usize, len: usize, op: &'static str) -> Result<Data> {
    let Some(first) = parts.first() else {
        return Err(CollectiveError::Invalid {
            op,
            msg: "no parts to sum".into(),
        });
    };
    let owned: Vec<std::borrow::Cow<Data>> = parts.iter().map(|p| p.materialize()).collect();
    let parts: Vec<&Data> = owned.iter().map(|p| &**p).collect();
    let parts = &parts[..]; // read by `sum!`
    macro_rules! sum {
        ($var:ident, $zero:expr, $add:expr) => {{
            let mut acc = vec![$zero; len];
            for p in parts {
                let Data::$var(v) = p else {
                    return Err(CollectiveError::Mismatch {
                        op,
                        msg: format!("dtypes {:?} and {:?}", first.dtype(), p.dtype()),
                    });
                };
                for (a, &x) in acc.iter_mut().zip(&v[start..start + len]) {
                    *a = $add(*a, x);
                }
            }
            acc
        }};
    }
    Ok(match &*first.materialize() {
        Data::F32(_) => Data::F32(sum!(F32, 0f32, |a: f32, x: f32| a + x)),
        Data::F64(_) => Data::F64(sum!(F64, 0f64, |a: f64, x: f64| a + x)),
        Data::BF16(_) => {
            let acc = sum!(BF16, 0f32, |a: f32, x: bf16| a + x.to_f32());
            Data::BF16(acc.into_iter().map(bf16::from_f32).collect())
        }
        Data::F16(_) => {
            let acc = sum!(F16, 0f32, |a: f32, x: f16| a + x.to_f32());
            Data::F16(acc.into_iter().map(f16::from_f32).collect())
        }
        Data::I32(_) => Data::I32(sum!(I32, 0i32, |a: i32, x: i32| a.wrapping_add(x))),
        Data::U32(_) => Data::U32(sum!(U32, 0u32, |a: u32, x: u32| a.wrapping_add(x))),
        Data::I64(_) => Data::I64(sum!(I64, 0i64, |a: i64, x: i64| a.wrapping_add(x))),
        Data::Bool(_) => {
            return Err(CollectiveError::Invalid {
                op,
                msg: "bool buffers cannot be summed".into(),
            })
        }
        Data::Mapped(_) => {
            return Err(CollectiveError::Invalid {
                op,
                msg: "internal: mapped storage was not materialized".into(),
            })
        }
    })
}
