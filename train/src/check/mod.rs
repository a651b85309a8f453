//! `gidd check --backend B`: the op conformance suite built into the binary, so that
//! "does gidd work on this device" needs no test binaries.
//!
//! Every op kind of the engine runs on seeded random inputs with awkward shapes (1, odd,
//! just past a SIMD width), and on edge values (±0, ±inf, NaN, rounding ties) where the
//! result is defined:
//! - float checks ([`float`], the list in [`cases`]): each op is one small program built at
//!   f32, bf16 and f64, with the gradients of a random-weighted sum of its outputs
//!   (`loss = sum_i sum(y_i * r_i)`, [`gidd_engine::grad`]) as extra outputs. The reference
//!   is the cpu executor running the same program built at f64 on the same input values
//!   (the *f64 twin*): the cpu runs f64 programs with every fused op decomposed into
//!   primitives and every primitive in f64, so for `--backend cpu` this compares its f32
//!   fused kernels with their decompositions and its f32/bf16 primitives with its f64 ones,
//!   not the executor with itself. Only the f64 rows of `--backend cpu` are a self-comparison
//!   (they pass with error 0: they check that f64 programs run).
//! - exact checks ([`exact`]): integer and bit ops, comparisons, conversions between every
//!   pair of dtypes, iota and the counter-based random draws, against values computed on
//!   the host; the result must be bit-equal.
//! - golden quantities ([`golden`]): the audit of `tests/golden/mask-small` (logits, loss
//!   terms, gradients) through [`crate::audit`], when that directory is found.
//!
//! Each row reports the max abs error, the relative L2 error and the tolerance
//! ([`tol`]). f64 rows are UNSUPPORTED (not failed) where the executor's `load` refuses
//! f64 programs.

mod cases;
mod exact;
mod float;
mod golden;
pub mod ptx;
#[cfg(test)]
mod tests;

use gidd_engine::{DType, Executor, HostTensor};
use std::path::PathBuf;
use std::time::Instant;

/// `gidd check` flags besides the backend's.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(rename_all = "snake_case")]
pub struct CheckArgs {
    /// Seed of every shape and value drawn; another seed draws other shapes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The golden case audited at the end (a directory with config.json, model.safetensors
    /// and golden.safetensors); default: tests/golden/mask-small of the workspace the
    /// binary or the current directory sits in, skipped with a note when there is none.
    #[arg(long)]
    pub golden: Option<PathBuf>,
    /// One variant per op (fewer dot_general layouts, attention masks and loss shifts).
    #[arg(long)]
    pub quick: bool,
    /// Write every PTX module of the cuda executor into DIR (the hand-written ones and the
    /// elementwise-chain kernels generated for the tiny model's programs) and exit, so
    /// anyone can assemble them with ptxas; no device is needed.
    #[arg(long = "dump-ptx", alias = "dump_ptx", value_name = "DIR")]
    pub dump_ptx: Option<PathBuf>,
    #[command(flatten)]
    pub exec: crate::backend::BackendArgs,
}

/// Named tolerances: the relative L2 error a result may have against its reference.
pub mod tol {
    use gidd_engine::DType;

    /// (forward, gradient) bars against the f64 twin for a program at `dt`.
    /// - f32: a few ulps (6e-8) per op, compounded over the short chains of one op and its
    ///   backward (the engine's op tests use the same bars against their f64 interpreter);
    /// - bf16: one rounding to 8 bits is 2^-9 = 2e-3 relative per element, and the forward
    ///   rounds once or twice. The backward also rounds its cotangent (the weights r cast
    ///   to bf16) and every intermediate of the bf16 chain, and sums that cancel amplify
    ///   those roundings: over 400 seeds on the cpu, at most 8.6e-3 forward and 3.0e-2
    ///   backward (div's gradient for a divisor broadcast over 7 rows) where [`floor`] does
    ///   not apply, up to 1.0 where it does (a 1x1 broadcast's gradient, 8 rounded
    ///   cotangents summing to 0.01);
    /// - f16: the same chains rounded to 11 bits instead of 8, so bf16's bars over 2^3
    ///   (eps 2^-11 = 4.9e-4 against 2^-8), rounded up: 2e-3 forward, 7e-3 backward;
    /// - f64: both sides compute in f64 and differ only in summation order and libm.
    pub fn rounded(dt: DType) -> (f64, f64) {
        match dt {
            DType::BF16 => (1e-2, 5e-2),
            DType::F16 => (2e-3, 7e-3),
            DType::F64 => (1e-12, 1e-10),
            _ => (1e-5, 1e-4),
        }
    }

