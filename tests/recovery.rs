//! No run loses its work: checkpoints are written atomically and a failed write keeps the
//! previous one; a run killed with SIGKILL or stopped with Ctrl-C or a scheduler's signal resumes to the same weights, bit for
//! bit, as a run that was never interrupted; divergence stops the run without overwriting the last
//! good checkpoint; a batch too large for the device is refused before training; a lost device is
//! reported in one line. Every test drives the real `dlsvm` binary, as a user would.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

mod common;

use common::{bin, dlsvm, s, text, TempDir};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dlsvm::model::checkpoint::{self, Checkpoint};

/// A short fer-small run on built-in synthetic faces: 120 steps of 16 (about 6 s on lavapipe, 2
/// cores), a checkpoint every 10 steps; dropout, augmentation and the momentum switch at step 50
/// all take part, so resuming must restore every piece of state.
const STEPS: u64 = 120;
fn run_args(out: &Path) -> Vec<String> {
    let steps = STEPS.to_string();
    let args =
        ["train", "--synth-count", "160", "--batch", "16", "--steps", &steps, "--checkpoint-every", "10"];
    let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    v.extend(["--log-every", "5", "--seed", "11", "--json", "--out", s(out)].iter().map(|a| a.to_string()));
    v
}

fn spawn(args: &[String]) -> Child {
    bin().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the dlsvm binary starts")
}

/// The uninterrupted run, trained once for every test that compares against it.
fn reference() -> &'static Checkpoint {
    static REF: OnceLock<Checkpoint> = OnceLock::new();
    REF.get_or_init(|| {
        let out = TempDir::new("reference");
        let o = bin().args(run_args(&out)).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let ck = checkpoint::load(&out.join("model.safetensors")).unwrap();
        assert_eq!(ck.step, STEPS);
        ck
    })
}

/// Every tensor, weights and momentum, bit for bit.
fn assert_same_weights(a: &Checkpoint, b: &Checkpoint, what: &str) {
    assert_eq!(a.step, b.step, "{what}: steps differ");
    assert_eq!(a.normalizer, b.normalizer, "{what}: normalizers differ");
    let (va, vb) = (a.velocity.as_ref().unwrap(), b.velocity.as_ref().unwrap());
    for (kind, x, y) in [("parameter", &a.params, &b.params), ("momentum", va, vb)] {
        assert_eq!(x.len(), y.len());
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert_eq!(p.len(), q.len());
            let diff = p.iter().zip(q).filter(|(u, v)| u.to_bits() != v.to_bits()).count();
            assert_eq!(diff, 0, "{what}: {kind} tensor {i}: {diff} of {} values differ", p.len());
        }
    }
}

