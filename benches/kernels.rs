//! `cargo bench`: the same measurements as `dlsvm bench`, on the default adapter (or the one named
//! by DLSVM_ADAPTER). Pass a filter after `--`, e.g. `cargo bench -- gemm_nn`.

use dlsvm::bench::{self, BenchOptions};
use dlsvm::gpu::Gpu;

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let gpu = match Gpu::new(std::env::var("DLSVM_ADAPTER").ok().as_deref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("benchmarks need a GPU adapter: {e}");
            std::process::exit(3);
        }
    };
    let opts = BenchOptions { filter, ..BenchOptions::default() };
    match bench::run(&gpu, &opts, |line| eprintln!("{line}")) {
        Ok(report) => print!("{}", bench::table(&report)),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
