//! Every GPU kernel and variant against the CPU reference, on seeded random inputs and on the named
//! shapes of `dlsvm::check::shapes` (the same lists `dlsvm check` runs). Tolerances live in
//! `src/check/tolerance.rs`; a failure names the shape, the element and both values.

mod common;

use common::{gpu, pass, pass_named};
use dlsvm::check::shapes::{self, PRESET_BATCH};
use dlsvm::check::{self, Flags, Input, Values};
use dlsvm::kernels::registry::FamilyVariant;
use dlsvm::kernels::{
    conv::ConvBwdDataVariant, conv::ConvBwdWeightVariant, conv::ConvFwdVariant, gemm::GemmVariant,
    pool::PoolBwdVariant, pool::PoolFwdVariant,
};
use dlsvm::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

/// `.ci/run` runs these tests again at other subgroup sizes (lavapipe's LP_NATIVE_VECTOR_WIDTH:
/// 128 gives 4 lanes, as SwiftShader in Chrome, 512 gives 16, as Intel GPUs) and names the size it
/// expects in `DLSVM_EXPECT_SUBGROUP_SIZE`: the run fails if the adapter has another, so a driver
/// that ignored the setting cannot pass for a check at that size. Without it: a sane range.
#[test]
fn the_adapter_has_the_subgroup_size_the_run_expects() {
    let g = gpu();
    let sizes = g.subgroup_sizes();
    if let Some((min, max)) = sizes {
        assert!(min.is_power_of_two() && max.is_power_of_two() && min <= max, "subgroups {min}-{max}");
    }
    if let Ok(want) = std::env::var("DLSVM_EXPECT_SUBGROUP_SIZE") {
        let want: u32 = want.trim().parse().expect("DLSVM_EXPECT_SUBGROUP_SIZE is a number");
        assert_eq!(sizes, Some((want, want)), "the adapter's subgroup sizes, where {want} was expected");
    }
}

// ------------------------------------------------------------------------------------------ GEMM

#[test]
fn gemm_every_layout_and_variant_on_the_named_shapes() {
    for (i, (name, (m, n, k), flags)) in shapes::gemm_shapes().into_iter().enumerate() {
        for t in Trans::ALL {
            for v in GemmVariant::checked() {
                let s = GemmShape::new(m, n, k, t);
                pass_named(&name, check::gemm_case(gpu(), s, v, flags, Input::unit(i as u64)));
            }
        }
    }
}

#[test]
fn gemm_presets_fc_layers_at_batch_2_and_a_realistic_batch() {
    for (name, s) in shapes::preset_gemms(2).into_iter().chain(shapes::preset_gemms(PRESET_BATCH)) {
        pass_named(&name, check::gemm_case(gpu(), s, GemmVariant::DEFAULT, Flags::NONE, Input::unit(5)));
    }
}

#[test]
fn gemm_rejects_mismatched_buffers() {
    let g = gpu();
    let a = g.upload(&[0.0f32; 6], &[6]).unwrap();
    let b = g.upload(&[0.0f32; 9], &[9]).unwrap();
    let c = g.upload(&[0.0f32; 4], &[4]).unwrap();
    let s = GemmShape::new(2, 3, 3, Trans::NN);
    let err = dlsvm::kernels::gemm::gemm(g, &s, &a, &b, &c, &Default::default(), GemmVariant::DEFAULT)
        .err()
        .expect("a 4-element C for a 2x3 product must be refused");
    let msg = err.to_string();
    assert!(msg.contains("gemm 2x3x3 nn") && msg.contains("C has 4 elements"), "{msg}");
}

// ------------------------------------------------------------------------------------------ conv

#[test]
fn conv_forward_every_variant_on_the_named_shapes() {
    for (i, (name, s)) in shapes::conv_shapes().into_iter().enumerate() {
        for v in ConvFwdVariant::checked() {
            pass_named(&name, check::conv_fwd_case(gpu(), s, v, Flags::BIAS_RELU, Input::unit(i as u64)));
            pass_named(&name, check::conv_fwd_case(gpu(), s, v, Flags::NONE, Input::unit(i as u64 + 1)));
        }
    }
}

