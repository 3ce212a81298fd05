use super::INSTALL_HINT;

/// Everything the GPU runtime can fail with. Each message is one sentence naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found: {INSTALL_HINT}")]
    NoAdapter,
    #[error("no adapter matches {wanted:?}; available: {available}")]
    AdapterNotFound { wanted: String, available: String },
    #[error("adapter {adapter} offers {got} {what}, dlsvm needs at least {need}")]
    AdapterTooSmall { adapter: String, what: String, need: u64, got: u64 },
    #[error("could not open the device: {0}")]
    Device(String),
    #[error("shader {kernel} failed to compile: {message}")]
    Shader { kernel: String, message: String },
    #[error("{op}: {what} exceeds the device limit of {limit}")]
    TooLarge { op: String, what: String, limit: u64 },
    #[error("{op}: {message}")]
    Shape { op: String, message: String },
    #[error("reading a buffer back failed: {0}")]
    Map(String),
    #[error(
        "a kernel wrote past the end of the {tensor}: element {index} of its NaN padding holds \
         {bits:#010x} ({value:e} as f32)",
        value = f32::from_bits(*bits)
    )]
    PastEnd { tensor: String, index: usize, bits: u32 },
    #[error(
        "{waiting_for} did not finish within {limit_s} s; the device is stuck (nothing more can run on it)"
    )]
    Hung { waiting_for: String, limit_s: f64 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl GpuError {
    /// A shape error for `op`.
    pub fn shape(op: &str, message: impl Into<String>) -> Self {
        GpuError::Shape { op: op.to_string(), message: message.into() }
    }

    /// Whether the device stopped on a kernel that never finished ([`GpuError::Hung`]): nothing
    /// submitted after it can run.
    pub fn is_hang(&self) -> bool {
        matches!(self, GpuError::Hung { .. })
    }
}
