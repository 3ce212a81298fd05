//! Layers, the network, its CPU reference and GPU execution, the optimizer schedule, checkpoints.

pub mod checkpoint;
pub mod config;
pub mod cpu_net;
pub mod gpu_net;
pub mod net;
pub mod pca;
pub mod plan;

pub use config::{preset, LayerSpec, NetConfig, Top, TrainConfig, PRESETS};
pub use gpu_net::GpuNet;
pub use net::{Layer, Net, Param};
pub use plan::Plan;
