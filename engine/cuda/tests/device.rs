//! The executor on a real GPU, against the cpu executor; and, on any machine, that opening it
//! without a driver is the clean error `--backend cuda` reports (never a panic).
//! Without a device the GPU tests say SKIPPED (and GIDD_REQUIRE_CUDA=1 makes that a failure).

#![allow(clippy::unwrap_used)]

mod common;

use gidd_cuda::{CudaError, CudaExecutor};
use gidd_engine::op::DotDims;
use gidd_engine::{CpuExecutor, DType, Executor, Graph, HostTensor, Program, Tensor};

#[test]
fn opening_without_a_driver_is_a_clean_error() {
    // SAFETY: only probes for the library with dlopen.
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    match CudaExecutor::new(0) {
        Err(CudaError::NoDriver) => {
            assert!(!present, "libcuda is present but new() said it is not");
            let msg = CudaError::NoDriver.to_string();
            assert_eq!(
                msg,
                "no CUDA driver (libcuda.so) found: --backend cuda needs an NVIDIA GPU and driver"
            );
            // and as the engine error every Executor method returns
            assert_eq!(
                gidd_engine::Error::from(CudaError::NoDriver).to_string(),
                msg
            );
        }
        Err(e) => {
            assert!(present, "no libcuda, yet new() failed otherwise: {e}");
            eprintln!("a driver is present but no usable device: {e}");
        }
        Ok(x) => {
            assert!(present);
            eprintln!("opened {}", x.name());
        }
    }
}

fn rand(shape: &[usize], seed: u64) -> HostTensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    HostTensor::f32(shape.to_vec(), v).expect("shape")
}

/// Runs `outs` on the GPU and the CPU; relative L2 error of each output within `tol`.
fn agree(x: &CudaExecutor, case: &str, outs: &[Tensor], inputs: &[(&str, HostTensor)], tol: f64) {
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outs, &names).expect("compile");
    let host: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
    let mut lc = CpuExecutor.load(&p).expect("cpu load");
    let want = CpuExecutor.run(&mut lc, &host).expect("cpu run");
    let mut lg = x.load(&p).unwrap_or_else(|e| panic!("{case}: load: {e}"));
    let bufs: Vec<_> = host.iter().map(|t| x.upload(t).expect("upload")).collect();
    let refs: Vec<_> = bufs.iter().collect();
    let got = x
        .run(&mut lg, &refs)
        .unwrap_or_else(|e| panic!("{case}: run: {e}"));
    for (o, (g, w)) in got.iter().zip(&want).enumerate() {
        let g = x.download(g).expect("download").to_f64_vec();
        let w = w.to_f64_vec();
        let num: f64 = g.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum();
        let den: f64 = w.iter().map(|b| b * b).sum();
        let e = num.sqrt() / den.sqrt().max(1e-30);
        assert!(e <= tol, "{case}: output {o}: rel err {e:e} > {tol:e}");
    }
}

#[test]
fn gpu_agrees_with_the_cpu() {
    let Some(x) = common::cuda("cuda: gpu agrees with the cpu") else {
        return;
    };
    for dt in [DType::F32, DType::BF16] {
        let tol = if dt == DType::F32 { 1e-5 } else { 2e-2 };
        let g = Graph::new();
        let a = g.input("a", &[130, 72], dt);
        let b = g.input("b", &[72, 136], dt);
        let bt = g.input("bt", &[136, 72], dt);
        let dd = DotDims {
            lhs_batch: vec![],
            rhs_batch: vec![],
            lhs_contract: vec![1],
            rhs_contract: vec![1],
        };
        let outs = vec![
            a.matmul(&b).unwrap(),
            a.dot_general(&bt, dd).unwrap(),
            a.exp().unwrap().log_softmax().unwrap(),
            a.sum(&[0], false).unwrap(),
            a.transpose(&[1, 0]).unwrap(),
        ];
        let inputs = [
            ("a", rand(&[130, 72], 1).convert(dt)),
            ("b", rand(&[72, 136], 2).convert(dt)),
            ("bt", rand(&[136, 72], 3).convert(dt)),
        ];
        agree(x, &format!("mixed {dt}"), &outs, &inputs, tol);
    }
}

/// bf16 attention runs on the tensor-core kernels (attention_mma*.ptx): forward and the
/// gradients, head dims 64 and 128, odd lengths, soft cap, masked rows and tiles, the bias
/// slot; against the cpu's f32 attention on the same bf16 numbers.
#[test]
fn bf16_attention_on_tensor_cores_agrees_with_the_cpu() {
    use gidd_engine::{api, grad, AttnSpec};
    let Some(x) = common::cuda("cuda: bf16 attention on tensor cores") else {
        return;
    };
    for (bs, h, lq, lk, d, cap) in [(2, 3, 133, 70, 64, Some(30.0)), (1, 2, 77, 301, 128, None)] {
        let g = Graph::new();
        let bf = DType::BF16;
        let (q, k, v) = (
            g.input("q", &[bs, h, lq, d], bf),
            g.input("k", &[bs, h, lk, d], bf),
            g.input("v", &[bs, h, lk, d], bf),
        );
        let m = g.input("mask", &[bs, lq, lk], DType::Bool);
        let (kb, vb) = (g.input("kb", &[h, d], bf), g.input("vb", &[h, d], bf));
        let w = g.input("w", &[bs, h, lq, d], bf);
        let spec = AttnSpec {
            scale: (d as f32).powf(-0.5),
            softcap: cap,
        };
        let o = api::attention_with_bias_slot(&q, &k, &v, &m, Some((&kb, &vb)), spec).unwrap();
        let loss = o
            .mul(&w)
            .unwrap()
            .to(DType::F32)
            .unwrap()
            .sum_all()
            .unwrap();
        let mut outs = vec![o];
        outs.extend(grad(&loss, &[q, k, v, kb, vb]).unwrap());
        // query 0 sees no key, query 1 all; the rest keys < 40 and a random half beyond
        let mv: Vec<bool> = (0..bs * lq * lk)
            .map(|i| {
                let (qi, kj) = (i / lk % lq, i % lk);
                qi != 0 && (qi == 1 || kj < 40 || (i * 7919) % 13 < 6)
            })
            .collect();
        let inputs = [
            ("q", rand(&[bs, h, lq, d], 11).convert(bf)),
            ("k", rand(&[bs, h, lk, d], 12).convert(bf)),
            ("v", rand(&[bs, h, lk, d], 13).convert(bf)),
            ("mask", HostTensor::bool(vec![bs, lq, lk], mv).unwrap()),
            ("kb", rand(&[h, d], 14).convert(bf)),
            ("vb", rand(&[h, d], 15).convert(bf)),
            ("w", rand(&[bs, h, lq, d], 16).convert(bf)),
        ];
        agree(
            x,
            &format!("bf16 attention Lq{lq} Lk{lk} D{d}"),
            &outs,
            &inputs,
            2e-2,
        );
    }
}