#[test]
fn conv_backward_data_every_variant_on_the_named_shapes() {
    for (i, (name, s)) in shapes::conv_shapes().into_iter().enumerate() {
        for v in ConvBwdDataVariant::checked() {
            pass_named(&name, check::conv_bwd_data_case(gpu(), s, v, Input::unit(i as u64)));
        }
    }
}

#[test]
fn conv_backward_weight_every_variant_on_the_named_shapes() {
    for (i, (name, s)) in shapes::conv_shapes().into_iter().enumerate() {
        for v in ConvBwdWeightVariant::checked() {
            for accumulate in [false, true] {
                let input = Input::unit(i as u64 * 2 + accumulate as u64);
                pass_named(&name, check::conv_bwd_weight_case(gpu(), s, v, accumulate, input));
            }
        }
        pass_named(&name, check::conv_bwd_bias_case(gpu(), s, false, Input::unit(i as u64)));
        pass_named(&name, check::conv_bwd_bias_case(gpu(), s, true, Input::unit(i as u64 + 1)));
    }
}

/// The presets' convolutions at a realistic batch, with the variants training uses: the sliced
/// weight gradients run over many slices, the grids over many workgroups.
#[test]
fn conv_presets_layers_at_a_realistic_batch() {
    for (name, s) in shapes::preset_convs(PRESET_BATCH) {
        let input = Input::unit(3);
        pass_named(&name, check::conv_fwd_case(gpu(), s, ConvFwdVariant::DEFAULT, Flags::BIAS_RELU, input));
        pass_named(&name, check::conv_bwd_data_case(gpu(), s, ConvBwdDataVariant::DEFAULT, input));
        pass_named(&name, check::conv_bwd_weight_case(gpu(), s, ConvBwdWeightVariant::DEFAULT, false, input));
    }
}

#[test]
fn fer_layer_shapes_are_the_papers() {
    let c = check::fer_convs(2);
    assert_eq!(
        c.iter().map(|s| (s.cin, s.cout, s.kh, s.oh(), s.ow())).collect::<Vec<_>>(),
        [(1, 32, 5, 42, 42), (32, 32, 4, 20, 20), (32, 64, 5, 10, 10)]
    );
    let p = check::fer_pools(2);
    assert_eq!(
        p.iter().map(|s| (s.c, s.h, s.oh())).collect::<Vec<_>>(),
        [(32, 42, 21), (32, 20, 10), (64, 10, 5)]
    );
}

#[test]
fn conv_rejects_kernel_larger_than_input() {
    let g = gpu();
    let s = Conv2dShape::square(1, 1, 4, 1, 7, 1, 0);
    let t = g.upload(&[0.0f32; 16], &[16]).unwrap();
    let w = g.upload(&[0.0f32; 49], &[49]).unwrap();
    let err = dlsvm::kernels::conv::conv2d_backward_data(g, &s, &t, &w, &t, ConvBwdDataVariant::DEFAULT)
        .err()
        .expect("must be refused");
    assert!(err.to_string().contains("larger than the padded input"), "{err}");
}

// ------------------------------------------------------------------------------------------ pool

fn pools() -> Vec<(String, Pool2dShape)> {
    shapes::pool_shapes().into_iter().chain(shapes::preset_pools(PRESET_BATCH)).collect()
}

#[test]
fn maxpool_every_variant_with_and_without_ties() {
    for (i, (name, s)) in pools().into_iter().enumerate() {
        for a in [Values::Unit, Values::Ties] {
            let input = Input { seed: i as u64, a, b: Values::Unit };
            for v in PoolFwdVariant::checked() {
                pass_named(&name, check::maxpool_fwd_case(gpu(), s, v, input));
            }
            for v in PoolBwdVariant::checked() {
                pass_named(&name, check::maxpool_bwd_case(gpu(), s, v, input));
            }
        }
    }
}

