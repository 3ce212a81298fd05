//! The GPU runtime: adapter choice, device, tensors (storage buffers with a shape), upload and
//! readback, the pipeline cache, dispatch and timing.
//!
//! Everything a kernel needs is created once: shader modules and pipelines are cached by
//! (shader, entry point, specialization), bind-group layouts by their binding counts. A kernel call
//! is a [`Dispatch`] (pipeline + bind group + params buffer + workgroup grid) that can be prepared
//! once and encoded many times.

mod error;
mod pipeline;
mod tensor;
mod watch;

pub use error::GpuError;
pub use pipeline::{BindingKind, Extension, KernelParams, ParamsDecl, ShaderDef, Spec, PRELUDE};
pub use tensor::{DType, Element, Tensor, PAD_BITS};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use web_time::Instant;

use pipeline::PipelineKey;

/// How to get an adapter, printed whenever none is usable.
pub const INSTALL_HINT: &str =
    "install a GPU driver with Vulkan, Metal, DX12 or GL support; on a machine without a GPU, \
install Mesa's software Vulkan driver (Debian/Ubuntu: `sudo apt-get install mesa-vulkan-drivers`)";

/// The limits every dlsvm kernel stays within; an adapter below them is refused.
pub const MIN_INVOCATIONS: u32 = 256;
pub const MIN_WORKGROUP_STORAGE: u32 = 16 * 1024;
pub const MIN_STORAGE_BUFFERS: u32 = 6;

/// A description of an adapter, for `dlsvm info` and error messages.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
}

impl AdapterSummary {
    fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor: info.vendor,
            device: info.device,
        }
    }
}

/// What `dlsvm info` shows of an opened adapter: its description, the limits and features that
/// matter, how kernels are timed, and every adapter the instance can see.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    pub adapter: AdapterSummary,
    pub limits: std::collections::BTreeMap<String, u64>,
    pub features: Vec<&'static str>,
    pub timing: &'static str,
    /// Whether the subgroup kernels run here, or their fallbacks (and why).
    pub subgroups: &'static str,
    /// The adapter's subgroup sizes `[min, max]` where it has subgroups.
    pub subgroup_sizes: Option<[u32; 2]>,
    pub adapters: Vec<AdapterSummary>,
}

impl AdapterReport {
    pub fn new(gpu: &Gpu) -> AdapterReport {
        let have = gpu.adapter.limits();
        let l = &gpu.limits;
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
        let features = gpu.adapter.features();
        let named = [
            ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
            ("TIMESTAMP_QUERY_INSIDE_PASSES", wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            ("SHADER_F16", wgpu::Features::SHADER_F16),
            ("SUBGROUP", wgpu::Features::SUBGROUP),
            ("PIPELINE_CACHE", wgpu::Features::PIPELINE_CACHE),
        ];
        AdapterReport {
            adapter: gpu.info.clone(),
            limits: limits.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            features: named.iter().filter(|(_, f)| features.contains(*f)).map(|(n, _)| *n).collect(),
            timing: if gpu.timestamps { "timestamp queries" } else { "wall clock" },
            subgroups: match (gpu.subgroups, features.contains(wgpu::Features::SUBGROUP)) {
                (true, _) => "used (the subgroup kernels run)",
                (false, true) => {
                    "turned off by DLSVM_SUBGROUPS=off (the subgroup kernels run their fallbacks)"
                }
                (false, false) => "not on this adapter (the subgroup kernels run their fallbacks)",
            },
            subgroup_sizes: features.contains(wgpu::Features::SUBGROUP).then(|| {
                let info = gpu.adapter.get_info();
                [info.subgroup_min_size, info.subgroup_max_size]
            }),
            #[cfg(not(target_arch = "wasm32"))]
            adapters: list_adapters().iter().map(|a| AdapterSummary::of(&a.get_info())).collect(),
            // A page sees the one adapter the browser gave it.
            #[cfg(target_arch = "wasm32")]
            adapters: vec![AdapterSummary::of(&gpu.adapter.get_info())],
        }
    }
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.adapter;
        writeln!(f, "adapter      {}", i.name)?;
        writeln!(f, "backend      {}", i.backend)?;
        writeln!(f, "device type  {}", i.device_type)?;
        writeln!(f, "driver       {} {}", i.driver, i.driver_info)?;
        writeln!(f, "vendor/dev   {:#06x}/{:#06x}", i.vendor, i.device)?;
        writeln!(f, "timing       {}", self.timing)?;
        let features = if self.features.is_empty() { "-".to_string() } else { self.features.join(" ") };
        writeln!(f, "features     {features}")?;
        match self.subgroup_sizes {
            Some([min, max]) if min == max => writeln!(f, "subgroups    {}, {min} lanes", self.subgroups)?,
            Some([min, max]) => writeln!(f, "subgroups    {}, {min}-{max} lanes", self.subgroups)?,
            None => writeln!(f, "subgroups    {}", self.subgroups)?,
        }
        writeln!(f, "limits")?;
        for (k, v) in &self.limits {
            writeln!(f, "  {k:<40} {v}")?;
        }
        if self.adapters.len() > 1 {
            writeln!(f, "all adapters (pick one with --adapter NAME or DLSVM_ADAPTER)")?;
            for a in &self.adapters {
                writeln!(f, "  {} ({}, {})", a.name, a.backend, a.device_type)?;
            }
        }
        Ok(())
    }
}

