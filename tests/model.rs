//! The network: GPU training steps against the CPU reference network, a whole-network gradient
//! check, shape errors, checkpoints and resuming.

mod common;

use common::gpu;
use dlsvm::kernels::registry::{Caps, Op};
use dlsvm::model::cpu_net::{self, DropoutKey};
use dlsvm::model::plan::ops;
use dlsvm::model::{preset, GpuNet, LayerSpec, Net, NetConfig, Plan, Top};
use dlsvm::rng::Rng;

fn config(name: &str, top: Top) -> NetConfig {
    let mut c = preset(name).expect("preset");
    c.top = top;
    c
}

fn batch_data(net: &Net, batch: usize, seed: u64) -> (Vec<f32>, Vec<i32>) {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..batch * net.input_len()).map(|_| rng.range(-1.5, 1.5) as f32).collect();
    let y: Vec<i32> = (0..batch).map(|_| rng.below(net.classes) as i32).collect();
    (x, y)
}

/// Weights after `steps` GPU steps equal the CPU reference's (f32 storage, f64 sums) within
/// |gpu − cpu| <= 2e-4 + 2e-3·|cpu|: each step's f32 rounding differences (GPU sums in other orders)
/// are of order 1e-6 relative and grow through the steps; a wrong gradient term or update is
/// orders of magnitude larger.
fn gpu_steps_match_cpu(name: &str, top: Top, steps: u64) {
    gpu_steps_match_cpu_with(name, top, steps, |_| None);
}

/// [`gpu_steps_match_cpu`] with the step's kernel variants chosen by `choose` (an op's variant
/// name, or `None` for its default).
fn gpu_steps_match_cpu_with(name: &str, top: Top, steps: u64, choose: impl Fn(&Op) -> Option<&'static str>) {
    let g = gpu();
    let cfg = config(name, top);
    let net = Net::new(&cfg, 7).expect("network");
    let batch = 6;
    let init = net.init_params(3);
    let mut plan = Plan::default();
    for (key, op) in ops(&net, batch) {
        if let Some(name) = choose(&op) {
            plan.set(key, op.parse(name).expect("a variant of the op")).expect("its family");
        }
    }
    let gnet = GpuNet::with_plan(g, &net, batch, &init, 1.0, 77, &plan).expect("gpu network");
    let mut params = init.clone();
    let mut vel: Vec<Vec<f32>> = net.params.iter().map(|p| vec![0.0; p.len()]).collect();
    for step in 0..steps {
        let (x, y) = batch_data(&net, batch, 100 + step);
        let (lr, mom) = (0.01, if step == 0 { 0.5 } else { 0.9 });
        let sub = gnet.train_step(g, &x, &y, step, lr, mom).expect("step");
        g.wait_for(sub).expect("wait");
        let (gl, gc) = gnet.read_metrics(g).expect("metrics");
        gnet.reset_metrics(g);
        let drop = DropoutKey { seed: 77, step: step as u32 };
        let (cl, cc) = cpu_net::train_step(&net, &mut params, &mut vel, &x, &y, batch, drop, lr, mom, 1.0);
        assert!(
            (gl - cl).abs() <= 1e-4 + 1e-4 * cl.abs(),
            "{name} {top:?} step {step}: loss gpu {gl}, cpu {cl}"
        );
        assert_eq!(gc as u32, cc, "{name} {top:?} step {step}: correct predictions");
    }
    let (gp, gv) = gnet.download(g).expect("download");
    for (pi, p) in net.params.iter().enumerate() {
        for (what, got, want) in [("weights", &gp[pi], &params[pi]), ("momentum", &gv[pi], &vel[pi])] {
            for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                let allow = 2e-4 + 2e-3 * b.abs();
                assert!(
                    (a - b).abs() <= allow,
                    "{name} {top:?}: {what} of {}[{i}] after {steps} steps: gpu {a}, cpu {b}",
                    p.name
                );
            }
        }
        assert_ne!(gp[pi], init[pi], "{}: {} did not change", name, p.name);
    }
}