#[test]
fn avgpool_every_variant() {
    for (i, (name, s)) in pools().into_iter().enumerate() {
        for v in PoolFwdVariant::checked() {
            pass_named(&name, check::avgpool_fwd_case(gpu(), s, v, Input::unit(i as u64)));
        }
        for v in PoolBwdVariant::checked() {
            pass_named(&name, check::avgpool_bwd_case(gpu(), s, v, Input::unit(i as u64)));
        }
    }
}

#[test]
fn maxpool_ties_pick_the_first_element() {
    let g = gpu();
    let s = Pool2dShape::square(1, 1, 4, 2, 2, 0);
    let x = g.upload(&[1.0f32; 16], &[16]).unwrap();
    let y = g.empty(&[4], dlsvm::gpu::DType::F32).unwrap();
    for v in PoolFwdVariant::checked() {
        let idx = g.empty(&[4], dlsvm::gpu::DType::I32).unwrap();
        g.run(&[&dlsvm::kernels::pool::maxpool_forward(g, &s, &x, &y, &idx, v).unwrap()]).unwrap();
        assert_eq!(g.download::<i32>(&idx).unwrap(), vec![0, 2, 8, 10], "{}", v.name());
    }
}

#[test]
fn pool_forward_variants_agree_bit_for_bit() {
    // The same windows summed in the same order: a plan that changes the pooling forward's variant
    // (another adapter's tuning) changes no value.
    let g = gpu();
    for (name, s) in pools() {
        let x = dlsvm::rng::Rng::new(7).vec_scaled(s.x_len(), 1.0);
        let tx = g.upload(&x, &[s.x_len()]).unwrap();
        let run = |v: PoolFwdVariant, max: bool| {
            let y = g.empty(&[s.y_len()], dlsvm::gpu::DType::F32).unwrap();
            let idx = g.empty(&[s.y_len()], dlsvm::gpu::DType::I32).unwrap();
            let d = if max {
                dlsvm::kernels::pool::maxpool_forward(g, &s, &tx, &y, &idx, v).unwrap()
            } else {
                dlsvm::kernels::pool::avgpool_forward(g, &s, &tx, &y, v).unwrap()
            };
            g.run(&[&d]).unwrap();
            let bits: Vec<u32> = g.download::<f32>(&y).unwrap().iter().map(|v| v.to_bits()).collect();
            (bits, if max { g.download::<i32>(&idx).unwrap() } else { Vec::new() })
        };
        for max in [true, false] {
            assert_eq!(run(PoolFwdVariant::Outputs, max), run(PoolFwdVariant::Rows, max), "{name} max={max}");
        }
    }
}

// ------------------------------------------------------------------------------------ activation

#[test]
fn relu_lengths_around_a_workgroup() {
    for n in shapes::ELEMENTWISE_LENGTHS {
        pass(check::relu_fwd_case(gpu(), n, Input::unit(n as u64)));
        pass(check::relu_bwd_case(gpu(), n, Input::unit(n as u64)));
    }
}

#[test]
fn relu_grid_folded_past_65535_workgroups() {
    // 65,536 workgroups of 256 plus one element: the grid must fold over two dimensions.
    let n = 65_536 * 256 + 1;
    pass(check::relu_fwd_case(gpu(), n, Input::unit(11)));
}

#[test]
fn every_folded_grid_with_its_grid_folded_7_wide() {
    // At the device limit only grids of millions of workgroups fold; these cases fold at
    // shapes::FOLD_WIDTH so the folded index and the ragged last row run on small shapes.
    let cases = check::folded_suite();
    assert!(cases.len() > 40, "only {} folded cases", cases.len());
    for case in cases {
        pass_named(&case.row, (case.run)(gpu()));
    }
}

