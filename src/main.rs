//! The `dlsvm` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dlsvm::check::{self, Row};
use dlsvm::gpu::{self, Gpu, GpuError};

/// Exit codes (DESIGN.md §5).
const EXIT_FAILED: u8 = 1;
const EXIT_NO_ADAPTER: u8 = 3;

#[derive(Parser)]
#[command(
    name = "dlsvm",
    version,
    about = "ConvNets with a linear-SVM top, trained entirely on the GPU (WGSL + wgpu)"
)]
struct Cli {
    /// Use the adapter whose name contains this text (case-insensitive); default: the fastest.
    #[arg(long, global = true, env = "DLSVM_ADAPTER")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the adapter, backend, driver and the limits that matter.
    Info {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check every kernel against the CPU reference on this adapter.
    Check {
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Only rows whose kernel name contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
}

/// An error for the user: one line, and the exit code it maps to.
struct Failure {
    message: String,
    code: u8,
}

impl From<GpuError> for Failure {
    fn from(e: GpuError) -> Self {
        let code = match e {
            GpuError::NoAdapter | GpuError::AdapterNotFound { .. } | GpuError::AdapterTooSmall { .. } => {
                EXIT_NO_ADAPTER
            }
            GpuError::Device(_) => EXIT_NO_ADAPTER,
            _ => EXIT_FAILED,
        };
        Failure { message: e.to_string(), code }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("dlsvm: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Info { json } => info(cli.adapter.as_deref(), json),
        Command::Check { json, filter } => check(cli.adapter.as_deref(), json, filter.as_deref()),
    }
}

fn info(adapter: Option<&str>, json: bool) -> Result<u8, Failure> {
    let gpu = Gpu::new(adapter)?;
    let l = &gpu.limits;
    let have = gpu.adapter.limits();
    let features = gpu.adapter.features();
    let all: Vec<gpu::AdapterSummary> = gpu::list_adapters()
        .iter()
        .map(|a| {
            let i = a.get_info();
            gpu::AdapterSummary {
                name: i.name,
                backend: format!("{:?}", i.backend),
                device_type: format!("{:?}", i.device_type),
                driver: i.driver,
                driver_info: i.driver_info,
                vendor: i.vendor,
                device: i.device,
            }
        })
        .collect();
    let limits = [
        ("max_compute_workgroup_size_x", have.max_compute_workgroup_size_x as u64),
        ("max_compute_workgroup_size_y", have.max_compute_workgroup_size_y as u64),
        ("max_compute_workgroup_size_z", have.max_compute_workgroup_size_z as u64),
        ("max_compute_invocations_per_workgroup", have.max_compute_invocations_per_workgroup as u64),
        ("max_compute_workgroup_storage_size", have.max_compute_workgroup_storage_size as u64),
        ("max_compute_workgroups_per_dimension", have.max_compute_workgroups_per_dimension as u64),
        ("max_storage_buffers_per_shader_stage", have.max_storage_buffers_per_shader_stage as u64),
        ("max_storage_buffer_binding_size", l.max_storage_buffer_binding_size),
        ("max_uniform_buffer_binding_size", have.max_uniform_buffer_binding_size),
        ("max_buffer_size", l.max_buffer_size),
    ];
    let feature_names = [
        ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
        ("TIMESTAMP_QUERY_INSIDE_PASSES", wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        ("SHADER_F16", wgpu::Features::SHADER_F16),
        ("SUBGROUP", wgpu::Features::SUBGROUP),
        ("PIPELINE_CACHE", wgpu::Features::PIPELINE_CACHE),
    ];
    let feats: Vec<&str> =
        feature_names.iter().filter(|(_, f)| features.contains(*f)).map(|(n, _)| *n).collect();
    if json {
        let obj = serde_json::json!({
            "adapter": gpu.info,
            "limits": limits.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "features": feats,
            "timing": if gpu.timestamps { "timestamp queries" } else { "wall clock" },
            "adapters": all,
        });
        println!("{obj}");
        return Ok(0);
    }
    let i = &gpu.info;
    println!("adapter      {}", i.name);
    println!("backend      {}", i.backend);
    println!("device type  {}", i.device_type);
    println!("driver       {} {}", i.driver, i.driver_info);
    println!("vendor/dev   {:#06x}/{:#06x}", i.vendor, i.device);
    println!(
        "timing       {}",
        if gpu.timestamps { "timestamp queries" } else { "wall clock (no timestamp queries)" }
    );
    println!("features     {}", if feats.is_empty() { "-".to_string() } else { feats.join(" ") });
    println!("limits");
    for (k, v) in limits {
        println!("  {k:<40} {v}");
    }
    if all.len() > 1 {
        println!("all adapters (pick one with --adapter NAME or DLSVM_ADAPTER)");
        for a in &all {
            println!("  {} ({}, {})", a.name, a.backend, a.device_type);
        }
    }
    Ok(0)
}

fn check(adapter: Option<&str>, json: bool, filter: Option<&str>) -> Result<u8, Failure> {
    let gpu = Gpu::new(adapter)?;
    if !json {
        eprintln!(
            "checking every kernel against the CPU reference on {} ({})",
            gpu.info.name, gpu.info.backend
        );
    }
    let mut done = 0usize;
    let rows = check::run_suite(&gpu, filter, |_, _| {
        done += 1;
        if !json && done.is_multiple_of(20) {
            eprint!(".");
        }
    });
    if !json {
        eprintln!();
    }
    if rows.is_empty() {
        return Err(Failure {
            message: format!("no kernel matches the filter {:?}", filter.unwrap_or("")),
            code: 2,
        });
    }
    let failed = rows.iter().filter(|r| !r.passed).count();
    if json {
        let obj = serde_json::json!({
            "adapter": gpu.info,
            "rows": rows,
            "passed": failed == 0,
        });
        println!("{obj}");
    } else {
        print_table(&rows);
        if failed == 0 {
            println!("all {} kernels pass on {}", rows.len(), gpu.info.name);
        } else {
            println!("{failed} of {} kernels FAILED on {}", rows.len(), gpu.info.name);
            for r in rows.iter().filter(|r| !r.passed) {
                println!("  {}: {}", r.kernel, r.failure.as_deref().unwrap_or("?"));
            }
        }
    }
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.kernel.len()).max().unwrap_or(6).max(6);
    println!(
        "{:<w$}  {:>6}  {:>9}  {:>9}  {:>7}  {:<34}  result",
        "kernel", "shapes", "max abs", "max rel", "of tol", "tolerance (|diff| <= ...)"
    );
    for r in rows {
        println!(
            "{:<w$}  {:>6}  {:>9.2e}  {:>9.2e}  {:>7.3}  {:<34}  {}",
            r.kernel,
            r.shapes,
            r.max_abs,
            r.max_rel,
            r.worst_ratio,
            r.tolerance,
            if r.passed { "pass" } else { "FAIL" }
        );
    }
}