/// Set to `webgpu` to open the device with WebGPU's default limits (256 invocations and 16 KiB of
/// workgroup memory per workgroup, 8 storage buffers per stage, 128 MiB per binding, 256 MiB per
/// buffer, 65,535 workgroups per dimension) instead of the adapter's: what browsers and the weakest
/// consumer GPUs give. CI runs the kernel tests this way.
pub const LIMITS_ENV: &str = "DLSVM_LIMITS";

/// The device, its queue, and the caches built on it.
/// Set to 1 to compile every shader with naga's runtime bounds checks, including the kernels marked
/// `unchecked` (a debugging aid and a second configuration the CI tests).
pub const SHADER_CHECKS_ENV: &str = "DLSVM_SHADER_CHECKS";

/// Set to `off` to open the device without the SUBGROUP feature even where the adapter has it: the
/// subgroup kernels then fall back to their core variants (a workaround for a driver's subgroup
/// bugs, and how the tests reach the fallback on an adapter that has subgroups).
pub const SUBGROUPS_ENV: &str = "DLSVM_SUBGROUPS";

pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: AdapterSummary,
    pub limits: wgpu::Limits,
    pub timestamps: bool,
    /// Whether the device was opened with the SUBGROUP feature ([`SUBGROUPS_ENV`]), which the
    /// shaders marked [`Extension::Subgroups`] need.
    pub subgroups: bool,
    /// Whether the device was opened with WebGPU's default limits ([`LIMITS_ENV`]).
    pub webgpu_limits: bool,
    /// Whether every shader keeps naga's runtime bounds checks ([`SHADER_CHECKS_ENV`] = 1), even
    /// those marked `unchecked`.
    pub shader_checks: bool,
    /// Whether the device was opened for checking ([`Gpu::enable_checks`]).
    checks: bool,
    /// The submissions, and how long a wait for one may take ([`Gpu::enable_checks`]).
    watch: Arc<Mutex<watch::Watch>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    layouts: Mutex<HashMap<Vec<BindingKind>, Arc<Layouts>>>,
    dummy: Tensor,
    /// Where [`Gpu::submit`] resolves a pass's two timestamps (when the adapter has them).
    timing_resolve: Option<wgpu::Buffer>,
    /// In a browser, the error scopes of the pipelines built since the last read-back, with
    /// each pipeline's label ([`Gpu::pipeline`]).
    #[cfg(target_arch = "wasm32")]
    pending_scopes: Mutex<Vec<(String, ErrorScope)>>,
}

