// The bindings of the weight-gradient kernels and two helpers (a part of conv_wgrad.wgsl and
// conv_wgrad_sg.wgsl):
// params; inputs x, dy; output dw (the gradient, or the partial sums).

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

// Whether input row iy, column ix lies inside the image (outside it, x counts as zero).
fn in_image(iy: i32, ix: i32) -> bool {
    return iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
}

// Input column ix of the input row starting at xrow: zero outside the image (a clamped address
// is read and discarded), the row itself inside it when row_ok.
fn row_input(xrow: u32, ix: i32, row_ok: bool) -> f32 {
    let v = x[xrow + u32(clamp(ix, 0, i32(p.w) - 1))];
    return select(0.0, v, row_ok && ix >= 0 && ix < i32(p.w));
}
