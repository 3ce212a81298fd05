// The bindings of the weight-gradient kernels and a helper (a part of conv_wgrad.wgsl and
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
