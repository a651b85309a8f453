//! The PTX kernels of the cuda executor: hand-written `.ptx` files beside their families'
//! references and CPU kernels, embedded as text. The executor JIT-loads them through the CUDA
//! driver (`cuModuleLoadData`): no nvcc or NVRTC at build or run time. CI assembles every
//! module with `ptxas` for each of its targets (engine/cuda/tests/ptxas.rs), and
//! `gidd check --dump-ptx DIR` can write them out for anyone to assemble.
//!
//! # Conventions every module follows
//! * One kernel parameter: `.param .align 8 .b8 args[8 n]`, n slots of 8 bytes (u32 values in
//!   the low half, pointers whole), in the order the module's `// ARGS entry: a b c` line names
//!   them; [`arg_names`] reads those lines, and the executor's packing is tested against them.
//! * Dtypes travel as [`dtype code`](code) numbers, ops as their position in the
//!   [`Unary`], [`Binary`] and [`Cmp`] enums ([`unary_code`], [`binary_code`], [`cmp_code`]).
//! * An elementwise operand pointer of 0 is a splat whose bits are the next slot.
//! * Element counts and offsets are 32-bit: tensors up to 2^31 elements.

use crate::elementwise::{Binary, Cmp, Unary};

/// The GPU generation a module's `.target` names. A module for `Sm80` also runs (JIT-compiled
/// by the driver) on every later architecture; an `Sm90a` module only on compute capability 9.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Sm80,
    Sm90a,
}

impl Arch {
    /// The `.target` (and ptxas `-arch`) name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm90a => "sm_90a",
        }
    }
    /// The architectures CI assembles a module of this target for: its own, and Hopper
    /// (the GPUs it is meant to run on first).
    pub fn check_targets(self) -> &'static [&'static str] {
        match self {
            Arch::Sm80 => &["sm_80", "sm_90a"],
            Arch::Sm90a => &["sm_90a"],
        }
    }
    /// Whether a device of compute capability `major.minor` runs modules of this target.
    pub fn runs_on(self, major: u32, minor: u32) -> bool {
        match self {
            Arch::Sm80 => major >= 8,
            Arch::Sm90a => major == 9 && minor == 0,
        }
    }
}

/// One PTX module: a file in a kernel family's folder.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// `family/stem`, unique (e.g. `elementwise/float`).
    pub name: &'static str,
    /// The PTX text.
    pub source: &'static str,
    pub arch: Arch,
    /// GEMM-like kernels must not spill registers (checked with ptxas in CI): a spill there
    /// costs a large fraction of the throughput.
    pub no_spills: bool,
}

impl Module {
    /// A file name for `--dump-ptx`: the name with `/` as `_`, `.ptx` appended.
    pub fn file_name(&self) -> String {
        format!("{}.ptx", self.name.replace('/', "_"))
    }
    /// The `.visible .entry` names the module defines.
    pub fn entries(&self) -> Vec<&'static str> {
        self.source
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".visible .entry "))
            .filter_map(|l| l.split('(').next())
            .map(str::trim)
            .collect()
    }
}

macro_rules! module {
    ($name:literal, $arch:expr, $no_spills:expr) => {
        Module {
            name: $name,
            source: include_str!(concat!($name, ".ptx")),
            arch: $arch,
            no_spills: $no_spills,
        }
    };
}