#[test]
fn gpu_steps_equal_cpu_reference_fer_small_l2svm() {
    gpu_steps_match_cpu("fer-small", Top::L2svm, 3);
}

#[test]
fn gpu_steps_equal_cpu_reference_fer_small_softmax() {
    gpu_steps_match_cpu("fer-small", Top::Softmax, 3);
}

#[test]
fn gpu_steps_equal_cpu_reference_mlp_l2svm() {
    gpu_steps_match_cpu("mlp", Top::L2svm, 3);
}

#[test]
fn gpu_steps_equal_cpu_reference_mlp_softmax() {
    gpu_steps_match_cpu("mlp", Top::Softmax, 3);
}

#[test]
fn gpu_steps_equal_cpu_reference_mlp_l1svm() {
    gpu_steps_match_cpu("mlp", Top::L1svm, 3);
}

/// The same with the GPU-class variants the H200 chose, whose steps run two dispatches for one op
/// (split-K products: the mlp's 784- and 512-long K give 2-3 slices at batch 6; the tiled weight
/// gradients and their slice sums) or a workgroup per output row (the top layer's dot kernel).
#[test]
fn gpu_steps_equal_cpu_reference_with_the_gpu_class_variants() {
    use dlsvm::kernels::gemm::DOT_MAX_N;
    let gpu_class = |op: &Op| match op {
        Op::Gemm(s) if s.n <= DOT_MAX_N => Some("dot64r4"),
        Op::Gemm(_) => Some("split64x64x8r4x4"),
        Op::ConvFwd(_) => Some("shared64x32x8"),
        Op::ConvData(_) => Some("shared128x32x8"),
        Op::ConvWeight(_) => Some("shared32x32x16r4x4"),
        Op::PoolFwd { .. } | Op::PoolBwd { .. } => None,
    };
    let mlp = Net::new(&config("mlp", Top::L2svm), 7).unwrap();
    let splitting = ops(&mlp, 6)
        .into_iter()
        .filter(|(_, op)| {
            let split = op.parse("split64x64x8r4x4");
            matches!(op, Op::Gemm(s) if s.n > DOT_MAX_N && op.runs_itself(split.unwrap(), &Caps::ANY))
        })
        .count();
    assert_eq!(splitting, 3, "the mlp's two hidden forwards and one backward data split K");
    gpu_steps_match_cpu_with("mlp", Top::L2svm, 3, gpu_class);
    gpu_steps_match_cpu_with("fer-small", Top::L2svm, 3, gpu_class);
}

/// The same with the variants the tuner chooses on lavapipe: the flipped backward data (two
/// dispatches: the weights flipped, then the forward kernel), the pooling rows variants, the wide
/// subgroup convolutions.
#[test]
fn gpu_steps_equal_cpu_reference_with_the_cpu_class_variants() {
    let cpu_class = |op: &Op| match op {
        Op::Gemm(_) => None,
        Op::ConvFwd(_) => Some("subgroup_wide"),
        Op::ConvData(_) => Some("flipped"),
        Op::ConvWeight(_) => Some("rows_subgroup"),
        Op::PoolFwd { .. } | Op::PoolBwd { .. } => Some("rows"),
    };
    gpu_steps_match_cpu_with("fer-small", Top::L2svm, 3, cpu_class);
}

