//! Which kernel variant each dispatch of a network's step uses. Variants compute the same values
//! but may round differently, so a run records its plan (in its checkpoints) and a resumed run
//! keeps it: same data, seed, plan and adapter, same weights, bit for bit.
//!
//! A plan maps an op of the step ([`OpKey`]: a layer's index in the resolved layer list and what
//! the step computes there) to a typed [`Variant`] of that op's family. An op the plan does not
//! name uses its family's default. Written out (checkpoints, `--json`), a plan is a map from
//! `<layer index>.<op>` (`3.conv_fwd`) to the variant's name, parsed back once, here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::net::{Layer, Net};
use crate::kernels::registry::{Family, Member, Op, Variant};
use crate::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

/// What a step computes at one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    ConvFwd,
    ConvWeight,
    ConvData,
    FcFwd,
    FcData,
    FcWeight,
    PoolFwd,
    PoolBwd,
}

impl OpKind {
    pub const ALL: [OpKind; 8] = [
        OpKind::ConvFwd,
        OpKind::ConvWeight,
        OpKind::ConvData,
        OpKind::FcFwd,
        OpKind::FcData,
        OpKind::FcWeight,
        OpKind::PoolFwd,
        OpKind::PoolBwd,
    ];

    /// Its name in a plan's keys.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::ConvFwd => "conv_fwd",
            OpKind::ConvWeight => "conv_weight",
            OpKind::ConvData => "conv_data",
            OpKind::FcFwd => "fc_fwd",
            OpKind::FcData => "fc_data",
            OpKind::FcWeight => "fc_weight",
            OpKind::PoolFwd => "pool_fwd",
            OpKind::PoolBwd => "pool_bwd",
        }
    }

    /// The family of the kernels that compute it.
    pub fn family(self) -> Family {
        match self {
            OpKind::ConvFwd => Family::ConvFwd,
            OpKind::ConvWeight => Family::ConvWeight,
            OpKind::ConvData => Family::ConvData,
            OpKind::FcFwd | OpKind::FcData | OpKind::FcWeight => Family::Gemm,
            OpKind::PoolFwd => Family::PoolFwd,
            OpKind::PoolBwd => Family::PoolBwd,
        }
    }
}

/// One op of a step: the layer's index in the resolved layer list and what is computed there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpKey {
    pub layer: usize,
    pub kind: OpKind,
}

impl OpKey {
    pub fn new(layer: usize, kind: OpKind) -> OpKey {
        OpKey { layer, kind }
    }
}

impl fmt::Display for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layer, self.kind.name())
    }
}

/// A key is written out (JSON) as `<layer index>.<op>`.
impl serde::Serialize for OpKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for OpKey {
    type Err = String;
    fn from_str(s: &str) -> Result<OpKey, String> {
        let bad = || {
            let kinds: Vec<&str> = OpKind::ALL.iter().map(|k| k.name()).collect();
            format!("op key {s:?} is not <layer index>.<op> with op one of {}", kinds.join(", "))
        };
        let (layer, kind) = s.split_once('.').ok_or_else(bad)?;
        let layer = layer.parse().map_err(|_| bad())?;
        let kind = *OpKind::ALL.iter().find(|k| k.name() == kind).ok_or_else(bad)?;
        Ok(OpKey { layer, kind })
    }
}

/// The variant of each op of a step that names one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan(BTreeMap<OpKey, Variant>);

/// Every choice a training step of `net` at `batch` makes, with its key, in execution order of
/// the forward pass then the backward pass. Evaluation uses the forward ops only.
pub fn ops(net: &Net, batch: usize) -> Vec<(OpKey, Op)> {
    let mut v = Vec::new();
    for (li, l) in net.layers.iter().enumerate() {
        let key = |kind| OpKey::new(li, kind);
        match *l {
            Layer::Conv { shape, .. } => {
                let s = Conv2dShape { n: batch, ..shape };
                v.push((key(OpKind::ConvFwd), Op::ConvFwd(s)));
                v.push((key(OpKind::ConvWeight), Op::ConvWeight(s)));
                if li > 0 {
                    v.push((key(OpKind::ConvData), Op::ConvData(s)));
                }
            }
            Layer::Fc { inp, out, .. } => {
                v.push((key(OpKind::FcFwd), Op::Gemm(GemmShape::new(batch, out, inp, Trans::NT))));
                if li > 0 {
                    v.push((key(OpKind::FcData), Op::Gemm(GemmShape::new(batch, inp, out, Trans::NN))));
                }
                v.push((key(OpKind::FcWeight), Op::Gemm(GemmShape::new(out, inp, batch, Trans::TN))));
            }
            Layer::MaxPool { shape } | Layer::AvgPool { shape } => {
                let (shape, max) = (Pool2dShape { n: batch, ..shape }, matches!(l, Layer::MaxPool { .. }));
                v.push((key(OpKind::PoolFwd), Op::PoolFwd { shape, max }));
                if li > 0 {
                    v.push((key(OpKind::PoolBwd), Op::PoolBwd { shape, max }));
                }
            }
            _ => {}
        }
    }
    v
}

impl Plan {
    /// Chooses `variant` for `key`; a variant of another family than the op's is refused.
    pub fn set(&mut self, key: OpKey, variant: Variant) -> Result<(), String> {
        if variant.family() != key.kind.family() {
            return Err(format!(
                "op {key}: {variant} is a {} variant, not a {} one",
                variant.family().title(),
                key.kind.family().title()
            ));
        }
        self.0.insert(key, variant);
        Ok(())
    }