#[test]
fn narrow_folds_fold_this_threads_grids_only_while_held() {
    let g = gpu();
    let x = g.upload(&vec![0.5f32; 10_007], &[10_007]).unwrap();
    let y = g.upload(&vec![0.0f32; 10_007], &[10_007]).unwrap();
    let groups = || dlsvm::kernels::activation::relu_forward(g, &x, &y).unwrap().groups;
    assert_eq!(groups(), [40, 1, 1], "10,007 elements in workgroups of 256");
    {
        let _narrow = g.narrow_folds(shapes::FOLD_WIDTH);
        assert_eq!(groups(), [7, 6, 1], "40 workgroups folded 7 wide: 6 rows, the last ragged");
        let other = std::thread::scope(|s| s.spawn(groups).join().unwrap());
        assert_eq!(other, [40, 1, 1], "another thread keeps the device limit");
    }
    assert_eq!(groups(), [40, 1, 1], "the guard restores the device limit");
}

#[test]
fn dropout_forward_and_backward_match_the_reference() {
    for (n, p) in [(1, 0.2), (257, 0.0), (10_007, 0.2), (10_007, 0.5), (4099, 0.9)] {
        pass(check::dropout_case(gpu(), n, p, (42, 3), false, Input::unit(1)));
        pass(check::dropout_case(gpu(), n, p, (42, 3), true, Input::unit(2)));
    }
}

