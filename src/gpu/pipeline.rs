use super::GpuError;

/// Compile-time constants prepended to a shader's source as `const NAME = value;` lines: tile
/// sizes, workgroup sizes, transposition flags. Part of the pipeline cache key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spec(pub Vec<(&'static str, String)>);

impl Spec {
    pub fn new() -> Self {
        Spec(Vec::new())
    }
    /// Adds an unsigned integer constant.
    pub fn u(mut self, name: &'static str, v: u32) -> Self {
        self.0.push((name, format!("{v}u")));
        self
    }
    /// Adds a boolean constant.
    pub fn b(mut self, name: &'static str, v: bool) -> Self {
        self.0.push((name, format!("{v}")));
        self
    }
    /// The WGSL text prepended to the shader.
    pub fn header(&self) -> String {
        self.0.iter().map(|(n, v)| format!("const {n} = {v};\n")).collect()
    }
}

/// A folder of WGSL files (named like shaders/: `common.wgsl`, `<shader name>.wgsl`) to compile
/// instead of the built-in sources: edit a shader and rerun `dlsvm check` or the kernel tests
/// without rebuilding. For development only.
pub const SHADER_DIR_ENV: &str = "DLSVM_SHADER_DIR";

/// The WGSL prelude every shader is compiled with: the params structs, the epilogue, index and
/// reduction helpers (shaders/common.wgsl).
pub const PRELUDE: &str = include_str!("../../shaders/common.wgsl");

/// A kernel's params struct: the `#[repr(C)]` mirror of the WGSL struct named [`KernelParams::WGSL`]
/// in shaders/common.wgsl, bound as a uniform at binding 0.
pub trait KernelParams: bytemuck::Pod {
    const WGSL: &'static str;
}

/// What a shader's registration says of its params struct: the WGSL name and the host size.
#[derive(Clone, Copy, Debug)]
pub struct ParamsDecl {
    pub wgsl: &'static str,
    pub size: usize,
}

impl ParamsDecl {
    pub const fn of<P: KernelParams>() -> ParamsDecl {
        ParamsDecl { wgsl: P::WGSL, size: std::mem::size_of::<P>() }
    }
}

/// A WGSL extension a shader needs beyond WebGPU's core, with the device feature behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    None,
    /// The subgroup built-ins and functions: the adapter's SUBGROUP feature (`Gpu::subgroups`).
    /// The WGSL standard asks for `enable subgroups;`, which naga 30 refuses as not implemented
    /// (it takes subgroup operations without it): the shaders leave the directive out, and
    /// [`Extension::directive`] adds it where the browser compiles the source.
    Subgroups,
}

impl Extension {
    /// The WGSL directive a shader needing this extension must begin with where `backend` compiles
    /// it: `enable subgroups;` for the browser's own compiler (wgpu's WebGPU backend hands the
    /// source to the browser, whose compiler asks for it), nothing where naga compiles it (naga 30
    /// refuses the directive).
    pub fn directive(self, backend: wgpu::Backend) -> &'static str {
        match (self, backend) {
            (Extension::Subgroups, wgpu::Backend::BrowserWebGpu) => "enable subgroups;\n",
            _ => "",
        }
    }
}

/// One WGSL file and everything that belongs to it: its source, its params struct, its entry
/// points with their binding counts (the params uniform at binding 0, then read-only storage
/// inputs, then read-write storage outputs), and the specializations it is validated with.
pub struct ShaderDef {
    pub name: &'static str,
    pub source: &'static str,
    /// WGSL files shared by some shaders of a family (`(name, source)`, e.g. the implicit-GEMM
    /// tiles of the convolutions), compiled between the prelude and the file.
    pub parts: &'static [(&'static str, &'static str)],
    pub params: ParamsDecl,
    /// (entry point, inputs, outputs)
    pub entries: &'static [(&'static str, usize, usize)],
    /// Every specialization the crate uses (each is validated by naga in the tests).
    pub specs: fn() -> Vec<Spec>,
    /// Build without naga's runtime bounds checks. Only for shaders whose every storage index is
    /// clamped to, or guarded by, the logical size of its tensor, with no index read from data
    /// unless it is range-checked first; the host checks every tensor's length before a launch.
    /// The checks cost 1.5-2x in the blocked GEMM and conv kernels on lavapipe (BENCHMARKS.md).
    /// `DLSVM_SHADER_CHECKS=1` turns them back on for every shader.
    pub unchecked: bool,
    /// What the shader needs of the device beyond WebGPU's core; a device without it never builds
    /// the shader (its kernels' hosts fall back to a core variant).
    pub extension: Extension,
}

