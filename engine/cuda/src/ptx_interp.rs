//! An interpreter of the PTX subset the generated chain kernels use (crate::chain_ptx, with
//! the elementwise/float.ptx helpers they copy): it parses the module *text* and runs the
//! entry thread by thread over the launch's grid, so a wrong instruction, operand, type,
//! offset or index in the generated code gives wrong numbers here, without a GPU.
//!
//! Semantics are the PTX ISA's for the instructions below, with IEEE round-to-nearest for
//! `.rn` (and unsuffixed) float arithmetic, `cvt` rounding and saturation as specified, and
//! `ex2.approx.f32` as the exactly rounded 2^x (the hardware's is within 2 ulp: the one place
//! this model is more exact than a GPU). Anything outside the subset panics with the
//! instruction, so a generator that starts using a new instruction needs it added here.

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::emulate::Mem;
use crate::plan::Launch;
use crate::ptx_semantics::{exec, Ctx};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Opd {
    Reg(usize),
    NotReg(usize),
    Imm(u64),
    /// [reg + offset]
    Addr(usize, i64),
    /// [args + offset]
    Param(i64),
    Tid,
    Ntid,
    Ctaid,
    Nctaid,
    Label(usize),
}

#[derive(Debug)]
pub(crate) struct Inst {
    pub(crate) guard: Option<(usize, bool)>,
    /// The opcode's dot-separated parts, e.g. ["setp", "ge", "u32"].
    pub(crate) parts: Vec<String>,
    pub(crate) args: Vec<Opd>,
    /// A call: (callee, return registers, argument operands).
    pub(crate) call: Option<(String, Vec<usize>, Vec<Opd>)>,
    /// A vector load's or store's registers (`{%a, %b, ...}`), in element order.
    pub(crate) vregs: Vec<usize>,
}

#[derive(Debug, Default)]
struct Func {
    params: Vec<usize>,
    rets: Vec<usize>,
    code: Vec<Inst>,
    nregs: usize,
}

/// A parsed module: its functions by name.
pub struct Module {
    funcs: HashMap<String, Func>,
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits at top-level commas (outside parentheses and brackets).
fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (vec![], String::new(), 0);
    for ch in s.chars() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn parse_int(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0f").or_else(|| s.strip_prefix("0F")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Some(h) = s.strip_prefix("0d").or_else(|| s.strip_prefix("0D")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Some(h) = s.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Some(h) = s.strip_prefix("-0x") {
        return u64::from_str_radix(h, 16).ok().map(|v| v.wrapping_neg());
    }
    s.parse::<i64>().ok().map(|v| v as u64)
}

struct Parser {
    regs: HashMap<String, usize>,
    labels: HashMap<String, usize>,
}

impl Parser {
    fn reg(&mut self, name: &str) -> usize {
        let n = self.regs.len();
        *self.regs.entry(name.to_string()).or_insert(n)
    }

    fn operand(&mut self, s: &str) -> Opd {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let (base, off) = match inner.split_once('+') {
                Some((b, o)) => (b.trim(), parse_int(o).unwrap() as i64),
                None => (inner.trim(), 0),
            };
            return if base.starts_with('%') {
                Opd::Addr(self.reg(base), off)
            } else {
                Opd::Param(off)
            };
        }
        match s {
            "%tid.x" => return Opd::Tid,
            "%ntid.x" => return Opd::Ntid,
            "%ctaid.x" => return Opd::Ctaid,
            "%nctaid.x" => return Opd::Nctaid,
            _ => {}
        }
        if let Some(r) = s.strip_prefix('!') {
            return Opd::NotReg(self.reg(r));
        }
        if s.starts_with('%') {
            return Opd::Reg(self.reg(s));
        }
        parse_int(s).map_or_else(|| Opd::Label(usize::MAX), Opd::Imm)
    }

    fn reg_list(&mut self, s: &str) -> Vec<usize> {
        let s = s.trim().trim_start_matches('(').trim_end_matches(')');
        split_top(s)
            .iter()
            .filter(|d| !d.is_empty())
            .map(|d| {
                let name = d.split_whitespace().last().unwrap();
                self.reg(name)
            })
            .collect()
    }
}

impl Module {
    pub fn parse(text: &str) -> Module {
        let text = strip_comments(text);
        let mut funcs = HashMap::new();
        let mut rest = text.as_str();
        while let Some(at) = rest
            .find(".func")
            .into_iter()
            .chain(rest.find(".entry"))
            .min()
        {
            let open = at + rest[at..].find('{').unwrap();
            let header = rest[at..open].trim();
            let mut depth = 0;
            let mut close = open;
            for (k, ch) in rest[open..].char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = open + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let (name, f) = parse_func(header, &rest[open + 1..close]);
            funcs.insert(name, f);
            rest = &rest[close + 1..];
        }
        Module { funcs }
    }
}

