use super::{Gpu, GpuError};
use wgpu::util::DeviceExt;

/// Element type of a tensor's buffer (all are 4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    I32,
    U32,
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

    fn upload_bytes(&self, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<Tensor, GpuError> {
        self.check_alloc(shape)?;
        let len: usize = shape.iter().product();
        if bytes.len() != len * 4 {
            return Err(GpuError::Internal(format!("upload: {} bytes for shape {shape:?}", bytes.len())));
        }
        if bytes.is_empty() {
            return Ok(Tensor::new_raw(&self.device, "tensor", shape, dtype));
        }
        let buf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("tensor"),
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        });
        Ok(Tensor { buf, shape: shape.to_vec(), dtype })
    }

    pub fn upload_f32(&self, data: &[f32], shape: &[usize]) -> Result<Tensor, GpuError> {
        self.upload_bytes(shape, DType::F32, bytemuck::cast_slice(data))
    }
    pub fn upload_i32(&self, data: &[i32], shape: &[usize]) -> Result<Tensor, GpuError> {
        self.upload_bytes(shape, DType::I32, bytemuck::cast_slice(data))
    }
    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Result<Tensor, GpuError> {
        self.upload_bytes(shape, DType::U32, bytemuck::cast_slice(data))
    }

    /// Overwrites a tensor's contents (lengths must match).
    pub fn write_f32(&self, t: &Tensor, data: &[f32]) -> Result<(), GpuError> {
        if data.len() != t.len() {
            return Err(GpuError::Internal(format!(
                "write: {} values into tensor {:?}",
                data.len(),
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

    pub fn download_f32(&self, t: &Tensor) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_buffer(&t.buf, t.bytes().max(4))?;
        let mut v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        v.truncate(t.len());
        Ok(v)
    }
    pub fn download_i32(&self, t: &Tensor) -> Result<Vec<i32>, GpuError> {
        let bytes = self.read_buffer(&t.buf, t.bytes().max(4))?;
        let mut v: Vec<i32> = bytemuck::pod_collect_to_vec(&bytes);
        v.truncate(t.len());
        Ok(v)
    }
    pub fn download_u32(&self, t: &Tensor) -> Result<Vec<u32>, GpuError> {
        let bytes = self.read_buffer(&t.buf, t.bytes().max(4))?;
        let mut v: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        v.truncate(t.len());
        Ok(v)
    }
}
