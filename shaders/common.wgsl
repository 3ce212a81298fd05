// The prelude: prepended to every shader by the registry (src/gpu/pipeline.rs, after the
// specialization constants), so nothing here is copied between shader files.
//
// Binding convention of every entry point: the params uniform at binding 0, then the read-only
// storage inputs, then the read-write storage outputs (src/gpu/mod.rs, `Gpu::layout`). Each params
// struct below is mirrored by the #[repr(C)] Rust struct of the same name in src/kernels/; the
// tests (tests/shaders.rs) check that the sizes agree.

// ------------------------------------------------------------------------------ invocation ids

// The builtins a kernel of a folded 1-D grid needs, taken as one entry-point argument.
struct Ids {
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
}

// The linear index of this workgroup in a 1-D grid folded over x and y (crate::gpu::grid_1d):
// indices past the end of the work are the kernel's to ignore.
fn group_index(id: Ids) -> u32 {
    return id.group.y * id.groups.x + id.group.x;
}

// group_index of a workgroup whose kernel takes @builtin(workgroup_id) `id` and
// @builtin(num_workgroups) `count` as builtins of their own, beside its
// @builtin(local_invocation_id): what a kernel with barriers or subgroup operations does instead of
// taking `Ids`. The uniformity analysis of WGSL (Tint's, which browsers run; naga does none) takes
// a struct argument as one value, non-uniform when any member is, so an index derived from `Ids` is
// non-uniform to it, and a barrier or subgroup operation after a branch on one is rejected. (Not a
// struct of the two either: with one, lavapipe ran the pairwise slice_sum 1.4x slower, and crashed
// the texture GEMM of session 13 when a helper took one.)
fn workgroup_index(id: vec3<u32>, count: vec3<u32>) -> u32 {
    return id.y * count.x + id.x;
}

// The linear index of this invocation in a folded 1-D grid of `wg`-invocation workgroups.
fn thread_index(id: Ids, wg: u32) -> u32 {
    return group_index(id) * wg + id.local.x;
}

// Element i of `planes` planes of rows x cols: (plane, row, column, 1), or w = 0 past the end.
fn plane_pos(i: u32, planes: u32, rows: u32, cols: u32) -> vec4<u32> {
    if (i >= planes * rows * cols) {
        return vec4<u32>(0u);
    }
    return vec4<u32>(i / (rows * cols), (i / cols) % rows, i % cols, 1u);
}

// Work item q of a grid over 4-pixel row segments of n planes of rows x cols (the register-blocked
// convolutions): (plane's image, row, first column, 1), or w = 0 past the end of the work.
fn row_quad(q: u32, n: u32, rows: u32, cols: u32) -> vec4<u32> {
    let quads = (cols + 3u) / 4u;
    if (q >= n * rows * quads) {
        return vec4<u32>(0u);
    }
    return vec4<u32>(q / (quads * rows), (q / quads) % rows, (q % quads) * 4u, 1u);
}

// ----------------------------------------------------------------------- workgroup reduction

// Room for one value per invocation of the largest workgroup a reducing kernel uses.
const MAX_WG: u32 = 256u;
var<workgroup> wg_sums: array<f32, MAX_WG>;

// Every invocation of a `wg`-wide workgroup (a power of two <= MAX_WG) passes its partial sum;
// returns the workgroup's total to every invocation, added pairwise in a fixed order. Call it
// from uniform control flow (it holds barriers).
fn workgroup_sum(v: f32, local: u32, wg: u32) -> f32 {
    wg_sums[local] = v;
    workgroupBarrier();
    for (var s = wg / 2u; s > 0u; s = s / 2u) {
        if (local < s) {
            wg_sums[local] += wg_sums[local + s];
        }
        workgroupBarrier();
    }
    let total = wg_sums[0];
    workgroupBarrier();
    return total;
}

// ---------------------------------------------------------------------------------- epilogue

// What a producing kernel (GEMM, convolution) does to a result before storing it, in this order
// (the CPU reference's): add the bias of its column / channel, add the output's previous value,
// apply ReLU. The flags word is crate::kernels::Epilogue::flags.
const FLAG_BIAS: u32 = 1u;
const FLAG_ACC: u32 = 2u;
const FLAG_RELU: u32 = 4u;

// The bias element to read for column or channel j: j with a bias, else 0 (the host binds a
// one-element placeholder when there is none, so the read stays in bounds).
fn bias_index(j: u32, flags: u32) -> u32 {
    return select(0u, j, (flags & FLAG_BIAS) != 0u);
}

