//! Every GPU kernel against the CPU reference, on seeded random inputs and on named edge shapes.
//! Tolerances live in `src/check/tolerance.rs`.

mod common;

use common::{gpu, pass};
use dlsvm::check::{self, Flags};
use dlsvm::kernels::{conv::ConvBwdWeightVariant, conv::ConvFwdVariant, gemm::GemmVariant};
use dlsvm::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

// ------------------------------------------------------------------------------------------ GEMM

/// Every transposition and every variant on one (m, n, k).
fn gemm_all(m: usize, n: usize, k: usize, flags: Flags) {
    for t in Trans::ALL {
        for v in GemmVariant::all() {
            pass(check::gemm_case(gpu(), GemmShape::new(m, n, k, t), v, flags, (m * 31 + n * 7 + k) as u64));
        }
    }
}

#[test]
fn gemm_1x1x1() {
    gemm_all(1, 1, 1, Flags::BIAS_RELU);
}

#[test]
fn gemm_shapes_smaller_than_tile() {
    gemm_all(7, 5, 3, Flags::BIAS);
}

#[test]
fn gemm_exactly_one_tile() {
    gemm_all(64, 64, 64, Flags::NONE);
}

#[test]
fn gemm_tile_plus_one() {
    gemm_all(65, 65, 65, Flags::BIAS);
}

#[test]
fn gemm_irregular_123x255x72() {
    gemm_all(123, 255, 72, Flags::BIAS_RELU);
}

/// Shapes vec4-aligned in every layout (M, N, K multiples of 4), so the vec4 variants run
/// rather than fall back: one vec4, partial tiles in both directions, K not a multiple of 16.
#[test]
fn gemm_vec4_aligned_edges() {
    gemm_all(4, 4, 4, Flags::BIAS_RELU);
    gemm_all(68, 132, 36, Flags::BIAS);
    gemm_all(12, 20, 8, Flags::ALL);
    gemm_all(260, 8, 1028, Flags::NONE);
}

/// Aligned only along the layout's contiguous dimension (NT: K; the rows are not).
#[test]
fn gemm_vec4_ragged_rows_and_columns() {
    gemm_all(13, 21, 16, Flags::BIAS);
}

#[test]
fn gemm_k_exceeds_tile() {
    gemm_all(5, 6, 1000, Flags::NONE);
}

#[test]
fn gemm_tall_and_wide() {
    gemm_all(700, 3, 17, Flags::BIAS);
    gemm_all(2, 700, 5, Flags::BIAS);
}

#[test]
fn gemm_epilogue_every_combination() {
    for bias in [false, true] {
        for accumulate in [false, true] {
            for relu in [false, true] {
                gemm_all(33, 17, 9, Flags { bias, accumulate, relu });
            }
        }
    }
}

#[test]
fn gemm_fer_fc_layers_batch_16() {
    for s in check::fc_gemms(16, 1600, 3072).into_iter().chain(check::fc_gemms(16, 3072, 7)) {
        pass(check::gemm_case(gpu(), s, GemmVariant::DEFAULT, Flags::NONE, 5));
    }
}

#[test]
fn gemm_square_256_every_variant() {
    gemm_all(256, 256, 256, Flags::NONE);
}

#[test]
fn gemm_rejects_mismatched_buffers() {
    let g = gpu();
    let a = g.upload(&[0.0; 6], &[6]).unwrap();
    let b = g.upload(&[0.0; 9], &[9]).unwrap();
    let c = g.upload(&[0.0; 4], &[4]).unwrap();
    let s = GemmShape::new(2, 3, 3, Trans::NN);
    let err = dlsvm::kernels::gemm::gemm(g, &s, &a, &b, &c, &Default::default(), GemmVariant::DEFAULT)
        .err()
        .expect("a 4-element C for a 2x3 product must be refused");
    let msg = err.to_string();
    assert!(msg.contains("gemm 2x3x3 nn") && msg.contains("C has 4 elements"), "{msg}");
}

// ------------------------------------------------------------------------------------------ conv

