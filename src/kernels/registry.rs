//! The kernel registry: every op family whose kernel is chosen per op (GEMM, the three convolution
//! directions, the pooling forward and backward) declares its variants once, in its own module, as
//! a table of [`Decl`]s: the name, the typed variant, its [`Role`] and the subgroup sizes it needs.
//! Everything that lists variants (the tuner, `dlsvm bench`, `dlsvm check`, a network's plan, the
//! tests) iterates these tables; names exist only at the edges (the tuning cache, checkpoints, the
//! command line, JSON) and are parsed once, by [`Op::parse`] / [`Family::parse`].
//!
//! An op is a family at a shape ([`Op`]). Which kernel actually runs when a variant is asked for is
//! one rule per family ([`Op::resolve`]): a variant runs its own kernel where the shape and the
//! device ([`Caps`]) allow it, and otherwise the variant its family names as its fallback; the
//! dispatch functions in `kernels::{gemm, conv, pool}` resolve with that same rule.

use std::fmt;

use super::conv::{self, ConvBwdDataVariant, ConvBwdWeightVariant, ConvFwdVariant};
use super::gemm::{self, GemmVariant};
use super::pool::{PoolBwdVariant, PoolFwdVariant};
pub use super::variant::{Caps, Decl, FamilyVariant, Role, SubgroupSizes, SUBGROUP_SIZES};
use crate::shapes::{Conv2dShape, GemmShape, Pool2dShape};

/// The op families whose kernel is chosen per op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Gemm,
    ConvFwd,
    ConvData,
    ConvWeight,
    PoolFwd,
    PoolBwd,
}

/// A variant of any family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Gemm(GemmVariant),
    ConvFwd(ConvFwdVariant),
    ConvData(ConvBwdDataVariant),
    ConvWeight(ConvBwdWeightVariant),
    PoolFwd(PoolFwdVariant),
    PoolBwd(PoolBwdVariant),
}

/// A family's variant type as a member of [`Variant`].
pub trait Member: FamilyVariant {
    const FAMILY: Family;
    fn wrap(self) -> Variant;
    fn unwrap(v: Variant) -> Option<Self>;
}

macro_rules! member {
    ($t:ty, $family:ident) => {
        impl Member for $t {
            const FAMILY: Family = Family::$family;
            fn wrap(self) -> Variant {
                Variant::$family(self)
            }
            fn unwrap(v: Variant) -> Option<$t> {
                match v {
                    Variant::$family(x) => Some(x),
                    _ => None,
                }
            }
        }
    };
}
member!(GemmVariant, Gemm);
member!(ConvFwdVariant, ConvFwd);
member!(ConvBwdDataVariant, ConvData);
member!(ConvBwdWeightVariant, ConvWeight);
member!(PoolFwdVariant, PoolFwd);
member!(PoolBwdVariant, PoolBwd);

/// Calls `$f` with the family's variant type bound to `$t` (a generic function per family).
macro_rules! per_family {
    ($family:expr, $f:ident $(, $arg:expr)*) => {
        match $family {
            Family::Gemm => $f::<GemmVariant>($($arg),*),
            Family::ConvFwd => $f::<ConvFwdVariant>($($arg),*),
            Family::ConvData => $f::<ConvBwdDataVariant>($($arg),*),
            Family::ConvWeight => $f::<ConvBwdWeightVariant>($($arg),*),
            Family::PoolFwd => $f::<PoolFwdVariant>($($arg),*),
            Family::PoolBwd => $f::<PoolBwdVariant>($($arg),*),
        }
    };
}

/// A declaration with its variant made family-neutral.
#[derive(Clone, Copy, Debug)]
pub struct AnyDecl {
    pub name: &'static str,
    pub variant: Variant,
    pub role: Role,
    pub subgroups: Option<SubgroupSizes>,
}

fn any_decls<V: Member>() -> Vec<AnyDecl> {
    V::decls()
        .iter()
        .map(|d| AnyDecl { name: d.name, variant: d.variant.wrap(), role: d.role, subgroups: d.subgroups })
        .collect()
}

fn default_of<V: Member>() -> Variant {
    V::default_variant().wrap()
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Gemm,
        Family::ConvFwd,
        Family::ConvData,
        Family::ConvWeight,
        Family::PoolFwd,
        Family::PoolBwd,
    ];

    /// What the family computes, for messages.
    pub fn title(self) -> &'static str {
        match self {
            Family::Gemm => "GEMM",
            Family::ConvFwd => "convolution forward",
            Family::ConvData => "convolution backward data",
            Family::ConvWeight => "convolution weight gradient",
            Family::PoolFwd => "pooling forward",
            Family::PoolBwd => "pooling backward",
        }
    }

    /// Every declaration of the family, in table order.
    pub fn decls(self) -> Vec<AnyDecl> {
        per_family!(self, any_decls)
    }

    pub fn default_variant(self) -> Variant {
        per_family!(self, default_of)
    }

    /// The usable variant named `name` (test-only ones are not), or a one-line error listing the
    /// names this build has.
    pub fn parse(self, name: &str) -> Result<Variant, String> {
        let decls = self.decls();
        let usable = || decls.iter().filter(|d| d.role != Role::TestOnly);
        match usable().find(|d| d.name == name) {
            Some(d) => Ok(d.variant),
            None => {
                let have: Vec<&str> = usable().map(|d| d.name).collect();
                Err(format!("no {} variant {name:?} (this dlsvm has {})", self.title(), have.join(", ")))
            }
        }
    }
}