    /// `key`'s choice, where the plan names one.
    pub fn get(&self, key: OpKey) -> Option<Variant> {
        self.0.get(&key).copied()
    }

    /// The choices, by key.
    pub fn iter(&self) -> impl Iterator<Item = (OpKey, Variant)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    /// The variant of family `V` the step runs for `key`: the plan's choice, else the default.
    pub fn choice<V: Member>(&self, key: OpKey) -> V {
        self.get(key).and_then(V::unwrap).unwrap_or_else(V::default_variant)
    }

    /// This plan for `net` at `batch`, every op named: the plan's own choice where it has one, the
    /// default elsewhere. A choice for an op the step does not have (a plan of another network) is
    /// refused.
    pub fn complete(&self, net: &Net, batch: usize) -> Result<Plan, String> {
        let ops = ops(net, batch);
        if let Some(key) = self.0.keys().find(|k| !ops.iter().any(|(o, _)| o == *k)) {
            return Err(format!("the plan names op {key}, which this network's step does not have"));
        }
        let mut out = BTreeMap::new();
        for (key, op) in ops {
            out.insert(key, self.get(key).unwrap_or_else(|| op.default_variant()));
        }
        Ok(Plan(out))
    }

    /// The ops whose variant differs between `self` and `other` (both complete).
    pub fn differences(&self, other: &Plan) -> Vec<OpKey> {
        self.0.iter().filter(|(k, v)| other.0.get(*k) != Some(v)).map(|(k, _)| *k).collect()
    }

    /// The plan as written out: op key to variant name.
    pub fn names(&self) -> BTreeMap<String, String> {
        self.0.iter().map(|(k, v)| (k.to_string(), v.name().to_string())).collect()
    }

    /// The plan written out as `names`: every key and name parsed; the first that is not one of
    /// this build's is a one-line error naming it and what this build has.
    pub fn from_names(names: &BTreeMap<String, String>) -> Result<Plan, String> {
        let mut plan = Plan::default();
        for (k, name) in names {
            let key: OpKey = k.parse()?;
            let v = key.kind.family().parse(name).map_err(|e| format!("op {key}: {e}"))?;
            plan.set(key, v)?;
        }
        Ok(plan)
    }
}

impl serde::Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Plan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
        let names = BTreeMap::<String, String>::deserialize(d)?;
        Plan::from_names(&names).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{ConvBwdDataVariant, ConvFwdVariant};
    use crate::kernels::gemm::GemmVariant;
    use crate::kernels::registry::{Caps, FamilyVariant};

    #[test]
    fn keys_and_names_round_trip_and_the_unknown_are_refused() {
        for kind in OpKind::ALL {
            let key = OpKey::new(12, kind);
            assert_eq!(key.to_string().parse::<OpKey>(), Ok(key));
        }
        for bad in ["3", "x.conv_fwd", "3.conv", "3.conv_fwd.1", ""] {
            let e = bad.parse::<OpKey>().unwrap_err();
            assert!(e.contains("is not <layer index>.<op>") && e.contains("pool_bwd"), "{e}");
        }
        let (wide, naive) = (ConvFwdVariant::SubgroupWide.name(), GemmVariant::Naive.name());
        let mut names = BTreeMap::new();
        names.insert("0.conv_fwd".to_string(), wide.to_string());
        names.insert("4.fc_data".to_string(), naive.to_string());
        let plan = Plan::from_names(&names).unwrap();
        assert_eq!(plan.names(), names);
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        // A name of another family's variant, or none of this build's: one line naming both.
        names.insert("2.conv_data".to_string(), naive.to_string());
        let e = Plan::from_names(&names).unwrap_err();
        let want = format!("op 2.conv_data: no convolution backward data variant {naive:?} (this dlsvm has ");
        assert!(e.starts_with(&want), "{e}");
        assert!(e.contains(ConvBwdDataVariant::Flipped.name()), "{e}");
        let mut plan = Plan::default();
        assert!(plan
            .set(OpKey::new(1, OpKind::FcFwd), Variant::ConvData(ConvBwdDataVariant::Flipped))
            .is_err());
    }

    #[test]
    fn the_flipped_backward_data_runs_itself_at_stride_1_with_padding_short_of_the_kernel() {
        let caps = Caps::ANY;
        let sq = Conv2dShape::square;
        let flipped = Variant::ConvData(ConvBwdDataVariant::Flipped);
        let wide = Variant::ConvData(ConvBwdDataVariant::SubgroupWide);
        // The FER layers (k4 p1, k5 p2), no padding, padding k - 1: the forward on flipped weights.
        for s in crate::check::shapes::fer_convs(8)
            .into_iter()
            .chain([sq(2, 3, 9, 4, 3, 1, 0), sq(2, 3, 9, 4, 3, 1, 2)])
        {
            assert!(Op::ConvData(s).runs_itself(flipped, &caps), "{s}");
            // Without subgroups too (its forward is then the blocked kernel).
            assert!(Op::ConvData(s).runs_itself(flipped, &Caps::NO_SUBGROUPS), "{s}");
        }
        // Stride 2, or padding as wide as the kernel: subgroup_wide's kernel, not timed twice.
        for s in [sq(2, 3, 9, 4, 3, 2, 1), sq(2, 3, 9, 4, 3, 1, 3)] {
            assert!(!Op::ConvData(s).runs_itself(flipped, &caps), "{s}");
            assert_eq!(Op::ConvData(s).resolve(flipped, &caps), wide, "{s}");
        }
    }
}