/// What a binding of an entry point holds (the params uniform at 0, then inputs, then outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindingKind {
    Uniform,
    /// A read-only storage buffer.
    Read,
    /// A read-write storage buffer.
    Write,
}

impl ShaderDef {
    pub fn bindings(&self, entry: &str) -> Result<(usize, usize), GpuError> {
        self.entries
            .iter()
            .find(|e| e.0 == entry)
            .map(|e| (e.1, e.2))
            .ok_or_else(|| GpuError::Internal(format!("shader {} has no entry point {entry}", self.name)))
    }
    /// The WGSL file of the shader (`shaders/<name>.wgsl`).
    pub fn file(&self) -> &'static str {
        self.name
    }

    /// The kinds of `entry`'s bindings, binding 0 (the params uniform) first.
    pub fn kinds(&self, entry: &str) -> Result<Vec<BindingKind>, GpuError> {
        let (inputs, outputs) = self.bindings(entry)?;
        Ok((0..=inputs + outputs)
            .map(|b| match b {
                0 => BindingKind::Uniform,
                _ if b <= inputs => BindingKind::Read,
                _ => BindingKind::Write,
            })
            .collect())
    }
    /// Full source for `spec`: the specialization constants, the prelude, the parts, the file.
    /// With [`SHADER_DIR_ENV`] set, each file is read from that folder instead of the copy built
    /// into the binary (an unreadable file falls back to the built-in one, with a warning).
    pub fn source_with(&self, spec: &Spec) -> String {
        let dir = std::env::var_os(SHADER_DIR_ENV);
        let read = |name: &str, builtin: &'static str| match &dir {
            Some(dir) => {
                let path = std::path::Path::new(dir).join(format!("{name}.wgsl"));
                std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    eprintln!("dlsvm: warning: {}: {e}; using the built-in {name}.wgsl", path.display());
                    builtin.to_string()
                })
            }
            None => builtin.to_string(),
        };
        let mut out = format!("// specialization\n{}\n{}\n", spec.header(), read("common", PRELUDE));
        for (name, source) in self.parts.iter().chain([&(self.file(), self.source)]) {
            out.push_str(&format!("// {name}.wgsl\n{}\n", read(name, source)));
        }
        out
    }

    /// The source `backend` compiles for `spec`: [`ShaderDef::source_with`] after the directive
    /// the shader's extension needs there ([`Extension::directive`]).
    pub fn source_for(&self, spec: &Spec, backend: wgpu::Backend) -> String {
        format!("{}{}", self.extension.directive(backend), self.source_with(spec))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct PipelineKey {
    pub shader: &'static str,
    pub entry: &'static str,
    pub spec: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgroup_directive_only_for_the_browser() {
        use wgpu::Backend::*;
        for backend in [Noop, Vulkan, Metal, Dx12, Gl] {
            assert_eq!(Extension::Subgroups.directive(backend), "", "{backend:?}");
            assert_eq!(Extension::None.directive(backend), "", "{backend:?}");
        }
        assert_eq!(Extension::Subgroups.directive(BrowserWebGpu), "enable subgroups;\n");
        assert_eq!(Extension::None.directive(BrowserWebGpu), "");
    }

    #[test]
    fn the_directive_opens_the_browser_source() {
        let def = ShaderDef {
            name: "t",
            source: "fn f() {}\n",
            parts: &[],
            params: ParamsDecl { wgsl: "P", size: 0 },
            entries: &[],
            specs: Vec::new,
            unchecked: false,
            extension: Extension::Subgroups,
        };
        let spec = Spec::new().u("WG", 64);
        let native = def.source_for(&spec, wgpu::Backend::Vulkan);
        assert_eq!(native, def.source_with(&spec));
        let browser = def.source_for(&spec, wgpu::Backend::BrowserWebGpu);
        assert_eq!(browser, format!("enable subgroups;\n{native}"));
        let core = ShaderDef { extension: Extension::None, ..def };
        assert_eq!(core.source_for(&spec, wgpu::Backend::BrowserWebGpu), core.source_with(&spec));
    }
}