impl Variant {
    pub fn family(&self) -> Family {
        match self {
            Variant::Gemm(_) => Family::Gemm,
            Variant::ConvFwd(_) => Family::ConvFwd,
            Variant::ConvData(_) => Family::ConvData,
            Variant::ConvWeight(_) => Family::ConvWeight,
            Variant::PoolFwd(_) => Family::PoolFwd,
            Variant::PoolBwd(_) => Family::PoolBwd,
        }
    }

    fn any(&self) -> AnyDecl {
        let v = *self;
        self.family()
            .decls()
            .into_iter()
            .find(|d| d.variant == v)
            .unwrap_or_else(|| panic!("undeclared {v:?}"))
    }

    pub fn name(&self) -> &'static str {
        match *self {
            Variant::Gemm(v) => v.name(),
            Variant::ConvFwd(v) => v.name(),
            Variant::ConvData(v) => v.name(),
            Variant::ConvWeight(v) => v.name(),
            Variant::PoolFwd(v) => v.name(),
            Variant::PoolBwd(v) => v.name(),
        }
    }

    pub fn role(&self) -> Role {
        self.any().role
    }

    pub fn subgroups(&self) -> Option<SubgroupSizes> {
        self.any().subgroups
    }
}

/// A variant is written out (JSON) as its name.
impl serde::Serialize for Variant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One choice a step makes: what the op computes, at the step's batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Gemm(GemmShape),
    ConvFwd(Conv2dShape),
    ConvData(Conv2dShape),
    ConvWeight(Conv2dShape),
    /// A pooling layer's forward (max pooling when `max`).
    PoolFwd {
        shape: Pool2dShape,
        max: bool,
    },
    /// A pooling layer's backward (max pooling when `max`).
    PoolBwd {
        shape: Pool2dShape,
        max: bool,
    },
}

impl Op {
    pub fn family(&self) -> Family {
        match self {
            Op::Gemm(_) => Family::Gemm,
            Op::ConvFwd(_) => Family::ConvFwd,
            Op::ConvData(_) => Family::ConvData,
            Op::ConvWeight(_) => Family::ConvWeight,
            Op::PoolFwd { .. } => Family::PoolFwd,
            Op::PoolBwd { .. } => Family::PoolBwd,
        }
    }

    /// The variants a plan may name for this op, the built-in default first, then in table order.
    pub fn variants(&self) -> Vec<Variant> {
        let default = self.default_variant();
        let rest =
            self.family().decls().into_iter().filter(|d| d.role != Role::TestOnly && d.variant != default);
        std::iter::once(default).chain(rest.map(|d| d.variant)).collect()
    }

    /// The variants the tuner times: the [`Role::Tuned`] ones that run their own kernel here, the
    /// default first.
    pub fn tuned_variants(&self, caps: &Caps) -> Vec<Variant> {
        self.variants()
            .into_iter()
            .filter(|v| v.role() == Role::Tuned && self.runs_itself(*v, caps))
            .collect()
    }

    pub fn default_variant(&self) -> Variant {
        self.family().default_variant()
    }

    /// The variant named `name` (a plan's, a cache's, the command line's).
    pub fn parse(&self, name: &str) -> Result<Variant, String> {
        self.family().parse(name)
    }

    /// The variant whose kernel computes this op when `v` is asked for on `caps` (the one fallback
    /// rule of each family; the dispatch functions resolve with it). `v` must be of the op's
    /// family; another family's variant resolves to the default.
    pub fn resolve(&self, v: Variant, caps: &Caps) -> Variant {
        match (*self, v) {
            (Op::Gemm(s), Variant::Gemm(v)) => Variant::Gemm(gemm::resolve(&s, v, caps)),
            (Op::ConvFwd(s), Variant::ConvFwd(v)) => Variant::ConvFwd(conv::resolve_fwd(&s, v, caps)),
            (Op::ConvData(s), Variant::ConvData(v)) => Variant::ConvData(conv::resolve_data(&s, v, caps)),
            (Op::ConvWeight(s), Variant::ConvWeight(v)) => {
                Variant::ConvWeight(conv::resolve_weight(&s, v, caps))
            }
            (Op::PoolFwd { .. }, Variant::PoolFwd(_)) | (Op::PoolBwd { .. }, Variant::PoolBwd(_)) => v,
            _ => self.default_variant(),
        }
    }