fn conv_all(s: Conv2dShape) {
    let g = gpu();
    for v in ConvFwdVariant::all() {
        pass(check::conv_fwd_case(g, s, v, Flags::BIAS_RELU, 1));
        pass(check::conv_fwd_case(g, s, v, Flags::NONE, 2));
    }
    pass(check::conv_bwd_data_case(g, s, 3));
    for v in ConvBwdWeightVariant::all() {
        pass(check::conv_bwd_weight_case(g, s, v, false, 4));
        pass(check::conv_bwd_weight_case(g, s, v, true, 5));
    }
    pass(check::conv_bwd_bias_case(g, s, 6));
}

#[test]
fn conv_fer_conv1_1to32_5x5_pad2() {
    let s = check::fer_convs(2)[0];
    assert_eq!((s.oh(), s.ow()), (42, 42));
    conv_all(s);
}

#[test]
fn conv_fer_conv2_32to32_4x4_pad1() {
    let s = check::fer_convs(2)[1];
    assert_eq!((s.oh(), s.ow()), (20, 20));
    conv_all(s);
}

#[test]
fn conv_fer_conv3_32to64_5x5_pad2() {
    let s = check::fer_convs(2)[2];
    assert_eq!((s.oh(), s.ow()), (10, 10));
    conv_all(s);
}

#[test]
fn conv_1x1_everything() {
    conv_all(Conv2dShape::square(1, 1, 1, 1, 1, 1, 0));
}

#[test]
fn conv_1x1_kernel() {
    conv_all(Conv2dShape::square(3, 5, 8, 7, 1, 1, 0));
}

#[test]
fn conv_stride_2() {
    conv_all(Conv2dShape::square(2, 3, 9, 5, 3, 2, 1));
    conv_all(Conv2dShape::square(2, 3, 10, 4, 4, 2, 0));
}

#[test]
fn conv_padding_0_and_3() {
    conv_all(Conv2dShape::square(2, 2, 9, 3, 3, 1, 0));
    conv_all(Conv2dShape::square(1, 3, 7, 4, 3, 1, 3));
}

#[test]
fn conv_kernel_as_large_as_input() {
    conv_all(Conv2dShape::square(2, 2, 6, 3, 6, 1, 0));
}

/// kw = 8 is the widest kernel the rows weight gradient is specialized for; kw = 11 falls back.
#[test]
fn conv_widest_specialized_kernel_and_fallback() {
    conv_all(Conv2dShape::square(1, 2, 9, 3, 8, 1, 2));
    conv_all(Conv2dShape { n: 2, cin: 2, h: 5, w: 14, cout: 3, kh: 2, kw: 11, sy: 1, sx: 1, py: 1, px: 2 });
}

#[test]
fn conv_batch_1_odd_channels() {
    conv_all(Conv2dShape::square(1, 3, 11, 9, 3, 1, 1));
    conv_all(Conv2dShape::square(1, 7, 5, 13, 3, 1, 1));
}

#[test]
fn conv_non_square_kernel_stride_and_padding() {
    conv_all(Conv2dShape { n: 2, cin: 3, h: 11, w: 7, cout: 9, kh: 3, kw: 2, sy: 2, sx: 1, py: 1, px: 0 });
    conv_all(Conv2dShape { n: 1, cin: 2, h: 6, w: 13, cout: 5, kh: 1, kw: 5, sy: 1, sx: 3, py: 0, px: 2 });
}

#[test]
fn conv_stride_larger_than_kernel() {
    conv_all(Conv2dShape::square(2, 2, 11, 3, 2, 3, 1));
}

#[test]
fn conv_bwd_weight_many_slices_and_partial_blocks() {
    // 1x1 output planes: one sample per slice is impossible to fill, so slices hold many samples;
    // cout and cin*kh*kw not multiples of the 4x4 block.
    conv_all(Conv2dShape::square(37, 3, 3, 5, 3, 1, 0));
    conv_all(Conv2dShape::square(9, 2, 40, 6, 3, 1, 1));
}

#[test]
fn conv_rejects_kernel_larger_than_input() {
    let g = gpu();
    let s = Conv2dShape::square(1, 1, 4, 1, 7, 1, 0);
    let t = g.upload(&[0.0; 16], &[16]).unwrap();
    let w = g.upload(&[0.0; 49], &[49]).unwrap();
    let err = dlsvm::kernels::conv::conv2d_backward_data(g, &s, &t, &w, &t).err().expect("must be refused");
    assert!(err.to_string().contains("larger than the padded input"), "{err}");
}