thread_local! {
    /// The width at which this thread's 1-D grids fold onto a second dimension; 0 for the device
    /// limit ([`Gpu::narrow_folds`]).
    static FOLD_WIDTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// While alive, the 1-D grids this thread prepares fold at a narrow width ([`Gpu::narrow_folds`]).
pub struct NarrowFolds(u32);

impl Drop for NarrowFolds {
    fn drop(&mut self) {
        FOLD_WIDTH.with(|f| f.set(self.0));
    }
}

/// A pipeline's error scope, popped: what the browser answers about it.
#[cfg(target_arch = "wasm32")]
type ErrorScope = std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>;

/// A bind-group layout and the pipeline layout built on it.
type Layouts = (wgpu::BindGroupLayout, wgpu::PipelineLayout);

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 1,
        _ => 0,
    };
    (ty, backend)
}

/// Every adapter the instance can see (honours `WGPU_BACKEND`). In a browser: the one adapter
/// `navigator.gpu` gives the page.
pub async fn adapters() -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    instance.enumerate_adapters(wgpu::Backends::all()).await
}

/// [`adapters`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<wgpu::Adapter> {
    pollster::block_on(adapters())
}

impl Gpu {
    /// Opens the adapter whose name contains `filter` (case-insensitive), or else the one with the
    /// highest performance class (discrete > integrated > virtual > CPU; native APIs before GL).
    /// [`Gpu::open_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(filter: Option<&str>) -> Result<Gpu, GpuError> {
        pollster::block_on(Self::open_async(filter))
    }

    /// A second device on this one's adapter, opened the same way (features, limits, the
    /// environment's switches): its own queue, so its work (a driver's shader compiles among it)
    /// can run beside this one's. Native only: a page has one thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sibling(&self) -> Result<Gpu, GpuError> {
        pollster::block_on(Self::open(self.adapter.clone()))
    }

    /// Opens the adapter as [`Gpu::new`] does: the one path of both targets (the browser awaits
    /// it, native commands block on it).
    pub async fn open_async(filter: Option<&str>) -> Result<Gpu, GpuError> {
        let adapters = adapters().await;
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter);
        }
        let adapter = match filter.filter(|f| !f.is_empty()) {
            Some(f) => {
                let want = f.to_lowercase();
                let names: Vec<String> = adapters
                    .iter()
                    .map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().backend))
                    .collect();
                adapters
                    .into_iter()
                    .filter(|a| a.get_info().name.to_lowercase().contains(&want))
                    .max_by_key(|a| rank(&a.get_info()))
                    .ok_or_else(|| GpuError::AdapterNotFound {
                        wanted: f.to_string(),
                        available: names.join(", "),
                    })?
            }
            None => adapters.into_iter().max_by_key(|a| rank(&a.get_info())).ok_or(GpuError::NoAdapter)?,
        };
        Self::open(adapter).await
    }

    async fn open(adapter: wgpu::Adapter) -> Result<Gpu, GpuError> {
        let info = adapter.get_info();
        let have = adapter.limits();
        let short = |what: &str, need: u64, got: u64| GpuError::AdapterTooSmall {
            adapter: info.name.clone(),
            what: what.to_string(),
            need,
            got,
        };
        if have.max_compute_invocations_per_workgroup < MIN_INVOCATIONS
            || have.max_compute_workgroup_size_x < MIN_INVOCATIONS
        {
            return Err(short(
                "invocations per workgroup",
                MIN_INVOCATIONS as u64,
                have.max_compute_invocations_per_workgroup as u64,
            ));
        }
        if have.max_compute_workgroup_storage_size < MIN_WORKGROUP_STORAGE {
            return Err(short(
                "workgroup storage bytes",
                MIN_WORKGROUP_STORAGE as u64,
                have.max_compute_workgroup_storage_size as u64,
            ));
        }
        if have.max_storage_buffers_per_shader_stage < MIN_STORAGE_BUFFERS {
            return Err(short(
                "storage buffers per shader stage",
                MIN_STORAGE_BUFFERS as u64,
                have.max_storage_buffers_per_shader_stage as u64,
            ));
        }
        // What the kernels need, and the adapter's full buffer sizes so large batches fit.
        let mut req = wgpu::Limits::downlevel_defaults().using_alignment(have.clone());
        req.max_compute_invocations_per_workgroup = MIN_INVOCATIONS;
        req.max_compute_workgroup_size_x = MIN_INVOCATIONS;
        req.max_compute_workgroup_size_y = MIN_INVOCATIONS.min(have.max_compute_workgroup_size_y);
        req.max_compute_workgroup_size_z = have.max_compute_workgroup_size_z.min(64);
        req.max_compute_workgroup_storage_size = MIN_WORKGROUP_STORAGE;
        req.max_storage_buffers_per_shader_stage = MIN_STORAGE_BUFFERS;
        req.max_compute_workgroups_per_dimension = have.max_compute_workgroups_per_dimension;
        req.max_storage_buffer_binding_size = have.max_storage_buffer_binding_size;
        req.max_buffer_size = have.max_buffer_size;
        let webgpu_limits = std::env::var(LIMITS_ENV).is_ok_and(|v| v.trim() == "webgpu");
        if webgpu_limits {
            // Exactly what a browser gives every page: the floor every kernel must work on.
            req = wgpu::Limits::default().using_alignment(have.clone());
        }
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = wgpu::Features::empty();
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP)
            && !std::env::var(SUBGROUPS_ENV).is_ok_and(|v| v.trim() == "off");
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("dlsvm"),
            required_features: features,
            required_limits: req.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| GpuError::Device(format!("{}: {e}", info.name)))?;
        let dummy = Tensor::new_raw(&device, "dummy", &[1], DType::F32, 0)?;
        let timing_resolve = timestamps.then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timing resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        });
        Ok(Gpu {
            info: AdapterSummary::of(&info),
            adapter,
            device,
            queue,
            limits: req,
            timestamps,
            subgroups,
            webgpu_limits,
            shader_checks: std::env::var(SHADER_CHECKS_ENV).is_ok_and(|v| v.trim() == "1"),
            checks: false,
            watch: Arc::default(),
            pipelines: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
            dummy,
            timing_resolve,
            #[cfg(target_arch = "wasm32")]
            pending_scopes: Mutex::default(),
        })
    }

    /// How this device was opened where that changes which kernels run, beyond the adapter and
    /// driver: the subgroup variants run the tiled kernel without subgroups, and WebGPU's default
    /// limits make some variants fall back. Empty when opened with everything the adapter has.
    pub fn profile(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if !self.subgroups && self.adapter.features().contains(wgpu::Features::SUBGROUP) {
            v.push("subgroups off");
        }
        if self.webgpu_limits {
            v.push("WebGPU default limits");
        }
        v
    }

    /// Opens the device the way `dlsvm check` and the tests use it: every tensor allocated from
    /// now on carries NaN padding past its logical end, bound with it ([`Tensor::padding`]), so a
    /// kernel reading past an input's end reads NaN whether or not its shader has bounds checks
    /// (without them the read lands in the padding; with them, naga leaves buffer accesses to the
    /// driver's robust access where it has robustBufferAccess2, as lavapipe does, else clamps the
    /// index to the binding, whose end is padding), and [`Gpu::download`] refuses an output whose
    /// padding was written; and a wait for the device that lasts longer than `wait_limit` fails
    /// with [`GpuError::Hung`] instead of waiting for ever. Training never calls it: no padding,
    /// no extra memory, no limit on a step.
    pub fn enable_checks(&mut self, wait_limit: Duration) {
        self.checks = true;
        let before = watch::lock(&self.watch).limit.replace(wait_limit);
        // (A page has no threads: it never blocks in the driver either.)
        #[cfg(not(target_arch = "wasm32"))]
        if before.is_none() {
            watch::spawn(&self.watch, wait_limit);
        }
        #[cfg(target_arch = "wasm32")]
        let _ = before;
    }

    /// Has the watchdog of [`Gpu::enable_checks`] call `hook` (which should end the process)
    /// when a submission or a wait has been blocked inside the driver for twice the wait limit,
    /// where no timeout can reach it: a thread that submits behind a kernel that never finishes
    /// blocks there for ever (and blocks the other threads' waits). Without a hook the watchdog
    /// does nothing.
    pub fn on_hang(&mut self, hook: fn(&GpuError)) {
        watch::lock(&self.watch).hook = Some(hook);
    }

    /// Whether the device was opened for checking ([`Gpu::enable_checks`]): new tensors get NaN
    /// padding, waits are bounded.
    pub fn checks_enabled(&self) -> bool {
        self.checks
    }

    /// A one-element placeholder bound where an optional input (such as a bias) is absent.
    pub fn dummy(&self) -> &Tensor {
        &self.dummy
    }

    /// The adapter's subgroup sizes `(min, max)` where the device runs subgroup kernels (opened
    /// with the SUBGROUP feature), `None` where it does not.
    pub fn subgroup_sizes(&self) -> Option<(u32, u32)> {
        let info = self.adapter.get_info();
        self.subgroups.then_some((info.subgroup_min_size, info.subgroup_max_size))
    }

    /// Largest number of workgroups in one dispatch dimension.
    pub fn max_groups(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// How many workgroups wide a 1-D grid may be before [`grid_1d`] folds it onto y: the device
    /// limit, or the narrower width [`Gpu::narrow_folds`] set.
    pub fn fold_width(&self) -> u32 {
        match FOLD_WIDTH.with(|f| f.get()) {
            0 => self.max_groups(),
            w => w.min(self.max_groups()),
        }
    }

    /// Folds the 1-D grids of the kernels this thread prepares while the guard lives at `width`
    /// workgroups, so that small shapes exercise the folded indexing and its ragged last row
    /// (which the device limit leaves to grids of millions of workgroups). `dlsvm check` and the
    /// tests use it; other threads keep the device limit.
    pub fn narrow_folds(&self, width: u32) -> NarrowFolds {
        let before = FOLD_WIDTH.with(|f| f.replace(width.max(1)));
        NarrowFolds(before)
    }

    /// The bind-group layout and pipeline layout of an entry point whose bindings are `kinds`
    /// (binding 0, the params uniform, first).
    fn layout(&self, kinds: &[BindingKind]) -> Arc<Layouts> {
        let mut map = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(kinds.to_vec())
            .or_insert_with(|| {
                let buffer =
                    |ty| wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None };
                let storage = |read_only| buffer(wgpu::BufferBindingType::Storage { read_only });
                let entries: Vec<_> = kinds
                    .iter()
                    .enumerate()
                    .map(|(b, kind)| wgpu::BindGroupLayoutEntry {
                        binding: b as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: match kind {
                            BindingKind::Uniform => buffer(wgpu::BufferBindingType::Uniform),
                            BindingKind::Read => storage(true),
                            BindingKind::Write => storage(false),
                        },
                        count: None,
                    })
                    .collect();
                let label = format!("layout {kinds:?}");
                let bgl = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(&label),
                    entries: &entries,
                });
                let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(&label),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                Arc::new((bgl, pl))
            })
            .clone()
    }

    /// The compute pipeline for `entry` of `shader` specialized by `spec`, built once.
    pub fn pipeline(
        &self,
        shader: &'static ShaderDef,
        entry: &'static str,
        spec: &Spec,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let kinds = shader.kinds(entry)?;
        if shader.extension == Extension::Subgroups && !self.subgroups {
            return Err(GpuError::Internal(format!(
                "shader {} needs subgroups, which this device was opened without",
                shader.name
            )));
        }
        let key = PipelineKey { shader: shader.name, entry, spec: spec.header() };
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let source = shader.source_for(spec, self.adapter.get_info().backend);
        let layout = self.layout(&kinds);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let label = format!("{}::{} {}", shader.name, entry, key.spec.replace('\n', " "));
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if shader.unchecked && !self.shader_checks {
            // SAFETY: only shaders marked `unchecked` skip the runtime checks: those whose every
            // storage index is clamped to, or guarded by, the logical size of its tensor (see
            // `ShaderDef::unchecked`), and every launch goes through `prepare`, whose callers check
            // each bound tensor's length against the shape first.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        } else {
            self.device.create_shader_module(desc)
        };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&layout.1),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // Every kernel writes workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader { kernel: label, message: err.to_string() });
        }
        // A browser cannot block for the error scope: the next read-back awaits it
        // ([`Gpu::read_buffer_async`]) and fails with its error; until then the pipeline is
        // invalid and its launches write nothing.
        #[cfg(target_arch = "wasm32")]
        self.pending_scopes.lock().unwrap_or_else(|e| e.into_inner()).push((label, Box::pin(scope.pop())));
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Number of pipelines built so far (for tests of the cache).
    pub fn cached_pipelines(&self) -> usize {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Binds `inputs`, `outputs` (storage buffers) and a fresh params uniform to the pipeline of
    /// `entry`.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare<P: KernelParams>(
        &self,
        name: &str,
        shader: &'static ShaderDef,
        entry: &'static str,
        spec: &Spec,
        inputs: &[&Tensor],
        outputs: &[&Tensor],
        params: &P,
        groups: [u32; 3],
    ) -> Result<Dispatch, GpuError> {
        let (n_in, n_out) = shader.bindings(entry)?;
        if inputs.len() != n_in || outputs.len() != n_out {
            return Err(GpuError::Internal(format!(
                "{name}: {entry} takes {n_in} inputs and {n_out} outputs, got {} and {}",
                inputs.len(),
                outputs.len()
            )));
        }
        let bound: Vec<&Tensor> = inputs.iter().chain(outputs).copied().collect();
        let kinds = shader.kinds(entry)?;
        if P::WGSL != shader.params.wgsl {
            return Err(GpuError::Internal(format!(
                "{name}: {entry} takes {} params, got {}",
                shader.params.wgsl,
                P::WGSL
            )));
        }
        if bound.len() + 1 != kinds.len() {
            return Err(GpuError::Internal(format!(
                "{name}: {entry} binds {:?}, got {} tensors",
                &kinds[1..],
                bound.len()
            )));
        }
        let max = self.max_groups();
        if groups.iter().any(|&g| g > max) {
            return Err(GpuError::TooLarge {
                op: name.to_string(),
                what: format!("workgroup grid {groups:?}"),
                limit: max as u64,
            });
        }
        for t in &bound {
            if t.bytes() > self.limits.max_storage_buffer_binding_size {
                return Err(GpuError::TooLarge {
                    op: name.to_string(),
                    what: format!("tensor {:?} of {} bytes", t.shape(), t.bytes()),
                    limit: self.limits.max_storage_buffer_binding_size,
                });
            }
        }
        let pipeline = self.pipeline(shader, entry, spec)?;
        let layout = self.layout(&kinds);
        let params_buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size: (std::mem::size_of::<P>() as u64).max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&params_buf, 0, bytemuck::bytes_of(params));
        let entries: Vec<wgpu::BindGroupEntry> =
            std::iter::once(wgpu::BindGroupEntry { binding: 0, resource: params_buf.as_entire_binding() })
                .chain(bound.iter().enumerate().map(|(i, t)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: t.buffer().as_entire_binding(),
                }))
                .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &layout.0,
            entries: &entries,
        });
        let tensors: Vec<String> = bound.iter().map(|t| format!("{:?}", t.shape())).collect();
        let what = format!(
            "{name} ({}::{entry}, workgroups {groups:?}, bindings {})",
            shader.name,
            tensors.join(" ")
        );
        Ok(Dispatch { name: name.to_string(), what, pipeline, bind_group, params: params_buf, groups })
    }

    /// Encodes `ops` in order into one compute pass (with timestamps at its start and end when
    /// `timing` is given) and submits it, without waiting. On a stuck device ([`GpuError::Hung`])
    /// it submits nothing (the driver could block on it for ever) and returns the stuck
    /// submission, whose wait fails at once.
    pub fn submit<'a>(
        &self,
        ops: impl IntoIterator<Item = &'a Dispatch>,
        timing: Option<&wgpu::QuerySet>,
    ) -> wgpu::SubmissionIndex {
        // Described only for the checks, whose errors name a launch that never finishes.
        let mut what = String::new();
        let mut enc =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("dlsvm") });
        {
            let timestamp_writes = timing.map(|query_set| wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
            for op in ops {
                op.encode(&mut pass);
                if self.checks {
                    let then = if what.is_empty() { "" } else { ", then " };
                    what.push_str(then);
                    what.push_str(&op.what);
                }
            }
        }
        if let Some(qs) = timing {
            if let Some(resolve) = self.timing_resolve.as_ref() {
                enc.resolve_query_set(qs, 0..2, resolve, 0);
            }
        }
        self.submit_encoded(enc, what)
    }

    /// Submits `enc` (described by `what`), unless the device is stuck (see [`Gpu::submit`]).
    fn submit_encoded(&self, enc: wgpu::CommandEncoder, what: String) -> wgpu::SubmissionIndex {
        if let (Some(_), Some(index)) = {
            let w = watch::lock(&self.watch);
            (w.stuck.clone(), w.last_index.clone())
        } {
            return index;
        }
        // Not under the lock: a submission may block behind a kernel that never finishes, and the
        // watchdog needs the lock to see it.
        let index = {
            let _busy = self.checks.then(|| watch::Busy::new(&self.watch));
            self.queue.submit([enc.finish()])
        };
        let mut w = watch::lock(&self.watch);
        w.last = what;
        w.last_index = Some(index.clone());
        index
    }

    /// Submits `ops` in one pass and waits for the device.
    pub fn run(&self, ops: &[&Dispatch]) -> Result<(), GpuError> {
        self.submit(ops.iter().copied(), None);
        self.wait()
    }

    /// Blocks until every submitted command has finished (for at most the limit of
    /// [`Gpu::enable_checks`], where set).
    pub fn wait(&self) -> Result<(), GpuError> {
        self.wait_on(None)
    }

    /// Blocks until submission `sub` has finished (for at most the limit of
    /// [`Gpu::enable_checks`], where set).
    pub fn wait_for(&self, sub: wgpu::SubmissionIndex) -> Result<(), GpuError> {
        self.wait_on(Some(sub))
    }

    fn wait_on(&self, sub: Option<wgpu::SubmissionIndex>) -> Result<(), GpuError> {
        let limit = {
            let w = watch::lock(&self.watch);
            if w.stuck.is_some() {
                return Err(w.hung());
            }
            w.limit
        };
        let polled = {
            let _busy = self.checks.then(|| watch::Busy::new(&self.watch));
            self.device.poll(wgpu::PollType::Wait { submission_index: sub, timeout: limit })
        };
        match polled {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => {
                // The device keeps running the kernel and would block every later submission
                // behind it (src/gpu/watch.rs): nothing more is submitted, every later wait fails
                // at once.
                let mut w = watch::lock(&self.watch);
                if w.stuck.is_none() {
                    // Dropping the queue waits for the device to go idle, which it never does
                    // now: keep a reference to the queue and the device for ever, so that
                    // dropping this Gpu cannot block.
                    std::mem::forget(self.queue.clone());
                    std::mem::forget(self.device.clone());
                    w.stuck = Some(w.last.clone());
                }
                Err(w.hung())
            }
            Err(e) => Err(GpuError::Device(e.to_string())),
        }
    }

    /// In a browser: the error scopes of the pipelines built since the last call, awaited; the
    /// first error (see [`Gpu::pipeline`]).
    #[cfg(target_arch = "wasm32")]
    async fn pipeline_errors(&self) -> Result<(), GpuError> {
        let pending = std::mem::take(&mut *self.pending_scopes.lock().unwrap_or_else(|e| e.into_inner()));
        let mut first = None;
        for (kernel, scope) in pending {
            if let Some(err) = scope.await {
                first.get_or_insert(GpuError::Shader { kernel, message: err.to_string() });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// What the device is stuck on, if a wait timed out ([`GpuError::Hung`]).
    pub fn stuck(&self) -> Option<String> {
        watch::lock(&self.watch).stuck.clone()
    }

    /// Times `reps` submissions of `ops` (one pass each), returning milliseconds per repetition.
    /// Uses timestamp queries when the adapter has them, else wall clock around submit + wait.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time(&self, ops: &[&Dispatch], reps: usize) -> Result<Vec<f64>, GpuError> {
        pollster::block_on(self.time_async(ops, reps))
    }

    /// Until the device has finished everything submitted: natively [`Gpu::wait`]; in a browser
    /// (where polling does nothing) when the queue reports the work done.
    pub async fn idle(&self) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        return self.wait();
        #[cfg(target_arch = "wasm32")]
        {
            let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
            self.queue.on_submitted_work_done(move || {
                let _ = tx.send(());
            });
            rx.receive()
                .await
                .ok_or_else(|| GpuError::Device("the queue never reported its work done".into()))
        }
    }

    /// [`Gpu::time`], awaiting the device (the one path of both targets; the wall clock is the
    /// browser's where it runs).
    pub async fn time_async(&self, ops: &[&Dispatch], reps: usize) -> Result<Vec<f64>, GpuError> {
        let mut out = Vec::with_capacity(reps);
        let timing = match (self.timestamps, self.timing_resolve.as_ref()) {
            (true, Some(resolve)) => Some((
                self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("timing"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve,
            )),
            _ => None,
        };
        let period = self.queue.get_timestamp_period() as f64;
        for _ in 0..reps {
            let start = Instant::now();
            match &timing {
                Some((qs, resolve)) => {
                    self.submit(ops.iter().copied(), Some(qs));
                    let bytes = self.read_buffer_async(resolve, 16).await?;
                    let t: &[u64] = bytemuck::cast_slice(&bytes);
                    out.push(t[1].saturating_sub(t[0]) as f64 * period * 1e-6);
                }
                None => {
                    self.submit(ops.iter().copied(), None);
                    self.idle().await?;
                    out.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        Ok(out)
    }

    /// Copies `size` bytes of `buf` through a staging buffer and maps them for reading: natively
    /// after waiting for the device, in a browser when its event loop has run the map's callback.
    pub(crate) async fn read_buffer_async(&self, buf: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, GpuError> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: size.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, size);
        if self.stuck().is_some() {
            return Err(watch::lock(&self.watch).hung());
        }
        self.submit_encoded(enc, format!("a readback of {size} bytes"));
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()?;
        #[cfg(target_arch = "wasm32")]
        self.pipeline_errors().await?;
        let mapped = rx.receive().await;
        match mapped {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(GpuError::Map(e.to_string())),
            None => return Err(GpuError::Map("the map callback never ran".into())),
        }
        let data = {
            let view = staging.slice(..).get_mapped_range().map_err(|e| GpuError::Map(e.to_string()))?;
            view[..size as usize].to_vec()
        };
        staging.unmap();
        Ok(data)
    }
}

/// One prepared kernel launch: encode it as often as needed; change its params with
/// [`Dispatch::set_params`].
pub struct Dispatch {
    pub name: String,
    /// The name, shader, entry point, grid and bound shapes, for a launch that never finishes.
    what: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    params: wgpu::Buffer,
    pub groups: [u32; 3],
}

impl Dispatch {
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }

    /// Rewrites the params uniform (takes effect for submissions after this call).
    pub fn set_params<P: bytemuck::Pod>(&self, gpu: &Gpu, params: &P) {
        gpu.queue.write_buffer(&self.params, 0, bytemuck::bytes_of(params));
    }
}

/// Splits `groups` workgroups over x and y so neither exceeds `max`; shaders rebuild the linear
/// workgroup index as `wid.y * nwg.x + wid.x` and ignore indices past the end.
pub fn grid_1d(groups: usize, max: u32) -> [u32; 3] {
    let groups = groups.max(1);
    let max = max as usize;
    if groups <= max {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(max);
        let x = groups.div_ceil(y);
        [x as u32, y as u32, 1]
    }
}
