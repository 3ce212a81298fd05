// Sets every element of a tensor to one value (the disjoint-window pool backwards start from a
// zeroed gradient). Specialization: WG. Bindings: params; output out.

@group(0) @binding(0) var<uniform> p: FillParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn fill(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        out[i] = p.value;
    }
}