// ------------------------------------------------------------------------------------------ pool

fn pool_all(s: Pool2dShape) {
    let g = gpu();
    pass(check::maxpool_fwd_case(g, s, 1));
    for v in dlsvm::kernels::pool::MaxPoolBwdVariant::all() {
        pass(check::maxpool_bwd_case_variant(g, s, v, 2));
    }
    pass(check::avgpool_fwd_case(g, s, 3));
    for v in dlsvm::kernels::pool::PoolBwdVariant::all() {
        pass(check::avgpool_bwd_case_variant(g, s, v, 4));
    }
}

#[test]
fn pool_fer_max_3x3_stride2_42_to_21() {
    let s = check::fer_pools(2)[0];
    assert_eq!((s.oh(), s.ow()), (21, 21));
    pool_all(s);
}

#[test]
fn pool_fer_avg_3x3_stride2_20_to_10() {
    let s = check::fer_pools(2)[1];
    assert_eq!((s.oh(), s.ow()), (10, 10));
    pool_all(s);
}

#[test]
fn pool_fer_avg_3x3_stride2_10_to_5() {
    let s = check::fer_pools(2)[2];
    assert_eq!((s.oh(), s.ow()), (5, 5));
    pool_all(s);
}

#[test]
fn pool_2x2_stride_2_even_and_odd() {
    pool_all(Pool2dShape::square(2, 3, 8, 2, 2, 0));
    pool_all(Pool2dShape::square(2, 3, 9, 2, 2, 0));
}

#[test]
fn pool_3x3_stride_1_pad_1() {
    pool_all(Pool2dShape::square(1, 2, 7, 3, 1, 1));
}

#[test]
fn pool_padding_with_ceil_mode() {
    pool_all(Pool2dShape::square(2, 3, 9, 3, 2, 1));
    pool_all(Pool2dShape::square(1, 2, 6, 4, 3, 2));
}

#[test]
fn pool_non_square() {
    pool_all(Pool2dShape { n: 1, c: 5, h: 11, w: 6, kh: 3, kw: 2, sy: 2, sx: 1, py: 1, px: 0 });
}

#[test]
fn pool_1x1_and_window_as_large_as_input() {
    pool_all(Pool2dShape::square(1, 1, 1, 1, 1, 0));
    pool_all(Pool2dShape::square(2, 3, 5, 5, 1, 0));
}

#[test]
fn maxpool_ties_pick_the_first_element() {
    let g = gpu();
    let s = Pool2dShape::square(1, 1, 4, 2, 2, 0);
    let x = g.upload(&[1.0; 16], &[16]).unwrap();
    let y = g.empty(&[4], dlsvm::gpu::DType::F32).unwrap();
    let idx = g.empty(&[4], dlsvm::gpu::DType::I32).unwrap();
    g.run(&[&dlsvm::kernels::pool::maxpool_forward(g, &s, &x, &y, &idx).unwrap()]).unwrap();
    assert_eq!(g.download::<i32>(&idx).unwrap(), vec![0, 2, 8, 10]);
}

// ------------------------------------------------------------------------------------ activation

#[test]
fn relu_sizes_around_a_workgroup() {
    for n in [1, 255, 256, 257, 10_007] {
        pass(check::relu_fwd_case(gpu(), n, n as u64));
        pass(check::relu_bwd_case(gpu(), n, n as u64));
    }
}

#[test]
fn relu_grid_folded_past_65535_workgroups() {
    // 65,536 workgroups of 256 plus one element: the grid must fold over two dimensions.
    let n = 65_536 * 256 + 1;
    pass(check::relu_fwd_case(gpu(), n, 11));
}

#[test]
fn dropout_forward_and_backward_match_the_reference() {
    for (n, p) in [(1, 0.2), (257, 0.0), (10_007, 0.2), (10_007, 0.5), (4099, 0.9)] {
        pass(check::dropout_case(gpu(), n, p, 42, 3, false));
        pass(check::dropout_case(gpu(), n, p, 42, 3, true));
    }
}

