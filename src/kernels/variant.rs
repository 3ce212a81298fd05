//! What a kernel family declares of each variant ([`Decl`]: name, role, the subgroup sizes its
//! kernel needs) and what choosing among them needs to know of a device ([`Caps`]). The families'
//! modules (gemm, conv, pool) declare their tables with these; `kernels::registry` gathers them.

use std::fmt;

use crate::gpu::Gpu;

/// What a declared variant is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Checked, benchmarked and timed by the tuner, which may choose it.
    Tuned,
    /// Checked and benchmarked (`dlsvm bench --variants`), and a plan may name it, but the tuner
    /// never times it: an oracle that loses everywhere it was measured (the direct convolutions).
    Untuned,
    /// Checked only: a specialization of another variant's kernel that reaches a path the others
    /// do not on some devices (a subgroup kernel on workgroups of 36 invocations leaves a subgroup
    /// of 8, 16 or 32 lanes partly empty). Never in a plan, never timed.
    TestOnly,
}

/// The subgroup sizes a subgroup kernel is correct for. Every subgroup kernel of dlsvm takes the
/// size from `subgroup_size` and handles a subgroup that is not full (a workgroup smaller than a
/// subgroup, or one whose size is not a multiple of it), so the bounds are those of its helpers:
/// `subgroup_full` counts a ballot of 128 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubgroupSizes {
    pub min: u32,
    pub max: u32,
}

/// What every subgroup kernel supports: sizes 4 to 128. 4, 8 and 16 are checked on lavapipe
/// (`LP_NATIVE_VECTOR_WIDTH=128/256/512`; 4 is SwiftShader's, in Chrome), 32 and 64 (NVIDIA, Apple,
/// AMD) are correct by construction; 128 is the ballot's limit. 1 and 2 are untried.
pub const SUBGROUP_SIZES: SubgroupSizes = SubgroupSizes { min: 4, max: 128 };

impl SubgroupSizes {
    /// Whether every size of `device` is one of these.
    pub fn covers(&self, device: SubgroupSizes) -> bool {
        self.min <= device.min && device.max <= self.max
    }
}

/// One variant of a family, declared once.
#[derive(Clone, Copy, Debug)]
pub struct Decl<V: 'static> {
    /// The name in plans, caches, checkpoints, tables and on the command line.
    pub name: &'static str,
    pub variant: V,
    pub role: Role,
    /// The subgroup sizes its own kernel needs; `None` for a kernel without subgroup operations.
    /// On a device without subgroups, or whose sizes these do not cover, it runs its family's
    /// fallback ([`Op::resolve`]).
    pub subgroups: Option<SubgroupSizes>,
}

impl<V: Copy> Decl<V> {
    pub const fn tuned(name: &'static str, variant: V) -> Decl<V> {
        Decl { name, variant, role: Role::Tuned, subgroups: None }
    }
    pub const fn untuned(name: &'static str, variant: V) -> Decl<V> {
        Decl { name, variant, role: Role::Untuned, subgroups: None }
    }
    pub const fn test_only(name: &'static str, variant: V) -> Decl<V> {
        Decl { name, variant, role: Role::TestOnly, subgroups: None }
    }
    /// The same declaration for a kernel that uses subgroups ([`SUBGROUP_SIZES`]).
    pub const fn subgroups(self) -> Decl<V> {
        Decl { subgroups: Some(SUBGROUP_SIZES), ..self }
    }
}

/// A family's variant type and its declarations.
pub trait FamilyVariant: Copy + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// Every variant of the family, in the order the tuner screens them after the default (the
    /// simple fallbacks last) and the tables list them.
    fn decls() -> &'static [Decl<Self>];
    /// The variant a step uses where its plan names none: the portable one.
    fn default_variant() -> Self;

    fn decl(self) -> &'static Decl<Self> {
        // Every variant value the crate makes is declared (a unit test walks the tables).
        Self::decls()
            .iter()
            .find(|d| d.variant == self)
            .unwrap_or_else(|| panic!("undeclared variant {self:?}"))
    }
    fn name(self) -> &'static str {
        self.decl().name
    }
    /// The declared variants of `roles`.
    fn with_roles(roles: &[Role]) -> Vec<Self> {
        Self::decls().iter().filter(|d| roles.contains(&d.role)).map(|d| d.variant).collect()
    }
    /// Every variant but the test-only ones: what a plan may name and `bench --variants` times.
    fn usable() -> Vec<Self> {
        Self::with_roles(&[Role::Tuned, Role::Untuned])
    }
    /// Every declared variant: what `dlsvm check` and the kernel tests run.
    fn checked() -> Vec<Self> {
        Self::decls().iter().map(|d| d.variant).collect()
    }
    /// Whether its own kernel can run on `caps` as far as subgroups go.
    fn subgroups_allow(self, caps: &Caps) -> bool {
        match self.decl().subgroups {
            None => true,
            Some(need) => caps.subgroups.is_some_and(|have| need.covers(have)),
        }
    }
}

/// What choosing a kernel needs to know of a device.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Workgroups per grid dimension.
    pub max_groups: usize,
    /// The f32 values one storage binding holds.
    pub cap: usize,
    /// The device's subgroup sizes where it runs subgroup kernels (opened with the SUBGROUP
    /// feature), `None` where it does not.
    pub subgroups: Option<SubgroupSizes>,
}

impl Caps {
    /// Every device that has what every variant needs: WebGPU's 65,535 workgroups per dimension, no
    /// binding limit, subgroups of 32.
    pub const ANY: Caps =
        Caps { max_groups: 65_535, cap: usize::MAX, subgroups: Some(SubgroupSizes { min: 32, max: 32 }) };
    /// [`Caps::ANY`] without subgroups.
    pub const NO_SUBGROUPS: Caps = Caps { subgroups: None, ..Caps::ANY };

    pub fn of(gpu: &Gpu) -> Caps {
        let cap = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size) / 4;
        Caps {
            max_groups: gpu.max_groups() as usize,
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            subgroups: gpu.subgroup_sizes().map(|(min, max)| SubgroupSizes { min, max }),
        }
    }
}