/// Waits until `path` exists (the child's first checkpoint); fails if the child exits first.
fn wait_for_file(child: &mut Child, path: &Path) {
    let began = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dlsvm exited ({status}) before writing {}", path.display());
        }
        assert!(began.elapsed() < Duration::from_secs(120), "no {} after 120 s", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_lines(o: &Output) -> Vec<String> {
    text(o).1.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// `lines` less the first, which must be the note that resuming the run of `at` planned steps at
/// step `at` with `now` steps moves the learning-rate schedule.
fn without_schedule_note(mut lines: Vec<String>, at: u64, now: u64) -> Vec<String> {
    let want = format!("dlsvm: note: resuming at step {at} of a run planned for {at} steps with {now} steps");
    assert!(lines.first().is_some_and(|l| l.starts_with(&want)), "no schedule note first: {lines:?}");
    lines.remove(0);
    lines
}

#[test]
fn atomic_write_failure_leaves_the_old_file() {
    let dir = TempDir::new("atomic");
    let path = dir.join("model.safetensors");
    checkpoint::write_atomic(&path, b"old").unwrap();
    checkpoint::write_atomic(&path, b"new").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    // The temporary file is `<name>.<pid>.tmp` in the same directory: a directory in its place makes
    // the write fail before the rename.
    let blocker = dir.join(format!("model.safetensors.{}.tmp", std::process::id()));
    std::fs::create_dir(&blocker).unwrap();
    assert!(checkpoint::write_atomic(&path, b"newer").is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"new", "a failed write replaced the file");
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2, "only the file and the blocker remain: {names:?}");
}

#[test]
fn failed_checkpoint_write_keeps_the_previous_checkpoint_and_exits_1() {
    let dir = TempDir::new("write-fail");
    let out = dir.join("run");
    let o = s(&out);
    let base = ["train", "--synth-count", "160", "--batch", "16", "--seed", "3", "--json", "--out", o];
    let first = dlsvm(&[&base[..], &["--steps", "4"]].concat(), &[]);
    assert_eq!(first.status.code(), Some(0), "{:?}", text(&first));
    let model = out.join("model.safetensors");
    let before = std::fs::read(&model).unwrap();
    // Resume towards step 12 with checkpoints every 4 steps, and put a directory where the child's
    // temporary checkpoint file goes (`model.safetensors.<pid>.tmp`) before its first write (the child
    // needs a second or more to load data and build its pipelines).
    let args: Vec<String> = [&base[..], &["--steps", "12", "--checkpoint-every", "4", "--resume"]]
        .concat()
        .iter()
        .map(|a| a.to_string())
        .collect();
    let child = spawn(&args);
    std::fs::create_dir(out.join(format!("model.safetensors.{}.tmp", child.id()))).unwrap();
    let r = child.wait_with_output().unwrap();
    let lines = without_schedule_note(stderr_lines(&r), 4, 12);
    assert_eq!(r.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line, no backtrace: {lines:?}");
    let err = &lines[0];
    assert!(err.starts_with("dlsvm: could not write the checkpoint of step 8: "), "{err}");
    assert!(err.contains(s(&model)) && err.contains("the last good checkpoint, step 4, is kept"), "{err}");
    assert_eq!(std::fs::read(&model).unwrap(), before, "the previous checkpoint changed");
    let ck = checkpoint::load(&model).unwrap();
    assert_eq!(ck.step, 4);
}

#[test]
fn killed_run_resumes_to_the_same_weights_bit_for_bit() {
    let reference = reference();
    let out = TempDir::new("killed");
    let args = run_args(&out);
    let mut child = spawn(&args);
    wait_for_file(&mut child, &out.join("model.safetensors"));
    // Between checkpoints: the steps after the first one are lost and must be redone identically.
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "dlsvm finished before it was killed; make the run longer");
    let at_kill = checkpoint::load(&out.join("model.safetensors")).unwrap();
    assert!(
        at_kill.step > 0 && at_kill.step < STEPS && at_kill.step.is_multiple_of(10),
        "step {}",
        at_kill.step
    );
    let mut resume = args.clone();
    resume.push("--resume".into());
    let o = bin().args(&resume).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(!text(&o).1.contains("resumes on"), "same adapter, same device: no note; {:?}", text(&o));
    let resumed = checkpoint::load(&out.join("model.safetensors")).unwrap();
    assert_same_weights(reference, &resumed, &format!("killed after step {} and resumed", at_kill.step));
    // The killed run's records past its checkpoint were dropped and rewritten once.
    let steps: Vec<u64> =
        dlsvm::report::read_metrics(&out.join("metrics.csv")).unwrap().iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=STEPS / 10).map(|e| e * 10).collect::<Vec<_>>());
}

