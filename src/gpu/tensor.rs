use super::{Gpu, GpuError};

/// Element type of a tensor's buffer (all are 4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    I32,
    U32,
}

/// A type a tensor can hold: 4 bytes, with its [`DType`].
pub trait Element: bytemuck::Pod {
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}

/// A storage buffer plus its shape. Elements are 4 bytes; the buffer holds at least one.
///
/// The shape is the tensor's logical extent: what [`Tensor::len`] counts, what the host's length
/// checks compare and what [`Gpu::download`] returns. The buffer may hold more: on a device opened
/// for checking ([`Gpu::enable_checks`]) every tensor carries [`Tensor::padding`] elements of
/// [`PAD_BITS`] (a NaN) past its logical end, bound with it, so a kernel that reads past an
/// input's end reads NaN, and one that writes past an output's end is caught when the output is
/// read back. Training opens no padding.
pub struct Tensor {
    buf: wgpu::Buffer,
    shape: Vec<usize>,
    dtype: DType,
    padding: usize,
}

/// The bit pattern of the padding past a tensor's logical end: a quiet NaN with a payload no
/// operation creates (a NaN computed from numbers is 0x7fc00000 or 0xffc00000), so a kernel that
/// writes a NaN it computed into an output's padding is caught too.
pub const PAD_BITS: u32 = 0x7fc0_0bad;

/// How many padding elements a tensor of `len` elements gets when padding is on: a quarter of its
/// length and at least 64 (a K-tail or last-row read of several rows, an off-by-one of any vec4),
/// a multiple of 4 (a vec4 view keeps its alignment), and never so many that the buffer passes
/// `max_bytes` (it is still bound whole).
pub(crate) fn padding_for(len: usize, max_bytes: u64) -> usize {
    let want = (len / 4).max(64).next_multiple_of(4);
    let room = (max_bytes / 4).saturating_sub(len as u64);
    want.min(room as usize / 4 * 4)
}

impl Tensor {
    /// A zeroed tensor (wgpu zeroes new buffers) with `padding` elements of [`PAD_BITS`] past its
    /// end.
    pub(crate) fn new_raw(
        device: &wgpu::Device,
        label: &str,
        shape: &[usize],
        dtype: DType,
        padding: usize,
    ) -> Result<Tensor, GpuError> {
        Tensor::filled(device, label, shape, dtype, &[], padding)
    }

    /// A tensor whose buffer holds `data` (zeros where `data` is empty), then `padding` elements
    /// of [`PAD_BITS`]; at least one element.
    fn filled(
        device: &wgpu::Device,
        label: &str,
        shape: &[usize],
        dtype: DType,
        data: &[u8],
        padding: usize,
    ) -> Result<Tensor, GpuError> {
        let len: usize = shape.iter().product();
        let init = !data.is_empty() || padding > 0;
        let buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: ((len + padding).max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: init,
        });
        if init {
            let mut view = buf.slice(..).get_mapped_range_mut().map_err(|e| GpuError::Map(e.to_string()))?;
            if padding == 0 {
                view.copy_from_slice(data);
            } else {
                let mut contents = Vec::with_capacity((len + padding) * 4);
                contents.extend_from_slice(data);
                contents.resize(len * 4, 0);
                for _ in 0..padding {
                    contents.extend_from_slice(&PAD_BITS.to_ne_bytes());
                }
                view.copy_from_slice(&contents);
            }
            drop(view);
            buf.unmap();
        }
        Ok(Tensor { buf, shape: shape.to_vec(), dtype, padding })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The logical number of elements (the shape's product), without the padding.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Size of the data in bytes (the logical length; the buffer may be longer).
    pub fn bytes(&self) -> u64 {
        (self.len() * 4) as u64
    }
    /// The elements of [`PAD_BITS`] past the logical end (0 outside checking).
    pub fn padding(&self) -> usize {
        self.padding
    }
    /// The buffer, padding included: what a kernel is bound to.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buf
    }
}

