use super::{Gpu, GpuError};
use wgpu::util::DeviceExt;

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
pub struct Tensor {
    buf: wgpu::Buffer,
    shape: Vec<usize>,
    dtype: DType,
}

impl Tensor {
    pub(crate) fn new_raw(device: &wgpu::Device, label: &str, shape: &[usize], dtype: DType) -> Tensor {
        let len: usize = shape.iter().product();
        let buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Tensor { buf, shape: shape.to_vec(), dtype }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Size of the data in bytes.
    pub fn bytes(&self) -> u64 {
        (self.len() * 4) as u64
    }
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

    /// An uninitialized (zeroed by wgpu) tensor.
    pub fn empty(&self, shape: &[usize], dtype: DType) -> Result<Tensor, GpuError> {
        self.check_alloc(shape)?;
        Ok(Tensor::new_raw(&self.device, "tensor", shape, dtype))
    }

    /// A tensor of `shape` holding `data` (`data.len()` must be the shape's element count).
    pub fn upload<T: Element>(&self, data: &[T], shape: &[usize]) -> Result<Tensor, GpuError> {
        self.check_alloc(shape)?;
        let len: usize = shape.iter().product();
        if data.len() != len {
            return Err(GpuError::Internal(format!("upload: {} values for shape {shape:?}", data.len())));
        }
        if data.is_empty() {
            return Ok(Tensor::new_raw(&self.device, "tensor", shape, T::DTYPE));
        }
        let buf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("tensor"),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        });
        Ok(Tensor { buf, shape: shape.to_vec(), dtype: T::DTYPE })
    }

    /// Overwrites a tensor's contents (element type and length must match).
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
    /// a kernel never writes cannot pass a comparison.
    pub fn poison(&self, t: &Tensor) {
        let v = vec![f32::NAN; t.len().max(1)];
        self.queue.write_buffer(&t.buf, 0, bytemuck::cast_slice(&v));
    }

    /// A tensor's contents, read back (waits for the device).
    pub fn download<T: Element>(&self, t: &Tensor) -> Result<Vec<T>, GpuError> {
        if t.dtype != T::DTYPE {
            return Err(GpuError::Internal(format!(
                "download: {:?} tensor {:?} read as {:?}",
                t.dtype,
                t.shape(),
                T::DTYPE
            )));
        }
        let bytes = self.read_buffer(&t.buf, t.bytes().max(4))?;
        let mut v: Vec<T> = bytemuck::pod_collect_to_vec(&bytes);
        v.truncate(t.len());
        Ok(v)
    }
}