/// Resuming on the same adapter with its subgroups turned off (`DLSVM_SUBGROUPS=off`) would run the
/// tiled kernel for every subgroup variant the run recorded: the resume says in one line that it
/// will not end bit-equal, as on another adapter (the checkpoint's adapter names how the device was
/// opened). On an adapter without subgroups nothing changes, and nothing is said.
#[test]
fn resume_with_subgroups_turned_off_says_it_will_not_be_bit_exact() {
    let has_subgroups = dlsvm::gpu::Gpu::new(None)
        .unwrap_or_else(|e| panic!("{e}; {}", dlsvm::gpu::INSTALL_HINT))
        .adapter
        .features()
        .contains(wgpu::Features::SUBGROUP);
    let out = TempDir::new("subgroups-off");
    let args = run_args(&out);
    let mut child = spawn(&args);
    wait_for_file(&mut child, &out.join("model.safetensors"));
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = checkpoint::load(&out.join("model.safetensors")).unwrap();
    let recorded = at_kill.adapter.clone().expect("the checkpoint names its adapter");
    assert!(!recorded.contains("subgroups off"), "{recorded}");
    let mut resume = args.clone();
    resume.push("--resume".into());
    let o = bin().args(&resume).env("DLSVM_SUBGROUPS", "off").output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("resumes on")).collect();
    if has_subgroups {
        assert_eq!(notes.len(), 1, "one note: {err}");
        assert!(notes[0].contains("subgroups off") && notes[0].contains("bit-equal"), "{}", notes[0]);
    } else {
        assert!(notes.is_empty(), "{err}");
    }
}

