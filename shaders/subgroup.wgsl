// Helpers of the kernels that use subgroups (a part of their shaders only: a function that calls a
// subgroup operation does not validate in a shader built without the SUBGROUP capability).

// Whether every lane of this subgroup of `sg` lanes is active (its ballot counts them all): only
// then may a lane read another by subgroupShuffle. Call it in uniform control flow.
fn subgroup_full(sg: u32) -> bool {
    let lanes = subgroupBallot(true);
    return countOneBits(lanes.x) + countOneBits(lanes.y) + countOneBits(lanes.z) + countOneBits(lanes.w) == sg;
}
