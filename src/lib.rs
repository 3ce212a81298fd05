//! dlsvm: ConvNets with a linear-SVM (L2-SVM) top, trained entirely on the GPU through
//! handwritten WGSL compute shaders dispatched by wgpu.
//!
//! - [`gpu`]: adapter and device, tensors, pipeline cache, dispatch and timing;
//! - [`kernels`]: one host module per shader family (`shaders/*.wgsl`);
//! - [`cpu`]: the reference implementation of every op, forward and backward;
//! - [`check`]: kernel-vs-reference comparisons, shared by `cargo test` and `dlsvm check`;
//! - [`commands`]: the command line's grammar and the commands behind `dlsvm train`, `compare`
//!   and `eval` (src/main.rs parses, calls one, maps its error to an exit code).

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod check;
#[cfg(not(target_arch = "wasm32"))]
pub mod collect;
#[cfg(not(target_arch = "wasm32"))]
pub mod commands;
#[cfg(not(target_arch = "wasm32"))]
pub mod compare;
pub mod cpu;
pub mod data;
pub mod eval;
pub mod gpu;
pub mod kernels;
pub mod measure;
pub mod model;
pub mod report;
pub mod rng;
#[cfg(not(target_arch = "wasm32"))]
pub mod rundir;
#[cfg(not(target_arch = "wasm32"))]
pub mod select;
pub mod shapes;
#[cfg(not(target_arch = "wasm32"))]
pub mod slurm;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
pub mod tune;