    /// Absolute error, relative to max(1, the reference's largest magnitude), below which
    /// a result passes whatever its relative error: a value that cancels to (nearly) 0
    /// keeps the rounding of the terms it cancelled, which are of the inputs' size (inputs
    /// and weights are drawn of magnitude 1 to 4). Measured worst cases that need it: f32
    /// rms_norm over one element (its gradient is 0 up to eps), 1.6e-6; bf16 gradients of
    /// 1x1 tensors, up to 1.7e-2 x their scale; f16 the same over 2^3.
    pub fn floor(dt: DType) -> f64 {
        match dt {
            DType::BF16 => 1e-2,
            DType::F16 => 2e-3,
            DType::F64 => 1e-12,
            _ => 1e-5,
        }
    }
}

/// The verdict of one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// The executor refused the program (f64 where it has no f64 path).
    Unsupported,
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub op: String,
    /// fwd (outputs on random inputs), edge (outputs on edge values), grad (gradients),
    /// exact (bit-equal to the host), golden (an audit quantity)
    pub value: &'static str,
    pub dtype: String,
    pub shape: String,
    pub max_abs: f64,
    pub rel: f64,
    pub tol: f64,
    /// The fraction of its tolerance the row used: 0 for a bit-equal result, above 1 for a
    /// failure (the table's last lines list the passing rows closest to 1).
    pub margin: f64,
    pub status: Status,
    pub note: String,
}

impl Row {
    fn unsupported(op: &str, value: &'static str, dtype: String, shape: String, why: &str) -> Row {
        Row {
            op: op.to_string(),
            value,
            dtype,
            shape,
            max_abs: f64::NAN,
            rel: f64::NAN,
            tol: f64::NAN,
            margin: f64::NAN,
            status: Status::Unsupported,
            note: first_line(why),
        }
    }
    fn failed(op: &str, value: &'static str, dtype: String, shape: String, why: &str) -> Row {
        Row {
            status: Status::Fail,
            ..Row::unsupported(op, value, dtype, shape, why)
        }
    }
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > 100 {
        format!("{}...", l.chars().take(97).collect::<String>())
    } else {
        l.to_string()
    }
}

/// Errors of `got` against `want`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Errors {
    pub max_abs: f64,
    /// ||got - want|| / ||want|| over the finite elements (0 where both are 0)
    pub rel: f64,
    /// The largest finite |want|.
    pub scale: f64,
    /// A NaN or infinity where the other side has none (or the other sign), or a length
    /// mismatch: fails whatever the tolerance.
    pub mismatch: bool,
}

impl Errors {
    pub fn of(got: &[f64], want: &[f64]) -> Errors {
        let mut num = 0.0;
        let mut den = 0.0;
        let mut max_abs: f64 = 0.0;
        let mut scale: f64 = 0.0;
        let mut mismatch = got.len() != want.len();
        for (&a, &b) in got.iter().zip(want) {
            if a.is_finite() && b.is_finite() {
                num += (a - b) * (a - b);
                den += b * b;
                max_abs = max_abs.max((a - b).abs());
                scale = scale.max(b.abs());
            } else if !(a == b || (a.is_nan() && b.is_nan())) {
                mismatch = true;
            }
        }
        let rel = if num == 0.0 {
            0.0
        } else if den > 0.0 {
            (num / den).sqrt()
        } else {
            f64::INFINITY
        };
        Errors {
            max_abs,
            rel,
            scale,
            mismatch,
        }
    }

    /// Within `tol` relative L2 error, or `floor` x max(1, scale) absolute ([`tol::floor`]);
    /// tol 0 asks bit-equality.
    pub fn pass(&self, tol: f64, floor: f64) -> bool {
        if self.mismatch {
            return false;
        }
        if tol == 0.0 {
            return self.max_abs == 0.0;
        }
        self.rel <= tol || self.below_floor(floor)
    }

    /// Within the absolute floor.
    pub fn below_floor(&self, floor: f64) -> bool {
        self.max_abs <= floor * self.scale.max(1.0)
    }
}