/// A signal (Ctrl-C's SIGINT, or what a scheduler sends) stops the run after the current step with
/// a checkpoint, exit code 128 + the signal, one acknowledgement naming it and one final line; the
/// command that line prints finishes the run on the uninterrupted run's weights, bit for bit.
#[cfg(unix)]
fn signal_stops_with_a_checkpoint_and_the_printed_resume_matches(signal: &str, code: i32) {
    let reference = reference();
    let out = TempDir::new(&format!("sig{signal}"));
    let args = run_args(&out);
    let mut child = spawn(&args);
    wait_for_file(&mut child, &out.join("model.safetensors"));
    let k = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(k.success());
    let o = child.wait_with_output().unwrap();
    let lines = stderr_lines(&o);
    assert_eq!(o.status.code(), Some(code), "SIG{signal}: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("SIG{signal}")) && l.contains("stopping after the current step")),
        "the acknowledgement names SIG{signal}: {lines:?}"
    );
    let last = lines.last().unwrap();
    // "dlsvm: interrupted at step N of 120; checkpoint written to DIR/model.safetensors; continue with: CMD"
    let step: u64 = last
        .strip_prefix("dlsvm: interrupted at step ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(
        last.contains(&format!(" of {STEPS}; checkpoint written to {}", s(&out.join("model.safetensors"))))
    );
    assert!(step > 0 && step < STEPS, "{last}");
    assert!(lines.len() <= 2, "an acknowledgement and the final line: {lines:?}");
    let ck = checkpoint::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(ck.step, step, "the checkpoint is the step the message names");
    // The printed command (the binary, this invocation's arguments, --resume) finishes the run.
    let cmd = last.split("; continue with: ").nth(1).unwrap_or_else(|| panic!("{last}"));
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(words.last(), Some(&"--resume"), "{cmd}");
    assert_eq!(words[1..words.len() - 1], args.iter().map(String::as_str).collect::<Vec<_>>()[..], "{cmd}");
    let o = Command::new(words[0]).args(&words[1..]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let resumed = checkpoint::load(&out.join("model.safetensors")).unwrap();
    assert_same_weights(reference, &resumed, &format!("interrupted after step {step} and resumed"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_with_a_checkpoint_and_the_printed_resume_matches() {
    signal_stops_with_a_checkpoint_and_the_printed_resume_matches("INT", 130);
}

/// Preemption or `scancel`.
#[cfg(unix)]
#[test]
fn sigterm_stops_with_a_checkpoint_and_exit_143() {
    signal_stops_with_a_checkpoint_and_the_printed_resume_matches("TERM", 143);
}

#[cfg(unix)]
#[test]
fn sighup_stops_with_a_checkpoint_and_exit_129() {
    signal_stops_with_a_checkpoint_and_the_printed_resume_matches("HUP", 129);
}

/// SLURM's `--signal=B:USR1@N` warning before the time limit.
#[cfg(unix)]
#[test]
fn sigusr1_stops_with_a_checkpoint_and_exit_138() {
    signal_stops_with_a_checkpoint_and_the_printed_resume_matches("USR1", 138);
}

#[test]
fn divergence_stops_the_run_and_keeps_the_last_good_checkpoint() {
    use dlsvm::train::divergence;
    assert!(divergence(f64::NAN, Some(2.0)).is_some_and(|w| w.contains("NaN")));
    assert!(divergence(f64::INFINITY, None).is_some_and(|w| w.contains("inf")));
    assert!(divergence(3e6, Some(2.0)).is_some_and(|w| w.contains("first logged loss 2.0000")));
    assert_eq!(divergence(1.9e6, Some(2.0)), None);
    assert_eq!(divergence(50.0, None), None);

    let dir = TempDir::new("diverge");
    let out = dir.join("run");
    let o = s(&out);
    let base = ["train", "--synth-count", "160", "--batch", "16", "--seed", "5", "--json", "--out", o];
    let first = dlsvm(&[&base[..], &["--steps", "4"]].concat(), &[]);
    assert_eq!(first.status.code(), Some(0), "{:?}", text(&first));
    let model = out.join("model.safetensors");
    let good = std::fs::read(&model).unwrap();
    // An absurd learning rate from step 5 on, checkpoints every 2 steps but the loss logged only every
    // 5: the checkpoint steps still check the loss and the weights, so nothing non-finite is written.
    let rest = ["--steps", "40", "--lr", "1e6", "--checkpoint-every", "2", "--log-every", "5", "--resume"];
    let r = dlsvm(&[&base[..], &rest[..]].concat(), &[]);
    let lines = without_schedule_note(stderr_lines(&r), 4, 40);
    assert_eq!(r.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let err = &lines[0];
    assert!(err.starts_with("dlsvm: training diverged at step "), "{err}");
    let at: u64 = err["dlsvm: training diverged at step ".len()..]
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!((5..=10).contains(&at), "detected within one logging interval of the first bad step: {err}");
    let last_finite = err.split("last finite loss: ").nth(1).and_then(|r| r.split(')').next()).unwrap();
    assert!(last_finite.parse::<f64>().is_ok_and(f64::is_finite), "{err}");
    assert!(err.contains(&format!("the last good checkpoint, step 4, is kept in {}", s(&model))), "{err}");
    assert!(err.contains("try a smaller --lr"), "{err}");
    assert_eq!(std::fs::read(&model).unwrap(), good, "the last good checkpoint was overwritten");
    assert_eq!(checkpoint::load(&model).unwrap().step, 4);
    let snaps: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(snaps, ["step-00000004.safetensors"], "no snapshot after the divergence");
}

#[test]
fn batch_over_a_lowered_buffer_limit_is_refused_with_the_largest_that_fits() {
    let dir = TempDir::new("limit-env");
    let out = dir.join("run");
    // fer-small's largest activation is conv1's 8x42x42 floats: 56,448 bytes per sample.
    let limit = 1_000_000u64;
    let fits = limit / (8 * 42 * 42 * 4);
    assert_eq!(fits, 17);
    let env = [("DLSVM_MAX_BUFFER_BYTES", "1000000")];
    let base = ["train", "--synth-count", "100", "--steps", "2", "--json", "--out", s(&out)];
    let r = dlsvm(&[&base[..], &["--batch", "64"]].concat(), &env);
    let lines = stderr_lines(&r);
    assert_eq!(r.status.code(), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let err = &lines[0];
    assert!(
        err.contains(
            "batch 64 of network fer-small needs a 3612672-byte buffer for its layer 0 output 8x42x42"
        ),
        "{err}"
    );
    assert!(err.contains("DLSVM_MAX_BUFFER_BYTES of 1000000 bytes"), "{err}");
    assert!(err.contains(&format!("the largest batch that fits is {fits} (use --batch {fits})")), "{err}");
    assert!(!out.join("model.safetensors").exists(), "refused before training");
    // The batch it names does fit.
    let ok = dlsvm(&[&base[..], &["--batch", &fits.to_string()]].concat(), &env);
    assert_eq!(ok.status.code(), Some(0), "{:?}", text(&ok));
    // Evaluation takes a smaller batch under the limit instead of failing, with the same results.
    let model = out.join("model.safetensors");
    let eval = ["eval", "--model", s(&model), "--json", "--out", s(&dir)];
    let (small, full) = (dlsvm(&eval, &env), dlsvm(&eval, &[]));
    assert_eq!(small.status.code(), Some(0), "{:?}", text(&small));
    assert_eq!(full.status.code(), Some(0), "{:?}", text(&full));
    let acc = |o: &Output| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(text(o).0.trim()).expect("eval --json");
        v.pointer("/splits").or(v.get("accuracy")).cloned().unwrap_or(v)
    };
    assert_eq!(acc(&small), acc(&full), "evaluation at batch {fits} vs 128");
}

#[test]
fn batch_over_the_adapters_own_limit_is_refused_before_training() {
    let info = dlsvm(&["info", "--json"], &[]);
    assert_eq!(info.status.code(), Some(0), "{:?}", text(&info));
    let v: serde_json::Value = serde_json::from_str(text(&info).0.trim()).unwrap();
    let binding = v["limits"]["max_storage_buffer_binding_size"].as_u64().unwrap();
    let buffer = v["limits"]["max_buffer_size"].as_u64().unwrap();
    // A 1x1 convolution with 4096 filters on 48x48 images: 37.7 MB of activation per sample.
    let per_sample = 4096u64 * 48 * 48 * 4;
    let fits = binding.min(buffer) / per_sample;
    let batch = 200;
    assert!(fits < batch, "this adapter holds {fits} samples: pick a wider network for the test");
    let dir = TempDir::new("limit-real");
    let cfg = dir.join("wide.toml");
    std::fs::write(
        &cfg,
        "name = \"wide\"\nimage_size = 48\ninput_size = 48\ntop = \"l2svm\"\n\
         [[layers]]\ntype = \"conv\"\nfilters = 4096\nkernel = 1\n\
         [[layers]]\ntype = \"max_pool\"\nsize = 48\nstride = 48\n\
         [[layers]]\ntype = \"fc\"\n[train]\nsteps = 1\n",
    )
    .unwrap();
    let out = dir.join("run");
    let b = batch.to_string();
    let args = ["train", "--config", s(&cfg), "--synth-count", &b, "--batch", &b, "--json", "--out", s(&out)];
    let r = dlsvm(&args, &[]);
    let lines = stderr_lines(&r);
    assert_eq!(r.status.code(), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let want = if fits == 0 {
        "not even one sample fits".to_string()
    } else {
        format!("the largest batch that fits is {fits} (use --batch {fits})")
    };
    assert!(lines[0].contains(&want) && lines[0].contains("layer 0 output 4096x48x48"), "{}", lines[0]);
    assert!(!out.join("model.safetensors").exists(), "refused before training");
}

#[test]
fn lost_device_is_reported_in_one_line_and_the_checkpoint_kept() {
    let dir = TempDir::new("lost");
    let out = dir.join("run");
    let args = ["train", "--synth-count", "160", "--batch", "16", "--steps", "40", "--checkpoint-every", "5"];
    let r =
        dlsvm(&[&args[..], &["--json", "--out", s(&out)]].concat(), &[(dlsvm::train::LOSE_DEVICE_ENV, "7")]);
    let lines = stderr_lines(&r);
    assert_eq!(r.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let model = out.join("model.safetensors");
    assert!(lines[0].starts_with("dlsvm: the GPU device was lost at step 7 ("), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("the last good checkpoint, step 5, is kept in {}", s(&model))),
        "{}",
        lines[0]
    );
    assert_eq!(checkpoint::load(&model).unwrap().step, 5);
}

/// The batch check counts every buffer of the step, not only the activations: in this network the
/// second convolution's weight-gradient partial sums (one slice of 3 samples per 102,400 weights)
/// outgrow every activation, and a limit that holds the activations of batch 30 but not those
/// partial sums refuses it, naming them and the largest batch that fits (24), which then trains.
#[test]
fn batch_check_counts_the_weight_gradient_partial_sums() {
    let dir = TempDir::new("limit-partials");
    let cfg = dir.join("partials.toml");
    std::fs::write(
        &cfg,
        "name = \"partials\"\nimage_size = 20\ninput_size = 20\ntop = \"l2svm\"\n\
         [[layers]]\ntype = \"conv\"\nfilters = 64\nkernel = 3\npad = 1\n[[layers]]\ntype = \"relu\"\n\
         [[layers]]\ntype = \"conv\"\nfilters = 64\nkernel = 5\npad = 2\n[[layers]]\ntype = \"relu\"\n\
         [[layers]]\ntype = \"avg_pool\"\nsize = 4\nstride = 4\n[[layers]]\ntype = \"fc\"\n\
         [train]\nsteps = 1\nlog_every = 1\n",
    )
    .unwrap();
    // Per sample: activations of 64x20x20 floats (102,400 bytes); partial sums: ceil(batch / 3)
    // slices of 64·64·5·5 floats (409,600 bytes each).
    let limit = 3_500_000u64;
    assert!(30 * 102_400 <= limit && (8 * 409_600..10 * 409_600).contains(&limit));
    let env = [("DLSVM_MAX_BUFFER_BYTES", "3500000")];
    let out = dir.join("run");
    let base = ["train", "--config", s(&cfg), "--synth-count", "60", "--json", "--out", s(&out)];
    let r = dlsvm(&[&base[..], &["--batch", "30"]].concat(), &env);
    // The synthetic faces are resized to 20x20, with a warning per split.
    let lines: Vec<String> =
        stderr_lines(&r).into_iter().filter(|l| !l.contains("warning: resized")).collect();
    assert_eq!(r.status.code(), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let err = &lines[0];
    assert!(
        err.contains("needs a 4096000-byte buffer for its layer 1 weight-gradient partial sums"),
        "{err}"
    );
    assert!(err.contains("the largest batch that fits is 24 (use --batch 24)"), "{err}");
    let ok = dlsvm(&[&base[..], &["--batch", "24"]].concat(), &env);
    assert_eq!(ok.status.code(), Some(0), "{:?}", text(&ok));
}

/// What a requeued cluster job does: the same command, `--resume` included from the first
/// attempt, runs again. On an empty run directory it starts fresh; stopped by SIGTERM (preemption)
/// and run again unchanged, it resumes and ends on the uninterrupted run's weights, bit for bit.
/// (A checkpoint of another network or data is refused: tests/bad_input.rs.)
#[cfg(unix)]
#[test]
fn the_same_command_with_resume_starts_fresh_then_resumes_after_preemption() {
    let reference = reference();
    let out = TempDir::new("requeue");
    let mut args = run_args(&out);
    args.push("--resume".into());
    let mut child = spawn(&args);
    wait_for_file(&mut child, &out.join("model.safetensors"));
    let k = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(k.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{:?}", text(&o));
    let stopped = checkpoint::load(&out.join("model.safetensors")).unwrap().step;
    assert!(
        stopped > 0 && stopped < STEPS,
        "the first attempt started on the empty directory and stopped at {stopped}"
    );
    let o = bin().args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let resumed = checkpoint::load(&out.join("model.safetensors")).unwrap();
    assert_same_weights(
        reference,
        &resumed,
        &format!("preempted after step {stopped}, the same command again"),
    );
}