impl Gpu {
    fn check_alloc(&self, shape: &[usize]) -> Result<(), GpuError> {
        let bytes = shape.iter().try_fold(4u64, |acc, &d| acc.checked_mul(d as u64));
        match bytes {
            Some(b) if b <= self.limits.max_buffer_size => Ok(()),
            _ => Err(GpuError::TooLarge {
                op: "allocation".into(),
                what: format!("tensor {shape:?}"),
                limit: self.limits.max_buffer_size,
            }),
        }
    }

    /// The padding a new tensor of `len` elements gets: [`padding_for`] when the device was
    /// opened for checking, else none.
    fn new_padding(&self, len: usize) -> usize {
        match self.checks_enabled() {
            true => {
                padding_for(len, self.limits.max_buffer_size.min(self.limits.max_storage_buffer_binding_size))
            }
            false => 0,
        }
    }

    /// An uninitialized (zeroed by wgpu) tensor.
    pub fn empty(&self, shape: &[usize], dtype: DType) -> Result<Tensor, GpuError> {
        self.check_alloc(shape)?;
        let padding = self.new_padding(shape.iter().product());
        Tensor::new_raw(&self.device, "tensor", shape, dtype, padding)
    }

    /// A tensor of `shape` holding `data` (`data.len()` must be the shape's element count).
    pub fn upload<T: Element>(&self, data: &[T], shape: &[usize]) -> Result<Tensor, GpuError> {
        self.check_alloc(shape)?;
        let len: usize = shape.iter().product();
        if data.len() != len {
            return Err(GpuError::Internal(format!("upload: {} values for shape {shape:?}", data.len())));
        }
        let bytes = bytemuck::cast_slice(data);
        Tensor::filled(&self.device, "tensor", shape, T::DTYPE, bytes, self.new_padding(len))
    }

    /// Overwrites a tensor's contents (element type and length must match; the padding stays).
    pub fn write<T: Element>(&self, t: &Tensor, data: &[T]) -> Result<(), GpuError> {
        if data.len() != t.len() || t.dtype != T::DTYPE {
            return Err(GpuError::Internal(format!(
                "write: {} {:?} values into {:?} tensor {:?}",
                data.len(),
                T::DTYPE,
                t.dtype,
                t.shape()
            )));
        }
        if !data.is_empty() {
            self.queue.write_buffer(&t.buf, 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Fills a tensor with NaN (or, for integer tensors, the bit pattern 0x7fc00000), so an element
    /// a kernel never writes cannot pass a comparison. The padding keeps [`PAD_BITS`].
    pub fn poison(&self, t: &Tensor) {
        if !t.is_empty() {
            let v = vec![f32::NAN; t.len()];
            self.queue.write_buffer(&t.buf, 0, bytemuck::cast_slice(&v));
        }
    }

    /// [`Gpu::download_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download<T: Element>(&self, t: &Tensor) -> Result<Vec<T>, GpuError> {
        pollster::block_on(self.download_async(t))
    }

    /// A tensor's contents, read back (after the device has run what reads it). A padded
    /// tensor's padding is read too: anything but [`PAD_BITS`] there means a kernel wrote past
    /// the tensor's end, an error.
    pub async fn download_async<T: Element>(&self, t: &Tensor) -> Result<Vec<T>, GpuError> {
        if t.dtype != T::DTYPE {
            return Err(GpuError::Internal(format!(
                "download: {:?} tensor {:?} read as {:?}",
                t.dtype,
                t.shape(),
                T::DTYPE
            )));
        }
        let len = t.len();
        let bytes = self.read_buffer_async(&t.buf, ((len + t.padding) * 4).max(4) as u64).await?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        if let Some(i) = (len..len + t.padding).find(|&i| words[i] != PAD_BITS) {
            return Err(GpuError::PastEnd {
                tensor: format!("{:?} tensor {:?}", t.dtype, t.shape()),
                index: i,
                bits: words[i],
            });
        }
        let mut v: Vec<T> = bytemuck::pod_collect_to_vec(&bytes);
        v.truncate(len);
        Ok(v)
    }
}
