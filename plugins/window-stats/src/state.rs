//! The per-group state and its byte encoding (version 1).
//!
//! Layout, little-endian: `count: u64`, `metrics: u32`, then per metric
//! `n: u64, sum: f64, min: f64, max: f64`.

/// Running statistics over one column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricState {
    /// Non-null values seen.
    pub n: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Default for MetricState {
    fn default() -> Self {
        MetricState { n: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY }
    }
}

impl MetricState {
    /// Adds one value.
    #[inline]
    pub fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &MetricState) {
        self.n += other.n;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// The state of one window and key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupState {
    /// Rows seen.
    pub count: u64,
    /// One entry per configured metric.
    pub metrics: Vec<MetricState>,
}

impl GroupState {
    /// Combines `other` into `self`.
    pub fn merge(&mut self, other: &GroupState) {
        self.count += other.count;
        if self.metrics.len() < other.metrics.len() {
            self.metrics.resize(other.metrics.len(), MetricState::default());
        }
        for (m, o) in self.metrics.iter_mut().zip(&other.metrics) {
            m.merge(o);
        }
    }

    /// The version-1 encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 32 * self.metrics.len());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&(self.metrics.len() as u32).to_le_bytes());
        for m in &self.metrics {
            out.extend_from_slice(&m.n.to_le_bytes());
            out.extend_from_slice(&m.sum.to_le_bytes());
            out.extend_from_slice(&m.min.to_le_bytes());
            out.extend_from_slice(&m.max.to_le_bytes());
        }
        out
    }

    /// Decodes the version-1 encoding; empty bytes are a fresh state.
    pub fn decode(bytes: &[u8]) -> Result<GroupState, String> {
        if bytes.is_empty() {
            return Ok(GroupState::default());
        }
        let word = |i: usize| -> Result<[u8; 8], String> {
            bytes
                .get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("state truncated at byte {i} of {}", bytes.len()))
        };
        let count = u64::from_le_bytes(word(0)?);
        let metrics = bytes
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or("state truncated in its header")?;
        if bytes.len() != 12 + 32 * metrics as usize {
            return Err(format!(
                "state is {} bytes; {metrics} metrics need {}",
                bytes.len(),
                12 + 32 * metrics as usize
            ));
        }
        let metrics = (0..metrics as usize)
            .map(|m| {
                let at = 12 + 32 * m;
                Ok(MetricState {
                    n: u64::from_le_bytes(word(at)?),
                    sum: f64::from_le_bytes(word(at + 8)?),
                    min: f64::from_le_bytes(word(at + 16)?),
                    max: f64::from_le_bytes(word(at + 24)?),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(GroupState { count, metrics })
    }
}