fn parse_func(header: &str, body: &str) -> (String, Func) {
    let mut ps = Parser {
        regs: HashMap::new(),
        labels: HashMap::new(),
    };
    let mut f = Func::default();
    let h = header
        .trim_start_matches(".func")
        .trim_start_matches(".entry")
        .trim();
    let h = h.trim_start_matches(".visible").trim();
    let h = h.trim_start_matches(".entry").trim();
    let (rets, h) = if h.starts_with('(') {
        let end = h.find(')').unwrap();
        (ps.reg_list(&h[..=end]), h[end + 1..].trim())
    } else {
        (vec![], h)
    };
    let name_end = h.find('(').unwrap_or(h.len());
    let name = h[..name_end].trim().to_string();
    if !header.contains(".entry") {
        f.params = ps.reg_list(&h[name_end..]);
    }
    f.rets = rets;
    // statements end with ';'; labels ("NAME:") precede them
    let mut pending: Vec<(Vec<String>, String)> = vec![];
    for stmt in body.split(';') {
        let mut s = stmt.trim();
        let mut labels = vec![];
        while let Some(c) = s.find(':') {
            let l = s[..c].trim();
            if l.is_empty() || !l.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
                break;
            }
            labels.push(l.to_string());
            s = s[c + 1..].trim();
        }
        pending.push((labels, s.to_string()));
    }
    let mut idx = 0;
    for (labels, s) in &pending {
        for l in labels {
            ps.labels.insert(l.clone(), idx);
        }
        if !(s.is_empty() || s.starts_with('.')) {
            idx += 1;
        }
    }
    for (_, s) in pending {
        if s.is_empty() || s.starts_with('.') {
            continue;
        }
        f.code.push(parse_inst(&mut ps, &s));
    }
    f.nregs = ps.regs.len();
    (name, f)
}

fn parse_inst(ps: &mut Parser, s: &str) -> Inst {
    let mut s = s.trim();
    let mut guard = None;
    if let Some(g) = s.strip_prefix('@') {
        let (p, rest) = g.split_once(char::is_whitespace).unwrap();
        guard = Some(match p.strip_prefix('!') {
            Some(r) => (ps.reg(r), false),
            None => (ps.reg(p), true),
        });
        s = rest.trim();
    }
    let (op, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    let parts: Vec<String> = op.split('.').map(str::to_string).collect();
    if parts[0] == "call" {
        let items = split_top(rest);
        let (rets, callee, args) = if items[0].starts_with('(') {
            (ps.reg_list(&items[0]), items[1].clone(), items.get(2))
        } else {
            (vec![], items[0].clone(), items.get(1))
        };
        let args = args
            .map(|a| {
                let a = a.trim().trim_start_matches('(').trim_end_matches(')');
                split_top(a).iter().map(|x| ps.operand(x)).collect()
            })
            .unwrap_or_default();
        return Inst {
            guard,
            parts,
            args: vec![],
            call: Some((callee, rets, args)),
            vregs: vec![],
        };
    }
    let mut vregs = vec![];
    let args = split_top(rest)
        .iter()
        .map(|a| {
            if let Some(list) = a.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                // a vector operand: its registers, and a placeholder in the operand list
                vregs = list.split(',').map(|x| ps.reg(x.trim())).collect();
                Opd::Imm(0)
            } else if parts[0] == "bra" {
                Opd::Label(
                    *ps.labels
                        .get(a.trim())
                        .unwrap_or_else(|| panic!("label {a}")),
                )
            } else {
                ps.operand(a)
            }
        })
        .collect();
    Inst {
        guard,
        parts,
        args,
        call: None,
        vregs,
    }
}

/// One thread's context: the launch's geometry and its parameter slots.
impl Module {
    fn run(&self, name: &str, args: &[u64], cx: &mut Ctx) -> Vec<u64> {
        let f = self
            .funcs
            .get(name)
            .unwrap_or_else(|| panic!("no function {name}"));
        let mut r = vec![0u64; f.nregs];
        for (&p, &a) in f.params.iter().zip(args) {
            r[p] = a;
        }
        let mut pc = 0;
        while pc < f.code.len() {
            let ins = &f.code[pc];
            pc += 1;
            if let Some((g, want)) = ins.guard {
                if (r[g] != 0) != want {
                    continue;
                }
            }
            if let Some((callee, rets, cargs)) = &ins.call {
                let vals: Vec<u64> = cargs.iter().map(|o| val(&r, o, cx)).collect();
                let out = self.run(callee, &vals, cx);
                for (&d, v) in rets.iter().zip(out) {
                    r[d] = v;
                }
                continue;
            }
            match ins.parts[0].as_str() {
                "ret" => break,
                "bra" => {
                    if let Opd::Label(t) = ins.args[0] {
                        pc = t;
                    }
                }
                _ => exec(ins, &mut r, cx),
            }
        }
        f.rets.iter().map(|&x| r[x]).collect()
    }
}

pub(crate) fn val(r: &[u64], o: &Opd, cx: &Ctx) -> u64 {
    match *o {
        Opd::Reg(i) => r[i],
        Opd::NotReg(i) => u64::from(r[i] == 0),
        Opd::Imm(v) => v,
        Opd::Tid => cx.tid,
        Opd::Ntid => cx.ntid,
        Opd::Ctaid => cx.ctaid,
        Opd::Nctaid => cx.nctaid,
        o => panic!("operand {o:?} has no value"),
    }
}

thread_local! {
    static PARSED: std::cell::RefCell<HashMap<String, std::rc::Rc<Module>>> =
        std::cell::RefCell::new(HashMap::new());
}

/// Runs `entry` of module `text` for every thread of launch `l` (grid x block) with the
/// resolved parameter `slots`, or only the global thread ids in `only`.
pub fn launch(m: &mut Mem, text: &str, l: &Launch, slots: &[u64], only: Option<&[u64]>) {
    let module = PARSED.with(|c| {
        c.borrow_mut()
            .entry(l.entry.to_string())
            .or_insert_with(|| std::rc::Rc::new(Module::parse(text)))
            .clone()
    });
    let (ntid, nctaid) = (l.block as u64, l.grid[0] as u64);
    let all: Vec<u64>;
    let ids = match only {
        Some(ids) => ids,
        None => {
            all = (0..ntid * nctaid).collect();
            &all
        }
    };
    for &g in ids {
        let mut cx = Ctx {
            m,
            slots,
            tid: g % ntid,
            ntid,
            ctaid: g / ntid,
            nctaid,
        };
        module.run(l.entry, &[], &mut cx);
    }
}