fn epilogue(acc: f32, bias: f32, prev: f32, flags: u32) -> f32 {
    var v = acc;
    if ((flags & FLAG_BIAS) != 0u) {
        v += bias;
    }
    if ((flags & FLAG_ACC) != 0u) {
        v += prev;
    }
    if ((flags & FLAG_RELU) != 0u) {
        v = max(v, 0.0);
    }
    return v;
}

// -------------------------------------------------------------------------------- pool windows

// The in-image extent [lo, hi) of window o along one axis (stride s, padding pad, window k).
fn win_lo(o: u32, s: u32, pad: u32) -> u32 {
    return u32(max(i32(o * s) - i32(pad), 0));
}
fn win_hi(o: u32, s: u32, pad: u32, k: u32, len: u32) -> u32 {
    return u32(clamp(i32(o * s + k) - i32(pad), 0, i32(len)));
}

// The outputs o whose window covers input position i along one axis: [first, last], as i32 so an
// empty range is last < first.
fn cover_first(i: u32, s: u32, pad: u32, k: u32) -> i32 {
    let t = i32(i + pad) - i32(k) + 1;
    if (t <= 0) {
        return 0;
    }
    return (t + i32(s) - 1) / i32(s);
}
fn cover_last(i: u32, s: u32, pad: u32, o: u32) -> i32 {
    return min(i32((i + pad) / s), i32(o) - 1);
}

// The output that invocation t handles in pass q.phase of a disjoint-window backward:
// (plane, oy, ox, 1), or w = 0 when t has none. Pass (ay, ax) covers oy ≡ ay (mod ny),
// ox ≡ ax (mod nx), with ny = ceil(kh/sy), nx = ceil(kw/sx).
fn pass_output(q: PoolParams, t: u32) -> vec4<u32> {
    let ny = (q.kh + q.stride_y - 1u) / q.stride_y;
    let nx = (q.kw + q.stride_x - 1u) / q.stride_x;
    let ay = q.phase / nx;
    let ax = q.phase % nx;
    if (ay >= q.oh || ax >= q.ow) {
        return vec4<u32>(0u);
    }
    let cy = (q.oh - ay + ny - 1u) / ny;
    let cx = (q.ow - ax + nx - 1u) / nx;
    if (t >= q.planes * cy * cx) {
        return vec4<u32>(0u);
    }
    return vec4<u32>(t / (cx * cy), ay + ((t / cx) % cy) * ny, ax + (t % cx) * nx, 1u);
}

// ------------------------------------------------------------------------------ params structs

struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    // the epilogue flags
    flags: u32,
    // gemm_split: K per split (a multiple of BK) and the number of splits
    kc: u32,
    splits: u32,
    pad0: u32,
    pad1: u32,
}

struct ConvParams {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    stride_y: u32,
    stride_x: u32,
    pad_y: u32,
    pad_x: u32,
    // the epilogue flags
    flags: u32,
    // weight gradient by slices: output rows (b, oy) per slice and the number of slices
    rps: u32,
    slices: u32,
}

struct PoolParams {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    stride_y: u32,
    stride_x: u32,
    pad_y: u32,
    pad_x: u32,
    // disjoint-window backward: which of the ceil(kh/sy)·ceil(kw/sx) passes this dispatch runs
    phase: u32,
}

struct ActParams {
    n: u32,
    seed: u32,
    step: u32,
    _pad0: u32,
    // dropout probability and the scale 1 / (1 - p) applied to kept elements
    prob: f32,
    scale: f32,
    _pad1: u32,
    _pad2: u32,
}

struct LossParams {
    rows: u32,
    classes: u32,
    _pad0: u32,
    _pad1: u32,
    // C/N for the squared hinge, 1/N for softmax
    scale: f32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

struct ReduceParams {
    // sum_all, count_correct: elements; argmax_rows: rows; slice_sum: elements per slice
    n: u32,
    // argmax_rows: columns; slice_sum: slices
    k: u32,
    // channel_sum: x is [outer, c, inner]
    outer: u32,
    c: u32,
    inner: u32,
    // bit 1 (FLAG_ACC): add to the output's previous value
    flags: u32,
    _pad0: u32,
    _pad1: u32,
}

struct SgdParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    _pad3: u32,
}

struct FillParams {
    n: u32,
    value: f32,
    _pad0: u32,
    _pad1: u32,
}

struct ProbeParams {
    n: u32,
    iters: u32,
    _pad0: u32,
    _pad1: u32,
}