/// The CPU network's analytic gradient against central differences, in f64, for fer-small (with
/// its dropout active under a fixed mask) and every top.
#[test]
fn whole_network_gradient_check_cpu() {
    for top in Top::ALL {
        let cfg = config("fer-small", top);
        let net = Net::new(&cfg, 7).expect("network");
        let batch = 2;
        let params: Vec<Vec<f64>> =
            net.init_params(5).into_iter().map(|p| p.into_iter().map(|v| v as f64).collect()).collect();
        // Biases start at 0; give them values so their gradients are exercised away from symmetry.
        let mut rng = Rng::new(9);
        let params: Vec<Vec<f64>> = params
            .into_iter()
            .zip(&net.params)
            .map(
                |(p, spec)| {
                    if spec.init_std == 0.0 {
                        p.iter().map(|_| rng.range(-0.1, 0.1)).collect()
                    } else {
                        p
                    }
                },
            )
            .collect();
        let (x32, y) = batch_data(&net, batch, 4);
        let x: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let drop = Some(DropoutKey { seed: 3, step: 1 });
        let objective = |p: &[Vec<f64>]| {
            let tr = cpu_net::forward(&net, p, &x, batch, drop);
            cpu_net::loss(&net, tr.acts.last().unwrap(), &y, batch, 1.0).0
        };
        let tr = cpu_net::forward(&net, &params, &x, batch, drop);
        let (_, ds) = cpu_net::loss(&net, tr.acts.last().unwrap(), &y, batch, 1.0);
        let grads = cpu_net::backward(&net, &params, &tr, ds, batch, drop);
        let h = 1e-6;
        let mut checked = 0;
        for (pi, spec) in net.params.iter().enumerate() {
            let mut pick = Rng::new(pi as u64);
            for _ in 0..12 {
                let i = pick.below(spec.len());
                let mut plus = params.clone();
                plus[pi][i] += h;
                let mut minus = params.clone();
                minus[pi][i] -= h;
                let fd = (objective(&plus) - objective(&minus)) / (2.0 * h);
                let an = grads[pi][i];
                assert!(
                    (fd - an).abs() <= 1e-6 + 1e-4 * an.abs().max(fd.abs()),
                    "{top:?}: d loss / d {}[{i}]: finite difference {fd}, backward {an}",
                    spec.name
                );
                checked += 1;
            }
        }
        assert!(grads.iter().all(|g| g.iter().any(|&v| v != 0.0)), "every parameter gets a gradient");
        assert_eq!(checked, 12 * net.params.len());
    }
}

#[test]
fn fer_preset_matches_the_paper() {
    let net = Net::new(&preset("fer").unwrap(), 7).unwrap();
    let dims: Vec<String> = net.dims.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        dims,
        [
            "1x42x42", "32x42x42", "32x21x21", "32x20x20", "32x10x10", "64x10x10", "64x5x5", "3072", "3072",
            "7"
        ]
    );
    let shapes: Vec<Vec<usize>> = net.params.iter().map(|p| p.shape.clone()).collect();
    assert_eq!(shapes[0], vec![32, 1, 5, 5]);
    assert_eq!(shapes[2], vec![32, 32, 4, 4]);
    assert_eq!(shapes[4], vec![64, 32, 5, 5]);
    assert_eq!(shapes[6], vec![3072, 1600]);
    assert_eq!(shapes[8], vec![7, 3072]);
    assert_eq!(net.params[8].weight_decay, 0.02);
    assert_eq!(net.params[6].weight_decay, 1e-4);
    assert_eq!(net.params[0].name, "layers.0.weight");
}