/// Shapes as the table prints them: `3x17x23 [17]`.
fn shape_str(shapes: &[&[usize]]) -> String {
    shapes
        .iter()
        .map(|s| {
            if s.is_empty() {
                "()".to_string()
            } else {
                s.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `prog` on `exec` once with host inputs: Err(true, why) where `load` refused it,
/// Err(false, why) where anything after failed.
fn run_on<E: Executor>(
    exec: &E,
    prog: &gidd_engine::Program,
    inputs: &[HostTensor],
) -> Result<Vec<HostTensor>, (bool, String)> {
    let mut lp = exec.load(prog).map_err(|e| (true, e.to_string()))?;
    let mut run = || -> gidd_engine::Result<Vec<HostTensor>> {
        let dev = inputs
            .iter()
            .map(|t| exec.upload(t))
            .collect::<gidd_engine::Result<Vec<_>>>()?;
        let refs: Vec<&E::Buffer> = dev.iter().collect();
        let out = exec.run(&mut lp, &refs)?;
        out.iter().map(|b| exec.download(b)).collect()
    };
    run().map_err(|e| (false, e.to_string()))
}

/// The dtypes float checks run in.
pub const FLOAT_DTYPES: [DType; 4] = [DType::F32, DType::BF16, DType::F16, DType::F64];

/// Runs every check on `exec`, handing each row to `sink` as it is done (the table prints
/// while the suite runs); returns all rows.
pub fn run<E: Executor + Clone>(
    exec: &E,
    a: &CheckArgs,
    sink: &mut dyn FnMut(&Row),
) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    let mut push = |r: Row, rows: &mut Vec<Row>| {
        sink(&r);
        rows.push(r);
    };
    let mut rng = gidd_engine::rng::HostRng::new(a.seed);
    for case in cases::float_cases(&mut rng, a.quick) {
        for dt in FLOAT_DTYPES {
            for r in float::check(exec, &case, dt) {
                push(r, &mut rows);
            }
        }
    }
    for case in exact::exact_cases(&mut rng) {
        for r in exact::check(exec, &case) {
            push(r, &mut rows);
        }
    }
    match golden::find(a.golden.as_deref()) {
        Some(dir) => {
            for r in golden::rows(exec, &dir)? {
                push(r, &mut rows);
            }
        }
        None => eprintln!(
            "golden audit skipped: no tests/golden/mask-small beside the binary or the current directory (--golden DIR)"
        ),
    }
    Ok(rows)
}

/// The table's header line.
pub fn header() -> String {
    format!(
        "{:<30} {:<5} {:<9} {:<24} {:>11} {:>10} {:>8}  result",
        "op", "value", "dtype", "shape", "max abs err", "rel err", "tol"
    )
}

/// One table line.
pub fn format_row(r: &Row) -> String {
    let num = |x: f64, w: usize| {
        if x.is_nan() {
            format!("{:>w$}", "-")
        } else {
            format!("{x:>w$.2e}")
        }
    };
    let tol = if r.tol == 0.0 {
        format!("{:>8}", "exact")
    } else if r.tol.is_nan() {
        format!("{:>8}", "-")
    } else {
        format!("{:>8.0e}", r.tol)
    };
    let status = match r.status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Unsupported => "UNSUPPORTED",
    };
    let mut s = format!(
        "{:<30} {:<5} {:<9} {:<24} {} {} {}  {status}",
        r.op,
        r.value,
        r.dtype,
        r.shape,
        num(r.max_abs, 11),
        num(r.rel, 10),
        tol
    );
    if !r.note.is_empty() {
        s += &format!(" ({})", r.note);
    }
    s
}

/// `N passed, M failed, K unsupported`.
pub fn summary(rows: &[Row]) -> (usize, usize, usize) {
    let n = |s: Status| rows.iter().filter(|r| r.status == s).count();
    (n(Status::Pass), n(Status::Fail), n(Status::Unsupported))
}

/// `gidd check`: prints the table, the rows that were furthest from their tolerance, and
/// the summary; Err when any row failed.
pub fn main(a: &CheckArgs) -> anyhow::Result<()> {
    if let Some(dir) = &a.dump_ptx {
        return ptx::main(dir);
    }
    if a.exec.devices != 1 {
        anyhow::bail!("gidd check runs on one device (--devices 1)");
    }
    let t0 = Instant::now();
    let rows = crate::with_executor!(a.exec.open("checking")?, e => {
        let name = e.name();
        println!("gidd check: {name}; seed {} (--seed {} replays this run)", a.seed, a.seed);
        println!(
            "reference: the cpu executor on each program's f64 twin (fwd, edge, grad rows), host values (exact rows), the reference's outputs (golden rows){}",
            if name.starts_with("cpu") {
                "; here the f64 rows compare the cpu with itself"
            } else {
                ""
            }
        );
        println!("{}", header());
        run(&e, a, &mut |r| println!("{}", format_row(r)))?
    });
    let (pass, fail, unsup) = summary(&rows);
    let mut worst: Vec<&Row> = rows.iter().filter(|r| r.status == Status::Pass).collect();
    worst.sort_by(|x, y| y.margin.total_cmp(&x.margin));
    println!("\npassing rows closest to their tolerance:");
    for r in worst.iter().take(5) {
        println!("{}", format_row(r));
    }
    for r in rows.iter().filter(|r| r.status == Status::Fail) {
        eprintln!("FAILED: {}", format_row(r));
    }
    println!(
        "{pass} passed, {fail} failed, {unsup} unsupported ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    if fail > 0 {
        anyhow::bail!("gidd check: {fail} checks failed");
    }
    Ok(())
}
