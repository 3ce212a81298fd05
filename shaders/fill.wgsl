// Sets every element of a tensor to one value (the disjoint-window pool backwards start from a
// zeroed gradient). Specialization: WG. Bindings: params; output out (fill4: as vec4s, for a
// length that is a multiple of 4, p.n counting vec4s).

@group(0) @binding(0) var<uniform> p: FillParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> out4: array<vec4<f32>>;

@compute @workgroup_size(WG, 1, 1)
fn fill(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        out[i] = p.value;
    }
}

// Four elements an invocation: a quarter of the stores, each a vec4 (lavapipe scatters a store
// lane by lane, so a scalar fill of 14.4M elements took 43 ms there).
@compute @workgroup_size(WG, 1, 1)
fn fill4(id: Ids) {
    let i = thread_index(id, WG);
    if (i < p.n) {
        out4[i] = vec4<f32>(p.value);
    }
}