#[test]
fn dropout_mask_depends_on_seed_and_step_and_repeats() {
    use dlsvm::kernels::activation::dropout_forward;
    let g = gpu();
    let n = 4096;
    let x = g.upload(&vec![1.0; n], &[n]).unwrap();
    let run = |seed, step| {
        let y = g.empty(&[n], dlsvm::gpu::DType::F32).unwrap();
        g.run(&[&dropout_forward(g, &x, &y, 0.5, seed, step).unwrap()]).unwrap();
        g.download::<f32>(&y).unwrap()
    };
    let a = run(1, 1);
    assert_eq!(a, run(1, 1), "same seed and step must give the same mask");
    assert_ne!(a, run(1, 2), "a new step must give a new mask");
    assert_ne!(a, run(2, 1), "a new seed must give a new mask");
    let kept = a.iter().filter(|&&v| v != 0.0).count();
    assert!((1900..2200).contains(&kept), "kept {kept} of {n} at p = 0.5");
}

// ------------------------------------------------------------------------------------------ loss

#[test]
fn softmax_xent_shapes() {
    for (n, k) in [(1, 1), (1, 7), (256, 7), (300, 10), (5, 1000)] {
        pass(check::softmax_case(gpu(), n, k, 4.0, (n * k) as u64));
    }
}

#[test]
fn softmax_xent_logits_of_80_stay_finite() {
    let r = pass(check::softmax_case(gpu(), 64, 7, 80.0, 3));
    assert!(r.max_abs.is_finite());
}

#[test]
fn l2svm_shapes_and_c() {
    for (n, k, c) in [(1, 1, 1.0), (1, 7, 1.0), (256, 7, 1.0), (256, 7, 5.12), (300, 10, 0.1), (5, 1000, 1.0)]
    {
        pass(check::l2svm_case(gpu(), n, k, c, (n + k) as u64));
    }
}

#[test]
fn losses_zero_for_fully_masked_batch() {
    use dlsvm::kernels::loss::{l2svm, softmax_xent};
    let g = gpu();
    let (n, k) = (3, 4);
    let s = g.upload(&[0.5; 12], &[n, k]).unwrap();
    let y = g.upload(&[-1, -1, -1], &[n]).unwrap();
    for which in 0..2 {
        let loss = g.empty(&[n], dlsvm::gpu::DType::F32).unwrap();
        let grad = g.empty(&[n, k], dlsvm::gpu::DType::F32).unwrap();
        g.poison(&loss);
        g.poison(&grad);
        let d = if which == 0 {
            softmax_xent(g, n, k, &s, &y, 1.0 / 3.0, &loss, &grad)
        } else {
            l2svm(g, n, k, &s, &y, 1.0 / 3.0, &loss, &grad)
        };
        g.run(&[&d.unwrap()]).unwrap();
        assert_eq!(g.download::<f32>(&loss).unwrap(), vec![0.0; n]);
        assert_eq!(g.download::<f32>(&grad).unwrap(), vec![0.0; n * k]);
    }
}

// ----------------------------------------------------------------------------------------- optim

#[test]
fn sgd_momentum_update() {
    for (n, lr, m, wd) in [(1, 0.05, 0.9, 1e-4), (257, 0.05, 0.5, 0.02), (100_003, 0.001, 0.0, 0.0)] {
        pass(check::sgd_case(gpu(), n, lr, m, wd, n as u64));
    }
}

// ---------------------------------------------------------------------------------------- reduce

#[test]
fn sum_lengths() {
    for n in [1, 255, 256, 257, 1_000_003] {
        pass(check::sum_case(gpu(), n, false, n as u64));
        pass(check::sum_case(gpu(), n, true, n as u64 + 1));
    }
}

#[test]
fn argmax_rows_with_ties() {
    for (n, k) in [(1, 1), (1, 7), (256, 7), (300, 10), (5, 1000)] {
        pass(check::argmax_case(gpu(), n, k, 9));
    }
}

#[test]
fn count_correct_with_masked_labels() {
    for (n, k) in [(1, 7), (256, 7), (1000, 10)] {
        pass(check::count_correct_case(gpu(), n, k, false, 10));
        pass(check::count_correct_case(gpu(), n, k, true, 11));
    }
}

#[test]
fn channel_sum_fc_and_conv_layouts() {
    for (outer, c, inner, acc) in
        [(1, 1, 1, false), (16, 3072, 1, true), (4, 32, 1764, false), (3, 5, 7, true)]
    {
        pass(check::channel_sum_case(gpu(), outer, c, inner, acc, 12));
    }
}