/// Every PTX module, in load order.
pub const MODULES: &[Module] = &[
    module!("elementwise/float", Arch::Sm80, false),
    module!("elementwise/int", Arch::Sm80, false),
    module!("elementwise/convert", Arch::Sm80, false),
    module!("movement/strided_copy", Arch::Sm80, false),
    module!("reduce/reduce", Arch::Sm80, false),
    module!("index/gather_scatter", Arch::Sm80, false),
    module!("matmul/gemm_simt", Arch::Sm80, true),
    module!("matmul/gemm_mma_sm80", Arch::Sm80, true),
    module!("matmul/peak_sm90a", Arch::Sm90a, true),
    module!("matmul/gemm_wgmma_sm90a", Arch::Sm90a, true),
    module!("gidd_loss/diffusion_kl", Arch::Sm80, true),
    module!("sample/sample", Arch::Sm80, true),
    module!("attention/attention", Arch::Sm80, true),
    module!("attention/attention_rows", Arch::Sm80, false),
    module!("attention/attention_mma_d64", Arch::Sm80, true),
    module!("attention/attention_mma_d128", Arch::Sm80, true),
    module!("attention/attention_mma_dq_d64", Arch::Sm80, true),
    module!("attention/attention_mma_dq_d128", Arch::Sm80, true),
    module!("attention/attention_mma_dkdv_d64", Arch::Sm80, true),
    module!("attention/attention_mma_dkdv_d128", Arch::Sm80, true),
    module!("attention/attention_wgmma_d64", Arch::Sm90a, true),
    module!("attention/attention_wgmma_d128", Arch::Sm90a, true),
    module!("softmax/softmax", Arch::Sm80, false),
    module!("norm/rms_norm", Arch::Sm80, false),
    module!("rope/rope", Arch::Sm80, false),
];

/// The module defining `entry`, if any.
pub fn module_of(entry: &str) -> Option<&'static Module> {
    MODULES.iter().find(|m| m.entries().contains(&entry))
}

/// The argument slots of `entry`, from its module's `// ARGS entry: ...` line. A name ending
/// in `[n]` (a tensor map: `tma_a[16]`) stands for n slots.
pub fn arg_names(entry: &str) -> Option<Vec<&'static str>> {
    let m = module_of(entry)?;
    let prefix = format!("// ARGS {entry}:");
    m.source
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .map(|rest| rest.split_whitespace().collect())
}

