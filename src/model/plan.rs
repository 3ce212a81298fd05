//! Which kernel variant each dispatch of a network's step uses. Variants compute the same values
//! but may round differently, so a run records its plan (in its checkpoints) and a resumed run
//! keeps it: same data, seed, plan and adapter, same weights, bit for bit.
//!
//! A plan maps an op key, `<layer index>.<op>` (the index in the resolved layer list, the op one of
//! `fc_fwd`, `fc_data`, `fc_weight`, `conv_fwd`, `conv_data`, `conv_weight`, `pool_fwd`, `pool_bwd`), to a variant name. An
//! op the plan does not name uses the built-in default.

use std::collections::BTreeMap;

use super::net::{Layer, Net};
use crate::kernels::conv::{ConvBwdDataVariant, ConvBwdWeightVariant, ConvFwdVariant};
use crate::kernels::gemm::{GemmDevice, GemmVariant};
use crate::kernels::pool::{PoolBwdVariant, PoolFwdVariant};
use crate::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Plan(pub BTreeMap<String, String>);

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
    /// The variants that compute this op, by name, the built-in default first.
    pub fn variants(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            Op::Gemm(_) => GemmVariant::all().iter().map(|v| v.name()).collect(),
            Op::ConvFwd(_) => ConvFwdVariant::all().iter().map(|v| v.name().to_string()).collect(),
            Op::ConvData(_) => ConvBwdDataVariant::all().iter().map(|v| v.name().to_string()).collect(),
            Op::ConvWeight(_) => ConvBwdWeightVariant::all().iter().map(|v| v.name().to_string()).collect(),
            Op::PoolFwd { .. } => PoolFwdVariant::all().iter().map(|v| v.name().to_string()).collect(),
            Op::PoolBwd { .. } => PoolBwdVariant::all().iter().map(|v| v.name().to_string()).collect(),
        };
        let default = self.default_variant();
        names.retain(|n| *n != default);
        names.insert(0, default);
        names
    }

    /// Whether `variant` runs its own kernel on this op's shape, rather than falling back to
    /// another variant's (`kernels::gemm::resolve`: the vec4 GEMMs need vec4-aligned shapes, the
    /// dot GEMM few columns, the split-K GEMM several splits, the subgroup GEMM a device with
    /// subgroups (`dev`); the rows weight gradient a kernel at most `WGRAD_MAX_KW` wide; the
    /// subgroup convolutions a device with subgroups; the flipped backward data stride 1 and each
    /// padding short of its kernel).
    pub fn runs_itself(&self, dev: &GemmDevice, variant: &str) -> bool {
        match self {
            Op::Gemm(s) => GemmVariant::all()
                .into_iter()
                .find(|v| v.name() == variant)
                .is_none_or(|v| crate::kernels::gemm::runs_itself(s, v, dev)),
            // The subgroup convolutions run the blocked (rows) kernel on a device without subgroups.
            _ if variant.contains("subgroup") && !dev.subgroups => false,
            Op::ConvWeight(s) => !variant.starts_with("rows") || s.kw <= crate::kernels::conv::WGRAD_MAX_KW,
            Op::ConvFwd(s) => !variant.starts_with("shared") || crate::kernels::conv::shared_fits(s),
            // The flipped backward data is subgroup_wide's kernel where its forward does not apply.
            Op::ConvData(s) if variant == "flipped" => crate::kernels::conv::flipped_shape(s).is_some(),
            Op::ConvData(s) => !variant.starts_with("shared") || crate::kernels::conv::shared_fits(s),
            _ => true,
        }
    }

    /// The variant a step uses when the plan names none.
    pub fn default_variant(&self) -> String {
        match self {
            Op::Gemm(_) => GemmVariant::DEFAULT.name(),
            Op::ConvFwd(_) => ConvFwdVariant::DEFAULT.name().into(),
            Op::ConvData(_) => ConvBwdDataVariant::DEFAULT.name().into(),
            Op::ConvWeight(_) => ConvBwdWeightVariant::DEFAULT.name().into(),
            Op::PoolFwd { .. } => PoolFwdVariant::DEFAULT.name().into(),
            Op::PoolBwd { .. } => PoolBwdVariant::DEFAULT.name().into(),
        }
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

/// Every choice a training step of `net` at `batch` makes, with its plan key, in execution order of
/// the forward pass then the backward pass. Evaluation uses the forward ops only.
pub fn ops(net: &Net, batch: usize) -> Vec<(String, Op)> {
    let mut v = Vec::new();
    for (li, l) in net.layers.iter().enumerate() {
        match *l {
            Layer::Conv { shape, .. } => {
                let s = Conv2dShape { n: batch, ..shape };
                v.push((format!("{li}.conv_fwd"), Op::ConvFwd(s)));
                v.push((format!("{li}.conv_weight"), Op::ConvWeight(s)));
                if li > 0 {
                    v.push((format!("{li}.conv_data"), Op::ConvData(s)));
                }
            }
            Layer::Fc { inp, out, .. } => {
                v.push((format!("{li}.fc_fwd"), Op::Gemm(GemmShape::new(batch, out, inp, Trans::NT))));
                if li > 0 {
                    v.push((format!("{li}.fc_data"), Op::Gemm(GemmShape::new(batch, inp, out, Trans::NN))));
                }
                v.push((format!("{li}.fc_weight"), Op::Gemm(GemmShape::new(out, inp, batch, Trans::TN))));
            }
            Layer::MaxPool { shape } | Layer::AvgPool { shape } => {
                let (shape, max) = (Pool2dShape { n: batch, ..shape }, matches!(l, Layer::MaxPool { .. }));
                v.push((format!("{li}.pool_fwd"), Op::PoolFwd { shape, max }));
                if li > 0 {
                    v.push((format!("{li}.pool_bwd"), Op::PoolBwd { shape, max }));
                }
            }
            _ => {}
        }
    }
    v
}

impl Plan {
    /// This plan for `net` at `batch`, every op named: the plan's own choice where it has one, the
    /// default elsewhere. A name no variant of its op has (a plan from another dlsvm) is refused.
    pub fn complete(&self, net: &Net, batch: usize) -> Result<Plan, String> {
        let mut out = BTreeMap::new();
        for (key, op) in ops(net, batch) {
            let name = match self.0.get(&key) {
                Some(n) if op.variants().contains(n) => n.clone(),
                Some(n) => {
                    let have = op.variants().join(", ");
                    return Err(format!(
                        "op {key} ({}): no variant {n:?} (this dlsvm has {have})",
                        op.signature()
                    ));
                }
                None => op.default_variant(),
            };
            out.insert(key, name);
        }
        Ok(Plan(out))
    }

    fn named(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn gemm(&self, key: &str) -> GemmVariant {
        let n = self.named(key);
        GemmVariant::all().into_iter().find(|v| Some(v.name().as_str()) == n).unwrap_or(GemmVariant::DEFAULT)
    }

    pub fn conv_fwd(&self, key: &str) -> ConvFwdVariant {
        let n = self.named(key);
        ConvFwdVariant::all().into_iter().find(|v| Some(v.name()) == n).unwrap_or(ConvFwdVariant::DEFAULT)
    }

    pub fn conv_data(&self, key: &str) -> ConvBwdDataVariant {
        let n = self.named(key);
        ConvBwdDataVariant::all()
            .into_iter()
            .find(|v| Some(v.name()) == n)
            .unwrap_or(ConvBwdDataVariant::DEFAULT)
    }

    pub fn conv_weight(&self, key: &str) -> ConvBwdWeightVariant {
        let n = self.named(key);
        ConvBwdWeightVariant::all()
            .into_iter()
            .find(|v| Some(v.name()) == n)
            .unwrap_or(ConvBwdWeightVariant::DEFAULT)
    }

    pub fn pool_fwd(&self, key: &str) -> PoolFwdVariant {
        let n = self.named(key);
        PoolFwdVariant::all().into_iter().find(|v| Some(v.name()) == n).unwrap_or(PoolFwdVariant::DEFAULT)
    }

    pub fn pool_bwd(&self, key: &str) -> PoolBwdVariant {
        let n = self.named(key);
        PoolBwdVariant::all().into_iter().find(|v| Some(v.name()) == n).unwrap_or(PoolBwdVariant::DEFAULT)
    }

    /// The ops whose variant differs between `self` and `other` (both complete), by key.
    pub fn differences(&self, other: &Plan) -> Vec<String> {
        self.0.iter().filter(|(k, v)| other.0.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgroup_convolutions_run_themselves_only_where_the_device_has_subgroups() {
        let no_subgroups = GemmDevice { subgroups: false, ..GemmDevice::ANY };
        let s = crate::check::shapes::fer_convs(8)[2];
        for op in [Op::ConvFwd(s), Op::ConvData(s), Op::ConvWeight(s)] {
            let names = op.variants();
            let sg: Vec<&String> = names.iter().filter(|n| n.contains("subgroup")).collect();
            // subgroup and subgroup_wide (forward, backward data), rows_subgroup and rows_subgroup16.
            let expect = 2;
            assert_eq!(sg.len(), expect, "{}: {names:?}", op.signature());
            for v in sg {
                assert!(op.runs_itself(&GemmDevice::ANY, v), "{} {v}", op.signature());
                assert!(!op.runs_itself(&no_subgroups, v), "{} {v}", op.signature());
            }
            // The others do not depend on subgroups.
            for n in names.iter().filter(|n| !n.contains("subgroup")) {
                assert_eq!(op.runs_itself(&GemmDevice::ANY, n), op.runs_itself(&no_subgroups, n), "{n}");
            }
        }
        // The checked-only variants are never tuned.
        assert!(!Op::ConvFwd(s).variants().contains(&"subgroup36".to_string()));
    }

    #[test]
    fn the_flipped_backward_data_runs_itself_at_stride_1_with_padding_short_of_the_kernel() {
        let dev = GemmDevice::ANY;
        let sq = Conv2dShape::square;
        // The FER layers (k4 p1, k5 p2), no padding, padding k - 1: the forward on flipped weights.
        for s in crate::check::shapes::fer_convs(8)
            .into_iter()
            .chain([sq(2, 3, 9, 4, 3, 1, 0), sq(2, 3, 9, 4, 3, 1, 2)])
        {
            assert!(Op::ConvData(s).runs_itself(&dev, "flipped"), "{s}");
        }
        // Stride 2, or padding as wide as the kernel: subgroup_wide's kernel, not timed twice.
        for s in [sq(2, 3, 9, 4, 3, 2, 1), sq(2, 3, 9, 4, 3, 1, 3)] {
            assert!(!Op::ConvData(s).runs_itself(&dev, "flipped"), "{s}");
            assert!(Op::ConvData(s).runs_itself(&dev, "subgroup_wide"), "{s}");
        }
    }
}
