// The bindings of the weight-gradient kernels and the rows kernels' helpers (a part of conv_wgrad.wgsl and
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

// The KW inputs of a kernel row for output column ox, whose window starts at input column ix0 of
// the input row at xrow: at stride 1 past a row's first column the previous column's window slides
// by one and one input is loaded; otherwise all KW are.
fn row_window(xv: ptr<function, array<f32, KW>>, xrow: u32, ix0: i32, ox: u32, row_ok: bool) {
    if (p.stride_x == 1u && ox > 0u) {
        for (var kx = 0u; kx + 1u < KW; kx++) {
            (*xv)[kx] = (*xv)[kx + 1u];
        }
        (*xv)[KW - 1u] = row_input(xrow, ix0 + i32(KW) - 1, row_ok);
    } else {
        for (var kx = 0u; kx < KW; kx++) {
            (*xv)[kx] = row_input(xrow, ix0 + i32(kx), row_ok);
        }
    }
}

// The rows kernels' partial sums of output channels co0 .. co0 + COB - 1 (those below cout) and
// kernel row `row` (= ci·kh + ky) over slice `slice`: KW values a channel.
fn store_partials(acc: ptr<function, array<f32, COB * KW>>, slice: u32, co0: u32, row: u32) {
    let cols = p.cin * p.kh * KW;
    for (var j = 0u; j < COB; j++) {
        let co = co0 + j;
        if (co < p.cout) {
            let base = (slice * p.cout + co) * cols + row * KW;
            for (var kx = 0u; kx < KW; kx++) {
                dw[base + kx] = (*acc)[j * KW + kx];
            }
        }
    }
}
