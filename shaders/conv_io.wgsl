// The bindings of the forward and backward-data convolutions (a part of conv.wgsl and
// conv_sg.wgsl): the params uniform, then
//   forward:       inputs x, wt, bias; output y
//   backward data: inputs dy, wt; output dx

@group(0) @binding(0) var<uniform> p: ConvParams;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// The forward never accumulates: the previous output is not read.
fn finish(idx: u32, co: u32, acc: f32) {
    y[idx] = epilogue(acc, bias[bias_index(co, p.flags)], 0.0, p.flags);
}