    /// Whether `v` runs its own kernel on this op's shape on `caps`, rather than another
    /// variant's ([`Op::resolve`]).
    pub fn runs_itself(&self, v: Variant, caps: &Caps) -> bool {
        self.resolve(v, caps) == v
    }

    /// What the op computes, as a cache key and for messages (e.g. `gemm 256x3072x1600 nt`).
    pub fn signature(&self) -> String {
        match self {
            Op::Gemm(s) => format!("gemm {s}"),
            Op::ConvFwd(s) => format!("conv_fwd {s}"),
            Op::ConvData(s) => format!("conv_data {s}"),
            Op::ConvWeight(s) => format!("conv_weight {s}"),
            Op::PoolFwd { shape, max } => format!("{}pool_fwd {shape}", if *max { "max" } else { "avg" }),
            Op::PoolBwd { shape, max } => format!("{}pool_bwd {shape}", if *max { "max" } else { "avg" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_declares_each_name_once_and_its_default() {
        for f in Family::ALL {
            let decls = f.decls();
            assert!(!decls.is_empty(), "{f:?}");
            for (i, d) in decls.iter().enumerate() {
                assert!(!decls[..i].iter().any(|e| e.name == d.name), "{f:?}: {} declared twice", d.name);
                assert!(
                    !decls[..i].iter().any(|e| e.variant == d.variant),
                    "{f:?}: {:?} declared twice",
                    d.variant
                );
                assert_eq!(d.variant.family(), f);
                assert_eq!(d.variant.name(), d.name);
                assert_eq!(f.parse(d.name).is_ok(), d.role != Role::TestOnly, "{}", d.name);
                // Names are plain words: they go into JSON, tables, file names of reports.
                assert!(d.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{}", d.name);
            }
            let default = f.default_variant();
            assert_eq!(default.role(), Role::Tuned, "{f:?}: the default must be tuned");
            assert!(default.subgroups().is_none(), "{f:?}: the default must run without subgroups");
        }
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_names() {
        let e = Family::ConvFwd.parse("fastest").unwrap_err();
        assert!(e.starts_with("no convolution forward variant \"fastest\" (this dlsvm has "), "{e}");
        assert!(e.contains(Family::ConvFwd.default_variant().name()), "{e}");
        // Test-only variants are checked, never named by a plan.
        for f in Family::ALL {
            for d in f.decls().iter().filter(|d| d.role == Role::TestOnly) {
                assert!(f.parse(d.name).is_err(), "{}", d.name);
                assert!(!e.contains(d.name));
            }
        }
    }

    #[test]
    fn subgroup_variants_need_a_device_whose_sizes_they_cover() {
        let s = crate::check::shapes::fer_convs(8)[2];
        let sizes = |min, max| Caps { subgroups: Some(SubgroupSizes { min, max }), ..Caps::ANY };
        for op in [
            Op::ConvFwd(s),
            Op::ConvData(s),
            Op::ConvWeight(s),
            Op::Gemm(GemmShape::new(64, 64, 64, crate::shapes::Trans::NN)),
        ] {
            for v in op.variants().into_iter().filter(|v| v.subgroups().is_some()) {
                for caps in [Caps::ANY, sizes(4, 4), sizes(16, 16), sizes(4, 64)] {
                    assert!(op.runs_itself(v, &caps), "{} {v}", op.signature());
                }
                for caps in [Caps::NO_SUBGROUPS, sizes(2, 64), sizes(64, 256)] {
                    assert!(!op.runs_itself(v, &caps), "{} {v} on {caps:?}", op.signature());
                    assert!(op.resolve(v, &caps).subgroups().is_none(), "{} {v}", op.signature());
                }
            }
            // The others do not depend on subgroups.
            for v in op.variants().into_iter().filter(|v| v.subgroups().is_none()) {
                assert_eq!(op.runs_itself(v, &Caps::ANY), op.runs_itself(v, &Caps::NO_SUBGROUPS), "{v}");
            }
        }
    }

    #[test]
    fn every_op_resolves_within_its_family_to_a_variant_that_runs_itself() {
        let gemms = crate::check::shapes::preset_gemms(3).into_iter().map(|(_, s)| Op::Gemm(s));
        let convs = crate::check::shapes::conv_shapes()
            .into_iter()
            .flat_map(|(_, s)| [Op::ConvFwd(s), Op::ConvData(s), Op::ConvWeight(s)]);
        let pools = crate::check::shapes::pool_shapes()
            .into_iter()
            .flat_map(|(_, shape)| [Op::PoolFwd { shape, max: true }, Op::PoolBwd { shape, max: false }]);
        for op in gemms.chain(convs).chain(pools) {
            for caps in [Caps::ANY, Caps::NO_SUBGROUPS] {
                for d in op.family().decls() {
                    let r = op.resolve(d.variant, &caps);
                    assert_eq!(r.family(), op.family());
                    assert!(
                        op.runs_itself(r, &caps),
                        "{} {}: {r} does not run itself",
                        op.signature(),
                        d.name
                    );
                }
            }
        }
    }
}