#[test]
fn shape_errors_name_the_layer() {
    let mut c = preset("fer-small").unwrap();
    c.layers.insert(
        0,
        LayerSpec::Conv {
            filters: 4,
            kernel: 50,
            stride: 1,
            pad: 0,
            weight_decay: None,
            lr_scale: None,
            init_std: None,
        },
    );
    let e = Net::new(&c, 7).unwrap_err().to_string();
    assert!(e.contains("layer 0 (conv)") && e.contains("larger than its input"), "{e}");
    let mut c = preset("mlp").unwrap();
    c.layers.push(LayerSpec::Relu);
    assert!(Net::new(&c, 10).is_err());
    let bad =
        "name = \"x\"\nimage_size = 28\ninput_size = 28\ntop = \"l2svm\"\n[[layers]]\ntype = \"banana\"\n";
    let e = NetConfig::from_toml(bad).unwrap_err();
    assert!(e.contains("banana"), "{e}");
    let bad = "name = \"x\"\nimage_size = 28\ninput_size = 28\ntop = \"l2svm\"\ncolour = 3\n[[layers]]\ntype = \"fc\"\n";
    let e = NetConfig::from_toml(bad).unwrap_err();
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn config_toml_round_trip() {
    for name in dlsvm::model::PRESETS {
        let c = preset(name).unwrap();
        let back = NetConfig::from_toml(&c.to_toml()).unwrap();
        assert_eq!(c, back, "{name}");
    }
}

#[test]
fn schedule_follows_the_paper() {
    let t = preset("fer").unwrap().train;
    assert!((t.lr_at(0, 50_000) - 0.05).abs() < 1e-12);
    assert!((t.lr_at(20_000, 50_000) - 0.025).abs() < 1e-12);
    let before = t.lr_at(33_333, 50_000);
    let after = t.lr_at(33_334, 50_000);
    assert!((before / after - 10.0).abs() < 0.01, "{before} {after}");
    assert!((t.lr_at(41_667, 50_000) / t.lr_at(41_666, 50_000) - 0.1).abs() < 0.01);
    assert_eq!(t.momentum_at(4_999), 0.5);
    assert_eq!(t.momentum_at(5_000), 0.9);
}

/// Every table of a network file takes its defaults for the keys it omits: a `[train.augment]`
/// naming only `mirror` keeps the FER values of the rest; an unknown key is still an error.
#[test]
fn partial_tables_take_defaults_unknown_keys_do_not() {
    use dlsvm::data::augment::Augment;
    let head = "name = \"t\"\nimage_size = 48\ninput_size = 42\ntop = \"l2svm\"\n[[layers]]\ntype = \"fc\"\n";
    let c = NetConfig::from_toml(&format!("{head}[train]\nbatch = 8\n[train.augment]\nmirror = false\n"))
        .unwrap();
    assert_eq!(c.train.augment, Augment { mirror: false, ..Augment::fer() });
    assert_eq!(c.train.batch, 8);
    assert_eq!(c.train.lr, dlsvm::model::TrainConfig::default().lr);
    let c = NetConfig::from_toml(&format!("{head}[train.augment]\nnoise_std = 0.3\n")).unwrap();
    assert_eq!(c.train.augment, Augment { noise_std: 0.3, ..Augment::fer() });
    let e = NetConfig::from_toml(&format!("{head}[train.augment]\nmirorr = false\n")).unwrap_err();
    assert!(e.contains("mirorr"), "{e}");
    let e = NetConfig::from_toml(&format!("{head}[train]\nbatchsize = 8\n")).unwrap_err();
    assert!(e.contains("batchsize"), "{e}");
}

/// Dropout masks are keyed by the layer's index in the network file, so a fusion that shortens the
/// resolved layer list (fc + relu run as one layer) leaves the key, and the masks, unchanged; the
/// CPU network draws exactly the masks `dropout_seed(mask seed, file index)` names.
#[test]
fn dropout_key_is_the_file_index_whatever_the_fusions() {
    use dlsvm::model::net::dropout_seed;
    use dlsvm::model::Layer;
    let fc = |out| LayerSpec::Fc { out, weight_decay: None, lr_scale: None, init_std: None };
    let mk = |layers| NetConfig {
        name: "d".into(),
        image_size: 4,
        input_size: 4,
        channels: 1,
        pca: None,
        top: Top::L2svm,
        layers,
        train: Default::default(),
    };
    // fc, relu (fused into the fc), dropout at file index 2, resolved index 1.
    let fused = Net::new(&mk(vec![fc(Some(6)), LayerSpec::Relu, LayerSpec::Dropout { p: 0.5 }, fc(None)]), 3)
        .unwrap();
    assert_eq!(fused.layers.len(), 3);
    assert!(matches!(fused.layers[1], Layer::Dropout { key: 2, .. }), "{:?}", fused.layers[1]);
    let keys: Vec<u32> = preset("fer")
        .map(|c| Net::new(&c, 7).unwrap().layers)
        .unwrap()
        .iter()
        .filter_map(|l| if let Layer::Dropout { key, .. } = l { Some(*key) } else { None })
        .collect();
    assert_eq!(keys, [11], "the fer preset's dropout is layer 11 of its file");
    // The CPU network's mask is the documented one.
    let params = fused.init_params(1);
    let x: Vec<f32> = (0..2 * 16).map(|i| i as f32 / 7.0 - 1.0).collect();
    let key = DropoutKey { seed: 77, step: 3 };
    let trace = cpu_net::forward(&fused, &params, &x, 2, Some(key));
    let (before, after) = (&trace.acts[1], &trace.acts[2]);
    let mut want = vec![0.0f32; before.len()];
    dlsvm::cpu::dropout_forward(before, &mut want, 0.5, dropout_seed(77, 2), 3);
    assert_eq!(after, &want);
    assert!(after.contains(&0.0) && after.iter().any(|&v| v != 0.0), "a mask that drops some");
}

/// The runs of `dlsvm compare` for one seed differ only in the top's loss: the same initial
/// weights (the top layer's too), batches, augmentation and dropout masks, and below the top the
/// same decays and learning-rate scales. After one GPU step from that shared start on one batch,
/// the weights below the top differ between two tops by exactly what their gradients explain:
/// `W_a − W_b = −lr·(G_a − G_b)`, with the G of the CPU reference. The same top twice is bit-equal.
#[test]
fn differing_tops_share_everything_but_the_top_gradient() {
    use dlsvm::compare::run_config;
    let g = gpu();
    let base = preset("fer-small").expect("preset");
    let cfgs: Vec<NetConfig> = Top::ALL.iter().map(|&t| run_config(&base, t, 5)).collect();
    let nets: Vec<Net> = cfgs.iter().map(|c| Net::new(c, 7).expect("network")).collect();
    let inits: Vec<Vec<Vec<f32>>> =
        nets.iter().zip(&cfgs).map(|(n, c)| n.init_params(c.train.seed)).collect();
    let below_top = nets[0].params.len() - 2;
    for i in 1..cfgs.len() {
        assert!(inits[i] == inits[0], "{:?}: other initial weights", cfgs[i].top);
        assert_eq!(cfgs[i].batch_spec(), cfgs[0].batch_spec(), "{:?}", cfgs[i].top);
        assert_eq!(cfgs[i].train.mask_seed(), cfgs[0].train.mask_seed());
        for (p, q) in nets[i].params[..below_top].iter().zip(&nets[0].params) {
            assert_eq!((p.weight_decay, p.lr_scale), (q.weight_decay, q.lr_scale), "{}", p.name);
        }
    }
    let batch = 6;
    let (x, y) = batch_data(&nets[0], batch, 42);
    let (lr, mom, mask) = (0.01, 0.5, cfgs[0].train.mask_seed());
    let gpu_step = |net: &Net, init: &[Vec<f32>]| {
        let gnet = GpuNet::new(g, net, batch, init, 1.0, mask).expect("gpu network");
        g.wait_for(gnet.train_step(g, &x, &y, 0, lr, mom).expect("step")).expect("wait");
        gnet.download(g).expect("download").0
    };
    let mut on_gpu = Vec::new();
    let mut on_cpu = Vec::new();
    for (net, init) in nets.iter().zip(&inits) {
        on_gpu.push(gpu_step(net, init));
        let mut params = init.clone();
        let mut vel: Vec<Vec<f32>> = net.params.iter().map(|p| vec![0.0; p.len()]).collect();
        let drop = DropoutKey { seed: mask, step: 0 };
        cpu_net::train_step(net, &mut params, &mut vel, &x, &y, batch, drop, lr, mom, 1.0);
        on_cpu.push(params);
    }
    assert!(gpu_step(&nets[0], &inits[0]) == on_gpu[0], "the same top twice is not bit-equal");
    for i in 1..nets.len() {
        let mut largest = 0.0f32;
        for (pi, p) in nets[0].params[..below_top].iter().enumerate() {
            for e in 0..p.len() {
                let dg = on_gpu[i][pi][e] - on_gpu[0][pi][e];
                let dc = on_cpu[i][pi][e] - on_cpu[0][pi][e];
                largest = largest.max(dc.abs());
                assert!(
                    (dg - dc).abs() <= 2e-7 + 1e-3 * dc.abs(),
                    "{:?} vs {:?}: {}[{e}] moved apart by {dg} on the GPU, {dc} by the gradients",
                    cfgs[i].top,
                    cfgs[0].top,
                    p.name
                );
            }
        }
        assert!(
            largest > 1e-6,
            "{:?}: the tops' gradients should differ below the top ({largest})",
            cfgs[i].top
        );
    }
}

/// A network with a PCA input stage: GPU steps equal the CPU reference's (the stage applied to
/// the raw inputs on both), and the stage survives a checkpoint round trip.
#[test]
fn pca_stage_steps_equal_cpu_reference_and_round_trip() {
    use dlsvm::model::pca::Pca;
    let g = gpu();
    let mut cfg = config("mlp", Top::L2svm);
    cfg.pca = Some(20);
    let net = Net::new(&cfg, 7).expect("network");
    assert_eq!(net.input_len(), 784);
    assert_eq!(net.dims[0].len(), 20);
    let (fit_x, _) = batch_data(&net, 200, 5);
    let (pca, kept) = Pca::fit(g, &fit_x, 200, 784, 20).expect("fit");
    assert!(kept > 0.0 && kept < 1.0, "{kept}");
    assert!(GpuNet::new(g, &net, 4, &net.init_params(1), 1.0, 7).is_err(), "an unfitted stage cannot run");
    let net = net.with_pca(Some(pca.clone())).expect("the stage fits the network");
    let batch = 6;
    let init = net.init_params(3);
    let gnet = GpuNet::new(g, &net, batch, &init, 1.0, 77).expect("gpu network");
    let mut params = init.clone();
    let mut vel: Vec<Vec<f32>> = net.params.iter().map(|p| vec![0.0; p.len()]).collect();
    for step in 0..2u64 {
        let (x, y) = batch_data(&net, batch, 100 + step);
        g.wait_for(gnet.train_step(g, &x, &y, step, 0.01, 0.5).expect("step")).expect("wait");
        let drop = DropoutKey { seed: 77, step: step as u32 };
        cpu_net::train_step(&net, &mut params, &mut vel, &x, &y, batch, drop, 0.01, 0.5, 1.0);
    }
    let (gp, _) = gnet.download(g).expect("download");
    for (pi, p) in net.params.iter().enumerate() {
        for (i, (a, b)) in gp[pi].iter().zip(&params[pi]).enumerate() {
            assert!((a - b).abs() <= 2e-4 + 2e-3 * b.abs(), "{}[{i}]: gpu {a}, cpu {b}", p.name);
        }
        assert_ne!(gp[pi], init[pi], "{} did not change", p.name);
    }
    // The stage is part of the model: saved, loaded, and required.
    let dir = std::env::temp_dir().join(format!("dlsvm-pca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    let normalizer = dlsvm::data::normalize::Normalizer {
        channels: 1,
        h: 28,
        w: 28,
        per_image: false,
        norm: 1.0,
        mean: vec![0.0; 784],
        std: vec![1.0; 784],
        std_floor: None,
    };
    let ck = dlsvm::model::checkpoint::Checkpoint {
        config: cfg.clone(),
        class_names: (0..7).map(|i| i.to_string()).collect(),
        normalizer,
        step: 2,
        total_steps: 2,
        params: gp,
        velocity: None,
        plan: None,
        adapter: None,
        pca: Some(pca.clone()),
    };
    dlsvm::model::checkpoint::save(&path, &ck).expect("save");
    let back = dlsvm::model::checkpoint::load(&path).expect("load");
    assert_eq!(back.pca, Some(pca));
    assert_eq!(back.net().expect("net").pca, back.pca);
    let no_stage = dlsvm::model::checkpoint::Checkpoint { pca: None, ..ck };
    assert!(
        dlsvm::model::checkpoint::save(&path, &no_stage).is_err() || {
            let e = dlsvm::model::checkpoint::load(&path).map(|_| ()).unwrap_err().to_string();
            e.contains("input.pca.mean") && e.contains("missing")
        }
    );
    std::fs::remove_dir_all(&dir).ok();
}
