//! The GPU runtime: upload and readback, poisoning, the pipeline cache, reusable dispatches,
//! timing, and limits.

mod common;

use common::gpu;
use dlsvm::cpu;
use dlsvm::gpu::{DType, GpuError};
use dlsvm::kernels::{self, gemm::GemmVariant, optim::SgdParams};
use dlsvm::shapes::{GemmShape, Trans};

#[test]
fn upload_download_roundtrip_every_dtype() {
    let g = gpu();
    let f: Vec<f32> = (0..1001).map(|i| i as f32 * 0.25 - 7.0).collect();
    assert_eq!(g.download::<f32>(&g.upload(&f, &[7, 143]).unwrap()).unwrap(), f);
    let i: Vec<i32> = (-500..501).collect();
    assert_eq!(g.download::<i32>(&g.upload(&i, &[1001]).unwrap()).unwrap(), i);
    let u: Vec<u32> = (0..17).map(|x| x * 0x0101_0101).collect();
    assert_eq!(g.download::<u32>(&g.upload(&u, &[17]).unwrap()).unwrap(), u);
    let empty = g.upload::<f32>(&[], &[0, 5]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(g.download::<f32>(&empty).unwrap(), Vec::<f32>::new());
}

/// The tests' device is opened as `dlsvm check` opens it: every tensor carries NaN padding past its
/// logical end, bound with it, which the length checks and the download leave out; a write into
/// the padding (a kernel writing past an output's end) fails the download. A device opened as
/// training opens it has no padding.
#[test]
fn tensors_carry_nan_padding_that_a_write_past_the_end_breaks() {
    let g = gpu();
    assert!(g.checks_enabled());
    let data: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let t = g.upload(&data, &[2, 5]).unwrap();
    assert_eq!((t.len(), t.bytes(), t.padding()), (10, 40, 64));
    assert_eq!(t.buffer().size(), (10 + 64) * 4, "the padding is in the buffer a kernel is bound to");
    // download reads the padding too and finds PAD_BITS there, or fails.
    assert_eq!(g.download::<f32>(&t).unwrap(), data);
    // A quarter of the length past 256 elements, in whole vec4s; empty tensors are padded too.
    assert_eq!(g.empty(&[1001], DType::F32).unwrap().padding(), 252);
    assert_eq!(g.upload::<i32>(&[], &[0]).unwrap().padding(), 64);
    let e = g.empty(&[3], DType::I32).unwrap();
    assert_eq!(g.download::<i32>(&e).unwrap(), vec![0; 3], "empty tensors stay zeroed");
    g.poison(&t);
    assert!(g.download::<f32>(&t).unwrap().iter().all(|v| v.is_nan()), "poison leaves the padding");
    g.queue.write_buffer(t.buffer(), 4 * 13, bytemuck::bytes_of(&f32::NAN));
    let err = g.download::<f32>(&t).expect_err("a NaN other than the padding's is a write past the end");
    assert!(matches!(err, GpuError::PastEnd { index: 13, bits: 0x7fc0_0000, .. }), "{err}");
    assert!(err.to_string().contains("past the end of the F32 tensor [2, 5]"), "{err}");

    let plain = dlsvm::gpu::Gpu::new(std::env::var("DLSVM_ADAPTER").ok().as_deref()).unwrap();
    assert!(!plain.checks_enabled());
    let t = plain.upload(&data, &[2, 5]).unwrap();
    assert_eq!((t.padding(), t.buffer().size()), (0, 40), "training allocates no padding");
    assert_eq!(plain.download::<f32>(&t).unwrap(), data);
}

#[test]
fn poison_fills_with_nan() {
    let g = gpu();
    let t = g.upload(&[1.0; 33], &[33]).unwrap();
    g.poison(&t);
    assert!(g.download::<f32>(&t).unwrap().iter().all(|v| v.is_nan()));
}

#[test]
fn pipeline_cache_builds_each_pipeline_once() {
    let g = gpu();
    // A specialization no other test uses, so the count is ours alone to observe.
    let v = GemmVariant::Tiled { wx: 4, wy: 4, tm: 3, tn: 5 };
    let s = GemmShape::new(9, 11, 13, Trans::TN);
    let a = g.upload(&vec![0.5; s.a_len()], &[s.a_len()]).unwrap();
    let b = g.upload(&vec![0.25; s.b_len()], &[s.b_len()]).unwrap();
    let c = g.empty(&[s.c_len()], DType::F32).unwrap();
    let d1 = kernels::gemm::gemm(g, &s, &a, &b, &c, &Default::default(), v).unwrap();
    let after_first = g.cached_pipelines();
    let d2 = kernels::gemm::gemm(g, &s, &a, &b, &c, &Default::default(), v).unwrap();
    assert!(g.cached_pipelines() <= after_first, "the same (shader, entry, spec) was built twice");
    g.run(&d1.iter().chain(&d2).collect::<Vec<_>>()).unwrap();
    assert!(g.download::<f32>(&c).unwrap().iter().all(|&x| (x - 13.0 * 0.125).abs() < 1e-6));
}

#[test]
fn a_prepared_dispatch_reruns_with_new_params() {
    let g = gpu();
    let n = 1000;
    let w0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let gr: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
    let (w, v, gt) =
        (g.upload(&w0, &[n]).unwrap(), g.upload(&vec![0.0; n], &[n]).unwrap(), g.upload(&gr, &[n]).unwrap());
    let d = kernels::optim::sgd_momentum(g, &w, &v, &gt, 0.1, 0.9, 0.01).unwrap();
    g.run(&[&d]).unwrap();
    d.set_params(g, &SgdParams::new(n as u32, 0.05, 0.5, 0.0));
    g.run(&[&d]).unwrap();
    let (mut want_w, mut want_v) = (w0.iter().map(|&x| x as f64).collect::<Vec<_>>(), vec![0.0f64; n]);
    let gr64: Vec<f64> = gr.iter().map(|&x| x as f64).collect();
    cpu::sgd_momentum(&mut want_w, &mut want_v, &gr64, 0.1f32 as f64, 0.9f32 as f64, 0.01f32 as f64);
    cpu::sgd_momentum(&mut want_w, &mut want_v, &gr64, 0.05f32 as f64, 0.5, 0.0);
    let got = g.download::<f32>(&w).unwrap();
    for (i, (a, b)) in got.iter().zip(&want_w).enumerate() {
        assert!((*a as f64 - b).abs() < 1e-6, "w[{i}]: gpu {a}, reference {b}");
    }
}

#[test]
fn timing_reports_positive_durations() {
    let g = gpu();
    let n = 1 << 16;
    let x = g.upload(&vec![1.0; n], &[n]).unwrap();
    let y = g.empty(&[n], DType::F32).unwrap();
    let d = kernels::activation::relu_forward(g, &x, &y).unwrap();
    let times = g.time(&[&d], 3).unwrap();
    assert_eq!(times.len(), 3);
    assert!(times.iter().all(|&t| t > 0.0 && t < 10_000.0), "{times:?}");
}

#[test]
fn oversized_tensors_are_refused_with_the_limit() {
    let g = gpu();
    let err = g.empty(&[usize::MAX / 8, 16], DType::F32).err().expect("must be refused");
    assert!(matches!(err, GpuError::TooLarge { .. }), "{err}");
    // One element past the storage-binding limit: allocation works, binding is refused.
    let limit = g.limits.max_storage_buffer_binding_size;
    let n = (limit / 4 + 1) as usize;
    if (n as u64) * 4 <= g.limits.max_buffer_size {
        let x = g.empty(&[n], DType::F32).unwrap();
        let err = kernels::activation::relu_forward(g, &x, &x).err().expect("binding must be refused");
        let msg = err.to_string();
        assert!(msg.contains("relu_forward") && msg.contains(&limit.to_string()), "{msg}");
    }
}

#[test]
fn adapter_filter_that_matches_nothing_lists_the_adapters() {
    let err = dlsvm::gpu::Gpu::new(Some("no-such-adapter-xyz")).err().expect("must fail");
    assert!(matches!(err, GpuError::AdapterNotFound { .. }), "{err}");
    assert!(err.to_string().contains(&gpu().info.name), "{err}");
}
