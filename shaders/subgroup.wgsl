// Helpers of the kernels that use subgroups (a part of their shaders only: a function that calls a
// subgroup operation does not validate in a shader built without the SUBGROUP capability).

// Whether every lane of this subgroup of `sg` lanes is active (its ballot counts them all): only
// then may a lane read another by subgroupShuffle. Call it in uniform control flow.
fn subgroup_full(sg: u32) -> bool {
    let lanes = subgroupBallot(true);
    return countOneBits(lanes.x) + countOneBits(lanes.y) + countOneBits(lanes.z) + countOneBits(lanes.w) == sg;
}

// The reduction steps one chunk of a subgroup kernel's loop covers: `sg` where the subgroup is full
// (lane l loads step k0 + l, and each step reaches every lane by subgroupShuffle), 1 where it is not
// (every lane loads the chunk's one step itself, `subgroup_mine` 0). The step's operand is then
// `select(own, subgroupShuffle(own, s), full)`, not a load in an `if (!full)` branch: lavapipe runs
// both sides of a branch it cannot prove uniform, so such a load was paid on every step (TN GEMM
// 1024³: 10-15 % of its time).
fn subgroup_chunk(full: bool, sg: u32) -> u32 {
    return select(1u, sg, full);
}

// The step of its chunk that this lane loads (see subgroup_chunk).
fn subgroup_mine(full: bool, lane: u32) -> u32 {
    return select(0u, lane, full);
}

// The subgroup kernels walk their reduction steps (or output positions) one at a time, the same
// in every lane, and each lane its own step a chunk ahead: a three-digit mixed-radix counter c
// (c.x the fastest digit, counting to nx; c.y to ny; c.z unbounded), stepped without dividing (a
// division is a scalar one per lane on a SIMD device).

// c one step on.
fn counter_next(c: vec3<u32>, nx: u32, ny: u32) -> vec3<u32> {
    var r = vec3<u32>(c.x + 1u, c.y, c.z);
    if (r.x == nx) {
        r.x = 0u;
        r.y += 1u;
        if (r.y == ny) {
            r.y = 0u;
            r.z += 1u;
        }
    }
    return r;
}

// c `by` steps on (a chunk ahead: the carry loop runs about by / nx times).
fn counter_ahead(c: vec3<u32>, by: u32, nx: u32, ny: u32) -> vec3<u32> {
    var r = vec3<u32>(c.x + by, c.y, c.z);
    while (r.x >= nx) {
        r.x -= nx;
        r.y += 1u;
        if (r.y == ny) {
            r.y = 0u;
            r.z += 1u;
        }
    }
    return r;
}