#[test]
fn dropout_mask_depends_on_seed_and_step_and_repeats() {
    use dlsvm::kernels::activation::dropout_forward;
    let g = gpu();
    let n = 4096;
    let x = g.upload(&vec![1.0f32; n], &[n]).unwrap();
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

#[test]
fn fill_sets_every_element() {
    for n in shapes::ELEMENTWISE_LENGTHS {
        pass(check::fill_case(gpu(), n, -0.25));
    }
}

// ------------------------------------------------------------------------------------------ loss

#[test]
fn softmax_xent_row_shapes_with_the_maximum_last() {
    for (n, k) in shapes::ROW_SHAPES {
        pass(check::softmax_case(gpu(), n, k, Input::values((n * k) as u64, Values::Scaled(4.0))));
    }
}

#[test]
fn softmax_xent_logits_of_80_stay_finite() {
    let r = pass(check::softmax_case(gpu(), 64, 7, Input::values(3, Values::Scaled(80.0))));
    assert!(r.max_abs.is_finite());
}

#[test]
fn l2svm_row_shapes_and_c() {
    for ((n, k), c) in shapes::ROW_SHAPES.into_iter().zip([1.0, 1.0, 5.12, 0.1, 1.0]) {
        pass(check::l2svm_case(gpu(), n, k, c, Input::values((n + k) as u64, Values::Scaled(2.0))));
    }
}

#[test]
fn l1svm_row_shapes_and_c() {
    for ((n, k), c) in shapes::ROW_SHAPES.into_iter().zip([1.0, 1.0, 5.12, 0.1, 1.0]) {
        pass(check::l1svm_case(gpu(), n, k, c, Input::values((n + k) as u64, Values::Scaled(2.0))));
    }
}

/// The PCA input stage: covariance, orthonormal components, eigenvectors of the f64 covariance,
/// and the stage's projection against the f64 reference, on every named fit shape.
#[test]
fn pca_fit_and_projection_named_shapes() {
    for (n, d, k) in shapes::PCA_SHAPES {
        pass_named(&format!("pca n{n} d{d} k{k}"), check::pca_case(gpu(), n, d, k, (n + d + k) as u64));
    }
}

#[test]
fn losses_zero_for_fully_masked_batch() {
    use dlsvm::kernels::loss::{l1svm, l2svm, softmax_xent};
    let g = gpu();
    let (n, k) = (3, 4);
    let s = g.upload(&[0.5f32; 12], &[n, k]).unwrap();
    let y = g.upload(&[-1i32, -1, -1], &[n]).unwrap();
    for which in 0..3 {
        let loss = g.empty(&[n], dlsvm::gpu::DType::F32).unwrap();
        let grad = g.empty(&[n, k], dlsvm::gpu::DType::F32).unwrap();
        g.poison(&loss);
        g.poison(&grad);
        let d = match which {
            0 => softmax_xent(g, n, k, &s, &y, 1.0 / 3.0, &loss, &grad),
            1 => l2svm(g, n, k, &s, &y, 1.0 / 3.0, &loss, &grad),
            _ => l1svm(g, n, k, &s, &y, 1.0 / 3.0, &loss, &grad),
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
        pass(check::sgd_case(gpu(), n, (lr, m, wd), Input::unit(n as u64)));
    }
}

// ---------------------------------------------------------------------------------------- reduce

#[test]
fn sum_lengths() {
    for n in [1, 255, 256, 257, 1_000_003] {
        pass(check::sum_case(gpu(), n, false, Input::unit(n as u64)));
        pass(check::sum_case(gpu(), n, true, Input::unit(n as u64 + 1)));
    }
}

#[test]
fn slice_sums_in_order() {
    for (slices, n) in shapes::SLICE_SUM_SHAPES {
        pass(check::slice_sum_case(gpu(), slices, n, false, Input::unit(n as u64)));
        pass(check::slice_sum_case(gpu(), slices, n, true, Input::unit(n as u64 + 1)));
    }
}

#[test]
fn argmax_rows_with_ties_and_the_maximum_last() {
    for (n, k) in shapes::ROW_SHAPES {
        for v in [Values::Unit, Values::Ties] {
            pass(check::argmax_case(gpu(), n, k, Input::values(9, v)));
        }
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
    for (i, (outer, c, inner)) in shapes::CHANNEL_SUM_SHAPES.into_iter().enumerate() {
        pass(check::channel_sum_case(gpu(), outer, c, inner, i % 2 == 1, Input::unit(12)));
    }
}

// --------------------------------------------------------------------------------------- network

/// The loss a network reads back, against the formula (check/network.rs) and against the value
/// worked out by hand for its scores (0.5, -0.5, 2) with label 0 and (0, 0, 0) with label 2.
#[test]
fn network_loss_is_pinned_to_its_definition() {
    use dlsvm::check::network::{loss_by_definition, network_loss_case, LABELS};
    use dlsvm::model::Top;
    let scores = [[0.5, -0.5, 2.0], [0.0, 0.0, 0.0]];
    // Hinge terms: row 0: (1-0.5)² + (1-0.5)² + (1+2)² = 9.5; row 1: 1 + 1 + 1 = 3; C/N = 1/2.
    assert_eq!(loss_by_definition(Top::L2svm, &scores, &LABELS, 1.0), 6.25);
    assert_eq!(loss_by_definition(Top::L2svm, &scores, &LABELS, 0.5), 3.125);
    // Cross-entropy: row 0: ln(e^0.5 + e^-0.5 + e^2) - 0.5; row 1: ln 3; 1/N = 1/2.
    let row0 = (0.5f64.exp() + (-0.5f64).exp() + 2.0f64.exp()).ln() - 0.5;
    let xent = loss_by_definition(Top::Softmax, &scores, &LABELS, 1.0);
    assert!((xent - (row0 + 3f64.ln()) / 2.0).abs() < 1e-15 && (xent - 1.432490).abs() < 1e-6, "{xent}");
    // Hinge terms: row 0: 0.5 + 0.5 + 3 = 4; row 1: 1 + 1 + 1 = 3; C/N = 1/2.
    assert_eq!(loss_by_definition(Top::L1svm, &scores, &LABELS, 1.0), 3.5);
    for (top, c) in [(Top::L2svm, 1.0), (Top::L2svm, 0.5), (Top::Softmax, 1.0), (Top::L1svm, 1.0)] {
        pass(Box::pin(network_loss_case(gpu(), top, c)));
    }
}