/// The slots an ARGS name stands for: n for `name[n]`, else 1.
pub fn slot_count(name: &str) -> usize {
    name.strip_suffix(']')
        .and_then(|s| s.split('[').nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Dtype codes of the kernels' `dt`, `kind`, `from`, `to` and `idk` arguments.
pub mod code {
    pub const F32: u32 = 0;
    pub const BF16: u32 = 1;
    pub const I32: u32 = 2;
    pub const U32: u32 = 3;
    pub const I64: u32 = 4;
    pub const BOOL: u32 = 5;
    /// Only as the f64 accumulator of scatter-add (f64 programs are the CPU's).
    pub const F64: u32 = 6;
}

/// `op` of `unary_float` and `unary_int`.
pub fn unary_code(u: Unary) -> u32 {
    match u {
        Unary::Neg => 0,
        Unary::Exp => 1,
        Unary::Log => 2,
        Unary::Tanh => 3,
        Unary::Logistic => 4,
        Unary::Sqrt => 5,
        Unary::Rsqrt => 6,
        Unary::Abs => 7,
        Unary::Sin => 8,
        Unary::Cos => 9,
        Unary::Not => 10,
        Unary::Floor => 11,
    }
}

/// `op` of `binary_float` and `binary_int`.
pub fn binary_code(b: Binary) -> u32 {
    match b {
        Binary::Add => 0,
        Binary::Sub => 1,
        Binary::Mul => 2,
        Binary::Div => 3,
        Binary::Max => 4,
        Binary::Min => 5,
        Binary::Pow => 6,
        Binary::Rem => 7,
        Binary::And => 8,
        Binary::Or => 9,
        Binary::Xor => 10,
        Binary::ShiftLeft => 11,
        Binary::ShiftRightLogical => 12,
    }
}

/// `op` of `compare_float` and `compare_int`.
pub fn cmp_code(c: Cmp) -> u32 {
    match c {
        Cmp::Eq => 0,
        Cmp::Ne => 1,
        Cmp::Lt => 2,
        Cmp::Le => 3,
        Cmp::Gt => 4,
        Cmp::Ge => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry is defined once across the modules and declares its arguments, with as many
    /// slots as its `.param` array holds.
    #[test]
    fn entries_are_unique_and_declare_their_arguments() {
        let mut seen = std::collections::HashSet::new();
        for m in MODULES {
            assert!(
                m.source.contains(&format!(".target {}", m.arch.name())),
                "{}",
                m.name
            );
            let entries = m.entries();
            assert!(!entries.is_empty(), "{} defines no entry", m.name);
            for e in entries {
                assert!(seen.insert(e), "entry {e} is defined twice");
                let names = arg_names(e).unwrap_or_else(|| panic!("{e} has no ARGS line"));
                let slots: usize = names.iter().map(|n| slot_count(n)).sum();
                // tensor maps must sit 64-byte aligned in the parameter
                let align = if slots == names.len() { 8 } else { 64 };
                let decl = format!(
                    ".visible .entry {e}(.param .align {align} .b8 args[{}])",
                    8 * slots
                );
                assert!(
                    m.source.contains(&decl),
                    "{e}: the ARGS line names {} slots but `{decl}` is not in {}",
                    names.len(),
                    m.name
                );
            }
        }
    }

    /// The kernels' `.branchtargets` tables list the labels in op-code order.
    #[test]
    fn branch_tables_follow_the_op_codes() {
        let table = |entry: &str| -> Vec<String> {
            let m = module_of(entry).expect("module");
            let body = m
                .source
                .split(&format!(".entry {entry}("))
                .nth(1)
                .expect("entry");
            let line = body
                .lines()
                .find(|l| l.contains(".branchtargets"))
                .expect("a branch table");
            let list = line.split(".branchtargets").nth(1).expect("labels");
            list.trim()
                .trim_end_matches(';')
                .split(',')
                .map(|s| s.trim().to_string())
                .collect()
        };
        let upper = |v: &[&str]| v.iter().map(|s| s.to_uppercase()).collect::<Vec<_>>();
        let unary = [
            "neg", "exp", "log", "tanh", "logistic", "sqrt", "rsqrt", "abs", "sin", "cos", "not",
            "floor",
        ];
        assert_eq!(table("unary_float"), upper(&unary));
        let arith = ["add", "sub", "mul", "div", "max", "min", "pow", "rem"];
        let bits = ["and", "or", "xor", "shl", "shr"];
        let mut int = arith.to_vec();
        int.extend(bits);
        assert_eq!(table("binary_int"), upper(&int));
        let mut float = upper(&arith);
        float.extend(["BITS"; 5].map(String::from));
        assert_eq!(table("binary_float"), float);
        let cmp = upper(&["eq", "ne", "lt", "le", "gt", "ge"]);
        assert_eq!(table("compare_float"), cmp);
        assert_eq!(table("compare_int"), cmp);
    }

    /// The op codes are the kernels' branch-table positions: distinct and dense from 0.
    #[test]
    fn op_codes_are_dense() {
        use Binary::*;
        use Unary::*;
        let u = [
            Neg, Exp, Log, Tanh, Logistic, Sqrt, Rsqrt, Abs, Sin, Cos, Not, Floor,
        ];
        let codes: Vec<u32> = u.iter().map(|&x| unary_code(x)).collect();
        assert_eq!(codes, (0..12).collect::<Vec<_>>());
        let b = [
            Add,
            Sub,
            Mul,
            Div,
            Max,
            Min,
            Pow,
            Rem,
            And,
            Or,
            Xor,
            ShiftLeft,
            ShiftRightLogical,
        ];
        let codes: Vec<u32> = b.iter().map(|&x| binary_code(x)).collect();
        assert_eq!(codes, (0..13).collect::<Vec<_>>());
        let c = [Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge];
        let codes: Vec<u32> = c.iter().map(|&x| cmp_code(x)).collect();
        assert_eq!(codes, (0..6).collect::<Vec<_>>());
    }
}
